package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Failure policies of an admission plugin.
const (
	FailurePolicyFail   = "Fail"
	FailurePolicyIgnore = "Ignore"
)

// AdmissionConfig says how an admission plugin is used.
type AdmissionConfig struct {
	// Mutating plugins run first and may return a JSON patch; validating
	// ones only allow or deny (a patch they return is dropped).
	Mutating bool
	// FailurePolicy applies when the plugin fails (timeout, trap, bad
	// response, or a denial with a code of 500 or more, which is how the
	// SDK reports a plugin's own error): FailurePolicyFail ("" too) denies the request with a
	// message naming the plugin, FailurePolicyIgnore allows it.
	FailurePolicy string
	// Rules select the requests the plugin sees; no rules, no requests.
	Rules []AdmissionRule
}

// AdmissionRule matches requests by resource and operation.
type AdmissionRule struct {
	// Resources are plural resource names qualified by group for non-core
	// groups ("pods", "deployments.apps"); "pods/status" names a
	// subresource, "*" every resource, "*/*" every resource and
	// subresource, "pods/*" every subresource of pods.
	Resources []string
	// Operations are CREATE, UPDATE, DELETE, CONNECT or "*".
	Operations []string
}

// Admission runs a plugin as a kernel admission hook. Safe for concurrent
// use.
type Admission struct {
	p      *Plugin
	cfg    AdmissionConfig
	ignore bool
}

var _ apiserver.AdmissionHook = (*Admission)(nil)

// NewAdmission checks that p declares the admission kind cfg asks for and
// exports the admission entry point.
func NewAdmission(p *Plugin, cfg AdmissionConfig) (*Admission, error) {
	kind := hostapi.KindValidatingAdmission
	if cfg.Mutating {
		kind = hostapi.KindMutatingAdmission
	}
	var err error
	switch {
	case cfg.FailurePolicy != "" && cfg.FailurePolicy != FailurePolicyFail && cfg.FailurePolicy != FailurePolicyIgnore:
		err = fmt.Errorf("failure policy %q (want %s or %s): %w", cfg.FailurePolicy, FailurePolicyFail, FailurePolicyIgnore, errdefs.ErrInvalid)
	case !slices.Contains(p.manifest.Kinds, kind):
		err = fmt.Errorf("manifest declares kinds %v, not %s: %w", p.manifest.Kinds, kind, errdefs.ErrInvalid)
	case p.compiled.ExportedFunctions()[hostapi.ExportAdmit] == nil:
		err = fmt.Errorf("module does not export %s: %w", hostapi.ExportAdmit, errdefs.ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("admission plugin %q: %w", p.name, err)
	}
	for _, r := range cfg.Rules {
		for _, op := range r.Operations {
			switch admissionv1.Operation(op) {
			case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect, "*":
			default:
				return nil, fmt.Errorf("admission plugin %q: operation %q: %w", p.name, op, errdefs.ErrInvalid)
			}
		}
	}
	return &Admission{p: p, cfg: cfg, ignore: cfg.FailurePolicy == FailurePolicyIgnore}, nil
}

// Name returns the plugin's name.
func (a *Admission) Name() string { return a.p.name }

// Mutating reports whether the plugin may patch objects.
func (a *Admission) Mutating() bool { return a.cfg.Mutating }

// Admit calls the plugin for a request its rules match and allows the
// others. A plugin failure is handled by the failure policy, so Admit
// returns an error only when ctx or req is unusable.
func (a *Admission) Admit(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("admission plugin %q: no request: %w", a.p.name, errdefs.ErrInvalid)
	}
	if !a.matches(req) {
		return &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}, nil
	}
	resp, err := a.call(ctx, req)
	if err != nil {
		return a.failed(ctx, req, err), nil
	}
	resp.UID = req.UID
	if !a.cfg.Mutating {
		resp.Patch, resp.PatchType = nil, nil
	}
	return resp, nil
}

func (a *Admission) call(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	var callErr error
	resp, err := admitView(a.p.admitLayout, req, func(in []byte, use func(out []byte)) error {
		callErr = a.p.callView(ctx, hostapi.ExportAdmit, in, use)
		return callErr
	})
	switch {
	case err == nil:
		return resp, nil
	case callErr != nil:
		return nil, callErr
	}
	return nil, fmt.Errorf("plugin %q %w", a.p.name, err)
}

// failed applies the failure policy to a plugin error.
func (a *Admission) failed(ctx context.Context, req *admissionv1.AdmissionRequest, err error) *admissionv1.AdmissionResponse {
	if a.ignore {
		a.p.output.logger.LogAttrs(ctx, slog.LevelWarn, "admission plugin failed; request allowed (failure policy Ignore)",
			slog.String(logKeyError, err.Error()))
		return &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	}
	return &admissionv1.AdmissionResponse{
		UID: req.UID,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusInternalServerError,
			Reason:  metav1.StatusReasonInternalError,
			Message: fmt.Sprintf("plugin %q failed (failure policy Fail): %v", a.p.name, err),
		},
	}
}

// matches reports whether a rule selects req.
func (a *Admission) matches(req *admissionv1.AdmissionRequest) bool {
	res := req.Resource.Resource
	if req.Resource.Group != "" {
		res += "." + req.Resource.Group
	}
	for _, r := range a.cfg.Rules {
		if (slices.Contains(r.Operations, string(req.Operation)) || slices.Contains(r.Operations, "*")) &&
			slices.ContainsFunc(r.Resources, func(pattern string) bool {
				return matchResource(pattern, res, req.SubResource)
			}) {
			return true
		}
	}
	return false
}

// matchResource matches "res", "res/sub", "*", "*/*", "res/*", "*/sub".
func matchResource(pattern, res, sub string) bool {
	if pattern == "*/*" {
		return true
	}
	pres, psub, hasSub := strings.Cut(pattern, "/")
	if (pres != "*" && pres != res) || hasSub != (sub != "") {
		return false
	}
	return !hasSub || psub == "*" || psub == sub
}
