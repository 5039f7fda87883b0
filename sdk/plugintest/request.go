package plugintest

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
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/tugboat-dev/tugboat/sdk"
)

// Request describes one admission request in a test. Object and OldObject
// are JSON or YAML; kind, resource, namespace and name default from the
// object (OldObject for DELETE).
type Request struct {
	Operation   sdk.Operation // default sdk.Create
	Object      string
	OldObject   string
	SubResource string
	// Namespace and Name override the object's metadata.
	Namespace, Name string
	// Resource overrides the resource derived from the kind ("pods").
	Resource string
	Username string
	Groups   []string
	DryRun   bool
}

// Result is what a plugin answered, decoded the way the API server decodes
// it (admission.k8s.io/v1).
type Result struct {
	Allowed bool
	// Message, Reason and Code come from the response's status.
	Message string
	Reason  string
	Code    int32
	// Patch is the JSON patch (nil if none); Patched is the object after
	// applying it (nil if no patch).
	Patch   []byte
	Patched []byte
	// Response is the decoded response.
	Response *admissionv1.AdmissionResponse
}

// Reviewer runs admission requests through a plugin: the native Harness
// and the Wasm plugin from RunWasm both are, so one table of cases can run
// against both.
type Reviewer interface {
	Review(t testing.TB, r Request) Result
}

// AdmissionRequest builds the admission.k8s.io/v1 request for r, as the
// API server would send it.
func AdmissionRequest(t testing.TB, r Request) *admissionv1.AdmissionRequest {
	t.Helper()
	op := r.Operation
	if op == "" {
		op = sdk.Create
	}
	obj, old := toJSON(t, r.Object), toJSON(t, r.OldObject)
	src := obj
	if src == nil {
		src = old
	}
	var m meta
	if src != nil {
		if err := json.Unmarshal(src, &m); err != nil {
			t.Fatalf("plugintest: object: %v", err)
		}
	}
	group, version := splitAPIVersion(m.APIVersion)
	resource := r.Resource
	if resource == "" {
		resource, _, _ = strings.Cut(ResourceOf(m.APIVersion, m.Kind), ".")
	}
	ns, name := m.Metadata.Namespace, m.Metadata.Name
	if r.Namespace != "" {
		ns = r.Namespace
	}
	if r.Name != "" {
		name = r.Name
	}
	kind := metav1.GroupVersionKind{Group: group, Version: version, Kind: m.Kind}
	res := metav1.GroupVersionResource{Group: group, Version: version, Resource: resource}
	dry := r.DryRun
	req := &admissionv1.AdmissionRequest{
		UID: types.UID("plugintest-" + strings.ToLower(string(op)) + "-" + name), Kind: kind, Resource: res,
		SubResource: r.SubResource, RequestKind: &kind, RequestResource: &res, RequestSubResource: r.SubResource,
		Name: name, Namespace: ns, Operation: admissionv1.Operation(op),
		UserInfo: authenticationv1.UserInfo{Username: r.Username, Groups: r.Groups},
		DryRun:   &dry,
	}
	if obj != nil {
		req.Object = runtime.RawExtension{Raw: obj}
	}
	if old != nil {
		req.OldObject = runtime.RawExtension{Raw: old}
	}
	return req
}

func toJSON(t testing.TB, s string) []byte {
	t.Helper()
	if strings.TrimSpace(s) == "" {
		return nil
	}
	raw, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		t.Fatalf("plugintest: object is neither JSON nor YAML: %v", err)
	}
	return raw
}

// settingsJSON converts settings from YAML to JSON; settings that are
// neither go to the plugin unchanged, so tests can check how it rejects
// malformed input.
func settingsJSON(s string) []byte {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	raw, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		return []byte(s)
	}
	return raw
}

func splitAPIVersion(apiVersion string) (group, version string) {
	if g, v, ok := strings.Cut(apiVersion, "/"); ok {
		return g, v
	}
	return "", apiVersion
}

// ResourceOf returns the resource name ("pods", "deployments.apps") of a
// kind: its lowercase plural, qualified by the group for non-core groups.
func ResourceOf(apiVersion, kind string) string {
	group, _ := splitAPIVersion(apiVersion)
	plural := strings.ToLower(kind)
	switch {
	case plural == "", plural == "endpoints":
	case strings.HasSuffix(plural, "s"), strings.HasSuffix(plural, "x"), strings.HasSuffix(plural, "ch"):
		plural += "es"
	case strings.HasSuffix(plural, "y") && !strings.HasSuffix(plural, "ay") && !strings.HasSuffix(plural, "ey"):
		plural = plural[:len(plural)-1] + "ies"
	default:
		plural += "s"
	}
	if group != "" {
		plural += "." + group
	}
	return plural
}

// result decodes an AdmissionResponse and applies its patch to the
// request's object.
func result(t testing.TB, req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) Result {
	t.Helper()
	res := Result{Allowed: resp.Allowed, Patch: resp.Patch, Response: resp}
	if resp.Result != nil {
		res.Message, res.Reason, res.Code = resp.Result.Message, string(resp.Result.Reason), resp.Result.Code
	}
	if resp.UID != req.UID {
		t.Errorf("plugintest: response uid %q, want the request's %q", resp.UID, req.UID)
	}
	if len(resp.Patch) > 0 {
		if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Errorf("plugintest: response has a patch but patchType %v, want JSONPatch", resp.PatchType)
		}
		patch, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("plugintest: plugin returned an invalid JSON patch %s: %v", resp.Patch, err)
		}
		res.Patched, err = patch.Apply(req.Object.Raw)
		if err != nil {
			t.Fatalf("plugintest: plugin's patch %s does not apply: %v", resp.Patch, err)
		}
	}
	return res
}

// JSONEqual reports whether got and want (JSON or YAML) encode the same
// value.
func JSONEqual(t testing.TB, got []byte, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	if err := json.Unmarshal(toJSON(t, want), &b); err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return reflect.DeepEqual(a, b)
}
