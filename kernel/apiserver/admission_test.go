package apiserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
)

// recordingHook records requests; a mutating one adds a label, a
// validating one denies pods labelled deny=yes and fails on fail=yes.
type recordingHook struct {
	name     string
	mutating bool
	mu       sync.Mutex
	seen     []admissionv1.AdmissionRequest
}

func (h *recordingHook) Name() string   { return h.name }
func (h *recordingHook) Mutating() bool { return h.mutating }

func (h *recordingHook) Admit(_ context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	h.mu.Lock()
	h.seen = append(h.seen, *req)
	h.mu.Unlock()
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	var obj metav1.PartialObjectMetadata
	if len(req.Object.Raw) > 0 {
		if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
			return nil, err
		}
	}
	if h.mutating {
		if req.Operation == admissionv1.Create {
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
			resp.Patch = []byte(`[{"op":"add","path":"/metadata/annotations","value":{"mutated-by":"` + h.name + `"}}]`)
		}
		return resp, nil
	}
	switch {
	case obj.Labels["deny"] == "yes":
		resp.Allowed = false
		resp.Result = &metav1.Status{Message: "denied by policy", Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden}
	case obj.Labels["fail"] == "yes":
		return nil, errors.New("policy engine down")
	}
	return resp, nil
}

func (h *recordingHook) ops() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.seen {
		out = append(out, string(r.Operation)+"/"+r.Resource.Resource+"/"+r.SubResource)
	}
	return out
}

func TestAdmissionHooks(t *testing.T) {
	mut := &recordingHook{name: "mut", mutating: true}
	val := &recordingHook{name: "val"}
	e := newEnv(t, withAPI(func(c *apiserver.Config) { c.Admission = []apiserver.AdmissionHook{val, mut} }))
	// Put a user in the context, as the authentication layer does.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := apiserver.WithUser(r.Context(), apiserver.User{Name: "alice", Groups: []string{"devs"}})
		e.api.Handler().ServeHTTP(w, r.WithContext(ctx))
	}))
	defer srv.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	pods := client.CoreV1().Pods("default")
	p, err := pods.Create(ctx, testPod("p", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Annotations["mutated-by"] != "mut" {
		t.Fatalf("mutation not applied: %v", p.Annotations)
	}
	val.mu.Lock()
	last := val.seen[len(val.seen)-1]
	val.mu.Unlock()
	var seenObj corev1.Pod
	if err := json.Unmarshal(last.Object.Raw, &seenObj); err != nil || seenObj.Annotations["mutated-by"] != "mut" {
		t.Fatalf("validating hook saw the object before mutation: %v", seenObj.Annotations)
	}
	if last.UserInfo.Username != "alice" || last.Namespace != "default" || last.Kind.Kind != "Pod" {
		t.Fatalf("admission request %+v", last)
	}
	denied := testPod("no", map[string]string{"deny": "yes"})
	_, err = pods.Create(ctx, denied, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("denied create: %v, want Forbidden", err)
	}
	if _, err := pods.Get(ctx, "no", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("denied object was written: %v", err)
	}
	_, err = pods.Create(ctx, testPod("boom", map[string]string{"fail": "yes"}), metav1.CreateOptions{})
	if !apierrors.IsInternalError(err) {
		t.Fatalf("failing hook: %v, want InternalError", err)
	}
	if _, err := pods.Patch(ctx, "p", types.MergePatchType, []byte(`{"metadata":{"labels":{"deny":"yes"}}}`), metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("denied patch: %v", err)
	}
	if _, err := pods.Patch(ctx, "p", types.MergePatchType, []byte(`{"status":{"phase":"Running"}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"CREATE/pods/", "CREATE/pods/", "CREATE/pods/", "UPDATE/pods/", "UPDATE/pods/status", "DELETE/pods/"}
	if got := val.ops(); !equalStrings(got, want) {
		t.Fatalf("validating hook saw %v, want %v", got, want)
	}
	if got := mut.ops(); !equalStrings(got, want) {
		t.Fatalf("mutating hook saw %v", got)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
