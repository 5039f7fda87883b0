package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/sdk"
)

// buildPlugin builds the main package at dir (relative to this package)
// for wasip1. plugintest.BuildWasm imports this package: build by hand.
func buildPlugin(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), filepath.Base(dir)+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", path, dir)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", dir, err, out)
	}
	return path
}

// TestAdmitLayout: a module built with the SDK reads the binary request
// layout and decides on it as on JSON; a module without
// hostapi.ExportAdmitLayout (the raw test guest, like any module built
// before the export existed) keeps getting JSON (TestAdmission covers its
// verdicts).
func TestAdmitLayout(t *testing.T) {
	e, _ := newTestEngine(t)
	old := loadGuest(t, e, PluginConfig{Name: "old"})
	if got := old.AdmitLayout(); got != hostapi.AdmitLayoutJSON {
		t.Errorf("module without %s: layout %d, want JSON", hostapi.ExportAdmitLayout, got)
	}
	p := loadGuest(t, e, PluginConfig{Name: "require-labels", Path: buildPlugin(t, "../plugins/admission/require-labels"),
		Settings: []byte(`{"labels":["team"]}`), PoolSize: 1})
	if got := p.AdmitLayout(); got != hostapi.AdmitLayoutBinary {
		t.Fatalf("SDK module: layout %d, want binary", got)
	}
	// The SDK keeps its input buffer for every kind (hostapi.ExportInputReuse);
	// the old module gets an alloc call before every input.
	if got := p.pool.idle[0].reuseMax; got != 64<<10 {
		t.Errorf("SDK admission module promised %d bytes of input reuse, want 64 KiB", got)
	}
	if got := old.pool.idle[0].reuseMax; got != 0 {
		t.Errorf("module without %s: reuse %d, want 0", hostapi.ExportInputReuse, got)
	}
	a, err := NewAdmission(p, AdmissionConfig{Rules: deploymentRules})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name    string
		req     *admissionv1.AdmissionRequest
		allowed bool
	}{
		{"labelled", admissionRequest(t, admissionv1.Create, map[string]string{"team": "a"}), true},
		{"unlabelled", admissionRequest(t, admissionv1.Create, map[string]string{"app": "web"}), false},
		{"labelled again", admissionRequest(t, admissionv1.Update, map[string]string{"team": "b"}), true},
		{"unlabelled update", admissionRequest(t, admissionv1.Update, nil), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := a.Admit(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Allowed != tc.allowed || resp.UID != tc.req.UID {
				t.Fatalf("allowed %v uid %q (%+v), want allowed %v uid %q", resp.Allowed, resp.UID, resp.Result, tc.allowed, tc.req.UID)
			}
			if !tc.allowed && (resp.Result == nil || !bytes.Contains([]byte(resp.Result.Message), []byte("team"))) {
				t.Fatalf("denial %+v does not name the missing label", resp.Result)
			}
		})
	}
	if st := p.Stats(); st.Started != 1 {
		t.Errorf("%d instances started, want 1", st.Started)
	}
	if in := p.pool.idle[0]; in.inCap == 0 || in.inCap > in.reuseMax {
		t.Errorf("host keeps an input buffer of %d bytes, want one within the promise", in.inCap)
	}
}

// TestAppendAdmissionRequestBinary checks the binary layout byte by byte
// against hostapi's description.
func TestAppendAdmissionRequestBinary(t *testing.T) {
	dry := true
	req := &admissionv1.AdmissionRequest{
		UID:         "u-1",
		Kind:        metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		Resource:    metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
		SubResource: "scale",
		Name:        "web",
		Namespace:   "default",
		Operation:   admissionv1.Update,
		UserInfo:    authenticationv1.UserInfo{Username: "alice", UID: "a-1", Groups: []string{"dev", "ops"}},
		Object:      runtime.RawExtension{Raw: []byte(" {\"a\":1}\n")},
		OldObject:   runtime.RawExtension{Raw: []byte("null")},
		DryRun:      &dry,
		Options:     runtime.RawExtension{Object: &metav1.UpdateOptions{FieldManager: "kubectl"}},
	}
	got, err := AppendAdmissionRequest([]byte("x"), hostapi.AdmitLayoutBinary, req)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(req.Options.Object)
	want := []byte("x" + hostapi.AdmitBinaryMagic)
	want = binary.LittleEndian.AppendUint32(want, hostapi.AdmitFlagDryRun|hostapi.AdmitFlagObjectMeta|hostapi.AdmitFlagOldObjectMeta)
	want = binary.LittleEndian.AppendUint32(want, hostapi.AdmitFieldCount)
	field := func(s string) { want = appendField(want, s) }
	for _, s := range []string{"u-1", "apps", "v1", "Deployment", "apps", "v1", "deployments", "scale", "web", "default", "UPDATE", "alice", "a-1"} {
		field(s)
	}
	field(string(appendField(appendField(nil, "dev"), "ops")))
	field(`{"a":1}`) // white space trimmed
	field("")        // null is absent
	field(string(opts))
	field("") // the object has no labels,
	field("") // no annotations;
	field("") // there is no old object.
	field("")
	if !bytes.Equal(got, want) {
		t.Fatalf("binary request\n got %q\nwant %q", got, want)
	}
	if _, err := AppendAdmissionRequest(nil, 7, req); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("unknown layout: %v, want ErrInvalid", err)
	}
}

