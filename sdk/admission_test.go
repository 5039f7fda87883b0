package sdk_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/tugboat-dev/tugboat/sdk"
)

// TestDecodeAdmissionRequest decodes what the host sends: json.Marshal of
// an admissionv1.AdmissionRequest.
func TestDecodeAdmissionRequest(t *testing.T) {
	kind := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	res := metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	obj := `{"metadata":{"name":"web","labels":{"team":"a"}}}`
	old := `{"metadata":{"name":"web"}}`
	in, err := json.Marshal(&admissionv1.AdmissionRequest{
		UID: "u-1", Kind: kind, Resource: res, SubResource: "scale", RequestKind: &kind, RequestResource: &res,
		Name: "web", Namespace: "prod", Operation: admissionv1.Update,
		UserInfo:  authenticationv1.UserInfo{Username: "ann", UID: "42", Groups: []string{"dev", "ops"}},
		Object:    runtime.RawExtension{Raw: []byte(obj)},
		OldObject: runtime.RawExtension{Raw: []byte(old)},
		DryRun:    ptr.To(true),
		Options:   runtime.RawExtension{Raw: []byte(`{"kind":"UpdateOptions"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := sdk.DecodeAdmissionRequest(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &sdk.AdmissionRequest{
		UID: "u-1", Kind: sdk.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		Resource:    sdk.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
		SubResource: "scale", Name: "web", Namespace: "prod", Operation: sdk.Update,
		UserInfo: sdk.UserInfo{Username: "ann", UID: "42", Groups: []string{"dev", "ops"}},
		Object:   []byte(obj), OldObject: []byte(old), DryRun: true, Options: []byte(`{"kind":"UpdateOptions"}`),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
	}

	// A create: no old object (null), no options.
	in, _ = json.Marshal(&admissionv1.AdmissionRequest{UID: "u-2", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: []byte(obj)}})
	got, err = sdk.DecodeAdmissionRequest(in)
	if err != nil {
		t.Fatal(err)
	}
	if got.OldObject != nil || got.Options != nil || string(got.Object) != obj || got.DryRun {
		t.Fatalf("create request decoded as %+v", got)
	}
}

func TestDecodeAdmissionRequestErrors(t *testing.T) {
	for _, in := range []string{``, `[]`, `"x"`, `{"uid": 7}`, `{"name": ["a"]}`, `{"uid": "a",`, `{"object": {"a": }`, `{"uid" "a"}`} {
		if _, err := sdk.DecodeAdmissionRequest([]byte(in)); err == nil {
			t.Errorf("DecodeAdmissionRequest(%q): want an error", in)
		}
	}
}

func FuzzDecodeAdmissionRequest(f *testing.F) {
	f.Add([]byte(`{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"object":{"metadata":{}},"userInfo":{"groups":["a"]}}`))
	f.Add([]byte(`{"uid":null,"dryRun":true,"oldObject":null}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := sdk.DecodeAdmissionRequest(in)
		var want admissionv1.AdmissionRequest
		if err != nil || json.Unmarshal(in, &want) != nil {
			return
		}
		if strings.Contains(string(in), `\`) || strings.Count(string(in), `"uid"`) > 1 || strings.Count(string(in), `"name"`) > 1 {
			return // escapes and duplicate keys: encoding/json may differ in case folding and which duplicate wins
		}
		if got.UID != string(want.UID) || got.Name != want.Name {
			t.Fatalf("uid %q name %q, encoding/json decodes uid %q name %q", got.UID, got.Name, want.UID, want.Name)
		}
	})
}

// TestResponseJSON checks that the API server decodes what the SDK
// encodes into the same response.
func TestResponseJSON(t *testing.T) {
	var p sdk.Patch
	p.AddString("/metadata/labels/a~1b", "x")
	patched := sdk.Patched(&p)
	patched.Warnings = []string{"w1", "w<2>"}
	patched.AuditAnnotations = map[string]string{"k": "v", "k2": "é"}
	tests := []struct {
		name string
		resp *sdk.AdmissionResponse
		want admissionv1.AdmissionResponse
	}{
		{"allowed", sdk.Allowed(), admissionv1.AdmissionResponse{UID: "u", Allowed: true}},
		{"denied", sdk.Denied(`no "quotes" & <tags>`), admissionv1.AdmissionResponse{UID: "u",
			Result: &metav1.Status{Message: `no "quotes" & <tags>`, Reason: metav1.StatusReasonForbidden, Code: 403}}},
		{"patched", patched, admissionv1.AdmissionResponse{UID: "u", Allowed: true,
			Patch:     []byte(`[{"op":"add","path":"/metadata/labels/a~1b","value":"x"}]`),
			PatchType: ptr.To(admissionv1.PatchTypeJSONPatch), Warnings: []string{"w1", "w<2>"},
			AuditAnnotations: map[string]string{"k": "v", "k2": "é"}}},
		{"empty patch is a plain allow", sdk.Patched(&sdk.Patch{}), admissionv1.AdmissionResponse{UID: "u", Allowed: true}},
		{"own uid kept", &sdk.AdmissionResponse{UID: "mine", Allowed: true}, admissionv1.AdmissionResponse{UID: "mine", Allowed: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.resp.AppendJSON(nil)
			if tt.resp.UID == "" {
				// The module fills in the request's UID; emulate it here.
				r := *tt.resp
				r.UID = "u"
				raw = r.AppendJSON(nil)
			}
			var got admissionv1.AdmissionResponse
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("%s does not decode: %v", raw, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("decoded %+v\nwant %+v\nfrom %s", got, tt.want, raw)
			}
		})
	}
}

func TestPatch(t *testing.T) {
	var p sdk.Patch
	if string(p.Bytes()) != "[]" || p.Len() != 0 {
		t.Fatalf("empty patch = %s", p.Bytes())
	}
	p.Add(sdk.Pointer("metadata", "labels"), []byte(`{"app.kubernetes.io/name":"x"}`))
	p.AddString(sdk.Pointer("metadata", "labels", "a/b~c"), "y")
	p.ReplaceString("/spec/replicas", "3")
	p.Replace("/spec/paused", []byte("true"))
	p.Remove("/spec/old")
	p.Add("/spec/none", nil)
	if p.Len() != 6 {
		t.Fatalf("Len = %d, want 6", p.Len())
	}
	doc := `{"metadata":{"name":"d"},"spec":{"replicas":1,"paused":false,"old":1}}`
	patch, err := jsonpatch.DecodePatch(p.Bytes())
	if err != nil {
		t.Fatalf("%s: %v", p.Bytes(), err)
	}
	out, err := patch.Apply([]byte(doc))
	if err != nil {
		t.Fatalf("apply %s: %v", p.Bytes(), err)
	}
	want := `{"metadata":{"name":"d","labels":{"app.kubernetes.io/name":"x","a/b~c":"y"}},"spec":{"replicas":"3","paused":true,"none":null}}`
	var a, b any
	_ = json.Unmarshal(out, &a)
	_ = json.Unmarshal([]byte(want), &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("patched %s, want %s", out, want)
	}
	if again := p.Bytes(); string(again) != string(p.Bytes()) || strings.Count(string(again), "]") != 1 {
		t.Fatalf("Bytes twice = %s", again)
	}
	// Bytes does not disturb further building.
	p.Remove("/x")
	if !strings.HasSuffix(string(p.Bytes()), `{"op":"remove","path":"/x"}]`) || p.Len() != 7 {
		t.Fatalf("after another op: %s", p.Bytes())
	}
}

func TestPointer(t *testing.T) {
	tests := []struct {
		tokens []string
		want   string
	}{
		{nil, ""},
		{[]string{"spec", "containers", "0", "resources"}, "/spec/containers/0/resources"},
		{[]string{"metadata", "labels", "app.kubernetes.io/name"}, "/metadata/labels/app.kubernetes.io~1name"},
		{[]string{"a~b", ""}, "/a~0b/"},
	}
	for _, tt := range tests {
		if got := sdk.Pointer(tt.tokens...); got != tt.want {
			t.Errorf("Pointer(%q) = %q, want %q", tt.tokens, got, tt.want)
		}
	}
}
