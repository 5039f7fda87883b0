package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// admissionRequest builds a request for a Deployment with labels.
func admissionRequest(t testing.TB, op admissionv1.Operation, labels map[string]string) *admissionv1.AdmissionRequest {
	t.Helper()
	obj, err := json.Marshal(map[string]any{"metadata": map[string]any{"name": "web", "labels": labels}})
	if err != nil {
		t.Fatal(err)
	}
	return &admissionv1.AdmissionRequest{
		UID:       types.UID("req-1"),
		Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
		Operation: op,
		Namespace: "default",
		Name:      "web",
		Object:    runtime.RawExtension{Raw: obj},
	}
}

var deploymentRules = []AdmissionRule{{Resources: []string{"deployments.apps"}, Operations: []string{"CREATE", "UPDATE"}}}

func TestAdmission(t *testing.T) {
	e, _ := newTestEngine(t)
	p := loadGuest(t, e, PluginConfig{Name: "require-team", Settings: []byte(`{"requiredLabels":["team"]}`)})
	a, err := NewAdmission(p, AdmissionConfig{Rules: deploymentRules})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name() != "require-team" || a.Mutating() {
		t.Errorf("Name() = %q, Mutating() = %v", a.Name(), a.Mutating())
	}
	tests := []struct {
		name    string
		req     *admissionv1.AdmissionRequest
		allowed bool
		message string
	}{
		{"labelled", admissionRequest(t, admissionv1.Create, map[string]string{"team": "a"}), true, ""},
		{"unlabelled", admissionRequest(t, admissionv1.Create, nil), false, "missing required labels: team"},
		{"unlabelled update", admissionRequest(t, admissionv1.Update, nil), false, "missing required labels: team"},
		{"delete is not matched", admissionRequest(t, admissionv1.Delete, nil), true, ""},
	}
	pods := admissionRequest(t, admissionv1.Create, nil)
	pods.Resource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	tests = append(tests, struct {
		name    string
		req     *admissionv1.AdmissionRequest
		allowed bool
		message string
	}{"pods are not matched", pods, true, ""})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := a.Admit(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.UID != tc.req.UID || resp.Allowed != tc.allowed {
				t.Fatalf("response %+v, want uid %s allowed %v", resp, tc.req.UID, tc.allowed)
			}
			if tc.message != "" && (resp.Result == nil || !strings.Contains(resp.Result.Message, tc.message)) {
				t.Errorf("result %+v, want a message with %q", resp.Result, tc.message)
			}
		})
	}
}

func TestAdmissionFailurePolicy(t *testing.T) {
	e, _ := newTestEngine(t)
	// Responses carry a patch too large for the result limit, so every
	// call fails.
	settings, _ := json.Marshal(map[string]any{"patch": strings.Repeat("x", 400)})
	p := loadGuest(t, e, PluginConfig{Name: "broken-policy", MaxResultSize: 300, Settings: settings})
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for _, tc := range []struct {
		policy  string
		ctx     context.Context
		allowed bool
	}{
		{"", context.Background(), false},
		{FailurePolicyFail, expired, false},
		{FailurePolicyIgnore, context.Background(), true},
		{FailurePolicyIgnore, expired, true},
	} {
		a, err := NewAdmission(p, AdmissionConfig{FailurePolicy: tc.policy, Rules: deploymentRules})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := a.Admit(tc.ctx, admissionRequest(t, admissionv1.Create, nil))
		if err != nil {
			t.Fatalf("policy %q: %v", tc.policy, err)
		}
		if resp.Allowed != tc.allowed {
			t.Errorf("policy %q: allowed = %v, want %v", tc.policy, resp.Allowed, tc.allowed)
		}
		if !tc.allowed && (resp.Result == nil || resp.Result.Code != 500 || !strings.Contains(resp.Result.Message, `plugin "broken-policy"`)) {
			t.Errorf("policy %q: result %+v, want code 500 naming the plugin", tc.policy, resp.Result)
		}
	}
}

func TestAdmissionPatches(t *testing.T) {
	e, _ := newTestEngine(t)
	const patch = `[{"op":"add","path":"/metadata/labels/team","value":"default"}]`
	settings, _ := json.Marshal(map[string]any{"patch": patch})
	p := loadGuest(t, e, PluginConfig{Name: "patcher", Settings: settings})
	for _, mutating := range []bool{true, false} {
		a, err := NewAdmission(p, AdmissionConfig{Mutating: mutating, Rules: []AdmissionRule{{Resources: []string{"*"}, Operations: []string{"*"}}}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := a.Admit(context.Background(), admissionRequest(t, admissionv1.Create, nil))
		if err != nil || !resp.Allowed {
			t.Fatalf("mutating=%v: %+v, %v", mutating, resp, err)
		}
		if got := string(resp.Patch); (got == patch) != mutating {
			t.Errorf("mutating=%v: patch %q", mutating, got)
		}
	}
}

func TestNewAdmissionErrors(t *testing.T) {
	e, _ := newTestEngine(t)
	p := loadGuest(t, e, PluginConfig{})
	for _, cfg := range []AdmissionConfig{
		{FailurePolicy: "Sometimes"},
		{Rules: []AdmissionRule{{Resources: []string{"pods"}, Operations: []string{"PATCH"}}}},
	} {
		if _, err := NewAdmission(p, cfg); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("NewAdmission(%+v): %v, want ErrInvalid", cfg, err)
		}
	}
}

func TestMatchResource(t *testing.T) {
	for _, tc := range []struct {
		pattern, res, sub string
		want              bool
	}{
		{"pods", "pods", "", true},
		{"pods", "pods", "status", false},
		{"pods/status", "pods", "status", true},
		{"pods/*", "pods", "status", true},
		{"pods/*", "pods", "", false},
		{"*", "deployments.apps", "", true},
		{"*", "deployments.apps", "scale", false},
		{"*/*", "deployments.apps", "scale", true},
		{"*/*", "pods", "", true},
		{"deployments.apps", "deployments", "", false},
	} {
		if got := matchResource(tc.pattern, tc.res, tc.sub); got != tc.want {
			t.Errorf("matchResource(%q, %q, %q) = %v, want %v", tc.pattern, tc.res, tc.sub, got, tc.want)
		}
	}
}
