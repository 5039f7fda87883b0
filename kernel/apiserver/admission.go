package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/utils/ptr"
)

// User is the authenticated caller of a request, put in the request context
// by the authentication layer that wraps the Handler.
type User struct {
	Name   string
	Groups []string
}

type userKey struct{}

// WithUser returns ctx carrying u.
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the user in ctx, if any.
func UserFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}

// AdmissionHook is called for every write (create, update, patch, delete,
// and writes through subresources). Mutating hooks run first, in Config
// order, and may return a JSON patch (RFC 6902, PatchType JSONPatch) that is
// applied to the object; then validating hooks run on the final object. A
// response with Allowed false rejects the request with its Result (code 400
// unless the Result gives a code of 400 or more); an error from Admit
// rejects it with 500 (hooks implement their own failure policy).
// Implementations must be safe for concurrent use.
type AdmissionHook interface {
	Name() string
	Mutating() bool
	Admit(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error)
}

// admissionAttrs describe one write for the hooks.
type admissionAttrs struct {
	op     admissionv1.Operation
	req    *request
	obj    runtime.Object // nil for delete
	old    runtime.Object // nil for create
	dryRun bool
}

func (s *Server) admissionRequest(ctx context.Context, a admissionAttrs) (*admissionv1.AdmissionRequest, error) {
	res, sub := a.req.res, a.req.subresource
	gvk := subresourceKind(res, sub)
	if sub == "" || sub == subStatus {
		gvk = res.gvk
	}
	kind := metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}
	resource := metav1.GroupVersionResource{Group: res.gvk.Group, Version: res.gvk.Version, Resource: res.plural}
	ar := &admissionv1.AdmissionRequest{
		UID: uuid.NewUUID(), Kind: kind, Resource: resource, SubResource: sub,
		RequestKind: &kind, RequestResource: &resource, RequestSubResource: sub,
		Name: a.req.name, Namespace: a.req.namespace, Operation: a.op, DryRun: ptr.To(a.dryRun),
	}
	if u, ok := UserFrom(ctx); ok {
		ar.UserInfo = authenticationv1.UserInfo{Username: u.Name, Groups: u.Groups}
	}
	for _, x := range []struct {
		obj runtime.Object
		dst *runtime.RawExtension
	}{{a.obj, &ar.Object}, {a.old, &ar.OldObject}} {
		if x.obj == nil {
			continue
		}
		raw, err := json.Marshal(x.obj)
		if err != nil {
			return nil, fmt.Errorf("admission: encode object: %w", err)
		}
		x.dst.Raw = raw
	}
	return ar, nil
}

// admitMutating runs the mutating hooks and returns the possibly patched
// object (a new value when any hook patched it).
func (s *Server) admitMutating(ctx context.Context, a admissionAttrs) (runtime.Object, error) {
	if len(s.mutating) == 0 {
		return a.obj, nil
	}
	for _, h := range s.mutating {
		ar, err := s.admissionRequest(ctx, a)
		if err != nil {
			return nil, err
		}
		resp, err := s.callHook(ctx, h, ar)
		if err != nil {
			return nil, err
		}
		if len(resp.Patch) == 0 || a.obj == nil {
			continue
		}
		if resp.PatchType != nil && *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			return nil, apierrors.NewInternalError(fmt.Errorf("admission hook %q returned unsupported patch type %q", h.Name(), *resp.PatchType))
		}
		patch, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("admission hook %q returned an invalid patch: %w", h.Name(), err))
		}
		patched, err := patch.Apply(ar.Object.Raw)
		if err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("admission hook %q: apply patch: %w", h.Name(), err))
		}
		obj := a.req.res.newObj()
		if err := json.Unmarshal(patched, obj); err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("admission hook %q: patched object does not decode: %w", h.Name(), err))
		}
		a.obj = obj
	}
	return a.obj, nil
}

// admitValidating runs the validating hooks.
func (s *Server) admitValidating(ctx context.Context, a admissionAttrs) error {
	if len(s.validate) == 0 {
		return nil
	}
	ar, err := s.admissionRequest(ctx, a)
	if err != nil {
		return err
	}
	for _, h := range s.validate {
		if _, err := s.callHook(ctx, h, ar); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) callHook(ctx context.Context, h AdmissionHook, ar *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	resp, err := h.Admit(ctx, ar)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("admission hook %q: %w", h.Name(), err))
	}
	if resp == nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("admission hook %q returned no response", h.Name()))
	}
	if resp.Allowed {
		return resp, nil
	}
	st := metav1.Status{Status: metav1.StatusFailure}
	if resp.Result != nil {
		st = *resp.Result
	}
	if st.Code < http.StatusBadRequest {
		st.Code = http.StatusBadRequest
	}
	if st.Reason == "" {
		st.Reason = metav1.StatusReasonBadRequest
	}
	msg := st.Message
	if msg == "" {
		msg = "without explanation"
	}
	st.Status = metav1.StatusFailure
	st.Message = fmt.Sprintf("admission hook %q denied the request: %s", h.Name(), msg)
	return nil, &apierrors.StatusError{ErrStatus: st}
}
