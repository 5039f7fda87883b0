package sdk_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// admitFunc is an Admitter made of a function.
type admitFunc func(*sdk.AdmissionRequest) (*sdk.AdmissionResponse, error)

func (f admitFunc) Admit(r *sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) { return f(r) }

// configurable records its settings.
type configurable struct {
	admitFunc
	got *string
}

func (c configurable) Configure(s rawjson.Value) error {
	*c.got = string(s)
	if strings.Contains(string(s), "bad") {
		return errors.New("settings: bad")
	}
	return nil
}

func TestNewAdmission(t *testing.T) {
	allow := admitFunc(func(*sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) { return sdk.Allowed(), nil })
	tests := []struct {
		name    string
		p       sdk.Admitter
		m       sdk.Manifest
		wantErr string
	}{
		{"ok", allow, sdk.Manifest{Name: "x"}, ""},
		{"nil plugin", nil, sdk.Manifest{Name: "x"}, "nil"},
		{"no name", allow, sdk.Manifest{}, "no name"},
		{"wrong kind", allow, sdk.Manifest{Name: "x", Kinds: []string{hostapi.KindFilter}}, "not an admission kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sdk.NewAdmission(tt.p, tt.m)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("NewAdmission = %v, want error %q", err, tt.wantErr)
			}
		})
	}
}

func TestModuleManifest(t *testing.T) {
	m := sdk.Manifest{Name: "x", Rules: []sdk.Rule{{Verbs: []string{"get"}, Resources: []string{"pods"}}}, Grants: []string{hostapi.CapClock}}
	mod, err := sdk.NewAdmission(admitFunc(nil), m)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := mod.Call(hostapi.ExportManifest, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got hostapi.Manifest
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	m.Kinds = []string{hostapi.KindValidatingAdmission} // the default
	if !reflect.DeepEqual(got, m) || !reflect.DeepEqual(mod.Manifest(), m) {
		t.Fatalf("manifest %+v (Manifest() %+v), want %+v", got, mod.Manifest(), m)
	}
	// The module keeps its own copy.
	mod.Manifest().Rules[0].Verbs[0] = "delete"
	if mod.Manifest().Rules[0].Verbs[0] != "get" {
		t.Fatal("Manifest() exposes the module's slices")
	}
	if _, err := mod.Call("tugboat_nothing", nil); err == nil {
		t.Fatal("unknown export: want an error")
	}
}

func TestModuleConfigure(t *testing.T) {
	allow := admitFunc(func(*sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) { return sdk.Allowed(), nil })
	var got string
	withSettings := configurable{allow, &got}
	tests := []struct {
		name     string
		p        sdk.Admitter
		settings string
		wantErr  string
		wantSeen string // what a Configurer received
	}{
		{"configurer gets settings", withSettings, `{"a": 1}`, "", `{"a": 1}`},
		{"configurer gets nil for none", withSettings, ``, "", ""},
		{"configurer gets nil for null", withSettings, `null`, "", ""},
		{"configurer error", withSettings, `{"bad": 1}`, "settings: bad", `{"bad": 1}`},
		{"malformed", withSettings, `{"a": `, "not valid JSON", "unset"},
		{"no settings wanted, none given", allow, ``, "", "unset"},
		{"no settings wanted, {} given", allow, ` {} `, "", "unset"},
		{"no settings wanted, some given", allow, `{"a": 1}`, "takes no settings", "unset"},
		{"no settings wanted, list given", allow, `[]`, "takes no settings", "unset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = "unset"
			mod, err := sdk.NewAdmission(tt.p, sdk.Manifest{Name: "x"})
			if err != nil {
				t.Fatal(err)
			}
			msg, err := mod.Call(hostapi.ExportConfigure, []byte(tt.settings))
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantErr == "" && len(msg) != 0 || tt.wantErr != "" && !strings.Contains(string(msg), tt.wantErr) {
				t.Fatalf("configure message %q, want %q", msg, tt.wantErr)
			}
			if got != tt.wantSeen {
				t.Fatalf("plugin saw settings %q, want %q", got, tt.wantSeen)
			}
		})
	}
}

func TestModuleAdmit(t *testing.T) {
	shared := sdk.Allowed() // a response value a plugin reuses must not be written to
	var p sdk.Patch
	p.AddString("/a", "b")
	tests := []struct {
		name     string
		admit    admitFunc
		mutating bool
		input    string
		want     admissionv1.AdmissionResponse
	}{
		{"allowed gets the request uid",
			func(*sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) { return shared, nil }, false,
			`{"uid": "u1", "object": {}}`, admissionv1.AdmissionResponse{UID: "u1", Allowed: true}},
		{"plugin error is a 500",
			func(*sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) { return nil, errors.New("boom") }, false,
			`{"uid": "u2"}`, failure("u2", "boom")},
		{"nil response is a 500",
			func(*sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) { return nil, nil }, false,
			`{"uid": "u3"}`, failure("u3", "plugin x returned no response")},
		{"validating plugin may not patch",
			func(*sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) { return sdk.Patched(&p), nil }, false,
			`{"uid": "u4"}`, failure("u4", "plugin x returned a patch but is not declared admission/mutating")},
		{"malformed request is a 500",
			func(*sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) { return sdk.Allowed(), nil }, false,
			`{"uid": `, failure("", "sdk: malformed admission request")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sdk.Manifest{Name: "x"}
			if tt.mutating {
				m.Kinds = []string{sdk.KindMutatingAdmission}
			}
			mod, err := sdk.NewAdmission(tt.admit, m)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := mod.Call(hostapi.ExportAdmit, []byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			var got admissionv1.AdmissionResponse
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("response %+v, want %+v", got, tt.want)
			}
		})
	}
	if shared.UID != "" {
		t.Fatalf("the module wrote the request's uid into the plugin's response value")
	}
}

func failure(uid, msg string) admissionv1.AdmissionResponse {
	r := admissionv1.AdmissionResponse{UID: "x"}
	raw := []byte(`{"uid":"` + uid + `","allowed":false,"status":{"message":` + string(mustJSON(msg)) + `,"reason":"InternalError","code":500}}`)
	_ = json.Unmarshal(raw, &r)
	return r
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestRegistered(t *testing.T) {
	// Nothing registered in this test binary.
	if _, err := sdk.Registered(); err == nil {
		t.Fatal("Registered without a registration: want an error")
	}
}