// TestWatchdogExpiresBetweenCalls: the lazy watchdog's timer runs out
// while the instance is idle; the next calls neither trap nor lose the
// instance, and a runaway call after that is still stopped.
func TestWatchdogExpiresBetweenCalls(t *testing.T) {
	e, _ := newTestEngine(t)
	p := loadGuest(t, e, PluginConfig{Timeout: 40 * time.Millisecond, PoolSize: 1})
	for i := range 3 {
		if got := mustCall(t, p, "echo", "hi"); got != "hi" {
			t.Fatalf("call %d: echo = %q", i, got)
		}
		time.Sleep(80 * time.Millisecond) // past the deadline and the slack
	}
	if st := p.Stats(); st.Started != 1 {
		t.Fatalf("%d instances started, want 1 (an idle expiry must not break the instance)", st.Started)
	}
	start := time.Now()
	_, err := p.Call(context.Background(), "loop", nil)
	if !errors.Is(err, errdefs.ErrPluginTimeout) {
		t.Fatalf("runaway call: %v, want a timeout", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("runaway call stopped after %v", took)
	}
	if got := mustCall(t, p, "echo", "after"); got != "after" {
		t.Fatalf("echo after the runaway = %q", got)
	}
}

// TestAdmitMetadata: the host extracts the objects' labels and annotations
// into the binary layout; the SDK answers ObjectLabels and friends from
// them exactly as from the JSON, and falls back to the JSON when the host
// could not extract them.
func TestAdmitMetadata(t *testing.T) {
	tests := []struct {
		name      string
		object    string
		extracted bool
		labels    map[string]string // want; nil: none
		annots    map[string]string
	}{
		{"labels and annotations", `{"kind":"Pod","metadata":{"name":"a","labels":{"app":"web","team":""},"annotations":{"note":"x \"y\""}}}`,
			true, map[string]string{"app": "web", "team": ""}, map[string]string{"note": `x "y"`}},
		{"escaped key", `{"metadata":{"labels":{"a\u002fb":"\u00e9"}}}`, true, map[string]string{"a/b": "é"}, nil},
		{"no metadata", `{"kind":"Pod"}`, true, nil, nil},
		{"null labels", `{"metadata":{"labels":null,"annotations":{}}}`, true, nil, nil},
		{"no object", ``, true, nil, nil},
		{"first duplicate wins", `{"metadata":{"labels":{"a":"1"},"labels":{"b":"2"}}}`, true, map[string]string{"a": "1"}, nil},
		{"label value not a string", `{"metadata":{"labels":{"a":1,"b":"2"}}}`, false, map[string]string{"a": "", "b": "2"}, nil},
		{"metadata not an object", `{"metadata":"x"}`, false, nil, nil},
		{"annotations malformed", `{"metadata":{"labels":{"a":"1"},"annotations":[1]}}`, false, map[string]string{"a": "1"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &admissionv1.AdmissionRequest{UID: "u", Operation: admissionv1.Update}
			if tc.object != "" {
				req.Object.Raw, req.OldObject.Raw = []byte(tc.object), []byte(tc.object)
			}
			in, err := AppendAdmissionRequest(nil, hostapi.AdmitLayoutBinary, req)
			if err != nil {
				t.Fatal(err)
			}
			flags := binary.LittleEndian.Uint32(in[len(hostapi.AdmitBinaryMagic):])
			want := uint32(0)
			if tc.extracted {
				want = hostapi.AdmitFlagObjectMeta | hostapi.AdmitFlagOldObjectMeta
			}
			if got := flags &^ hostapi.AdmitFlagDryRun; got != want {
				t.Fatalf("flags %#x, want %#x", got, want)
			}
			jsonIn, err := AppendAdmissionRequest(nil, hostapi.AdmitLayoutJSON, req)
			if err != nil {
				t.Fatal(err)
			}
			for layout, b := range map[string][]byte{"binary": in, "json": jsonIn} {
				r, err := sdk.DecodeAdmissionRequest(b)
				if err != nil {
					t.Fatalf("%s: %v", layout, err)
				}
				for what, m := range map[string]struct {
					got  sdk.StringMap
					want map[string]string
				}{
					"labels": {r.ObjectLabels(), tc.labels}, "annotations": {r.ObjectAnnotations(), tc.annots},
					"old labels": {r.OldObjectLabels(), tc.labels}, "old annotations": {r.OldObjectAnnotations(), tc.annots},
				} {
					got := m.got.Map()
					if len(got) != len(m.want) || m.got.Len() != len(m.want) {
						t.Fatalf("%s %s: %v, want %v", layout, what, got, m.want)
					}
					for k, v := range m.want {
						if got[k] != v || !m.got.Has(k) || !m.got.Equals(k, v) {
							t.Fatalf("%s %s: %v, want %v", layout, what, got, m.want)
						}
					}
					if m.got.Has("absent") {
						t.Fatalf("%s %s: has a key it lacks", layout, what)
					}
				}
			}
		})
	}
}
