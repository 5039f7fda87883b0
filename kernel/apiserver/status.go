package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// conflictMessage is Kubernetes' message for a failed resourceVersion
// precondition.
const conflictMessage = "the object has been modified; please apply your changes to the latest version and try again"

// apiError converts err into a StatusError: StatusErrors pass through,
// errdefs categories map to their Kubernetes reason and code, anything else
// is a 500.
func apiError(err error, req *request) *apierrors.StatusError {
	var se *apierrors.StatusError
	if errors.As(err, &se) {
		return se
	}
	var gr schema.GroupResource
	var name string
	if req != nil && req.res != nil {
		gr, name = req.res.groupResource(), req.name
	}
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return apierrors.NewNotFound(gr, name)
	case errors.Is(err, errdefs.ErrAlreadyExists):
		return apierrors.NewAlreadyExists(gr, name)
	case errors.Is(err, errdefs.ErrConflict):
		return apierrors.NewConflict(gr, name, errors.New(conflictMessage))
	case errors.Is(err, errdefs.ErrInvalid):
		return apierrors.NewBadRequest(err.Error())
	case errors.Is(err, errdefs.ErrTooLarge):
		return apierrors.NewRequestEntityTooLargeError(err.Error())
	case errors.Is(err, errdefs.ErrGone):
		return apierrors.NewResourceExpired(err.Error())
	case errors.Is(err, errdefs.ErrFutureRevision):
		return tooLargeResourceVersion(err.Error())
	case errors.Is(err, errdefs.ErrUnavailable):
		return apierrors.NewServiceUnavailable(err.Error())
	case errors.Is(err, errdefs.ErrPermission):
		return apierrors.NewForbidden(gr, name, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return apierrors.NewTimeoutError(err.Error(), 1)
	}
	return apierrors.NewInternalError(err)
}

// tooLargeResourceVersion is the 504 Kubernetes returns for a
// resourceVersion the server has not reached; client-go recognises it by
// its cause and relists.
func tooLargeResourceVersion(msg string) *apierrors.StatusError {
	se := apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %s", msg), 1)
	se.ErrStatus.Details.Causes = append(se.ErrStatus.Details.Causes, metav1.StatusCause{
		Type: metav1.CauseTypeResourceVersionTooLarge, Message: "Too large resource version",
	})
	return se
}

func unsupportedMediaType(contentType string) *apierrors.StatusError {
	se := apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "", "", 0, false)
	se.ErrStatus.Message = fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got %q)", contentType)
	return se
}

func notAcceptable(accept string) *apierrors.StatusError {
	se := apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schema.GroupResource{}, "", "", 0, false)
	se.ErrStatus.Message = fmt.Sprintf("only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json;as=Table;v=v1;g=meta.k8s.io (got %q)", accept)
	return se
}

func notFoundPath() *apierrors.StatusError {
	return apierrors.NewGenericServerResponse(http.StatusNotFound, "get", schema.GroupResource{}, "", "", 0, false)
}

func methodNotAllowed(req *request, method string) *apierrors.StatusError {
	var gr schema.GroupResource
	if req != nil && req.res != nil {
		gr = req.res.groupResource()
	}
	return apierrors.NewMethodNotSupported(gr, method)
}

// writeError writes err as a metav1.Status. Internal errors are logged.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, req *request, err error) {
	se := apiError(err, req)
	if se.ErrStatus.Code == http.StatusInternalServerError {
		s.log.Error("request", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeStatus(w, se.ErrStatus)
}

// writeStatus writes a metav1.Status with its code.
func writeStatus(w http.ResponseWriter, st metav1.Status) {
	st.Kind, st.APIVersion = "Status", "v1"
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	code := int(st.Code)
	if code == 0 {
		code = http.StatusInternalServerError
		st.Code = int32(code)
	}
	data, err := json.Marshal(st)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// writeJSON writes v as JSON with code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		writeStatus(w, apierrors.NewInternalError(err).ErrStatus)
		return
	}
	writeRawJSON(w, code, data)
}

func writeRawJSON(w http.ResponseWriter, code int, data []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// successStatus is the Status a delete returns when the object is gone.
func successStatus(req *request, uid string) metav1.Status {
	return metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusSuccess,
		Details: &metav1.StatusDetails{
			Name: req.name, Group: req.res.gvk.Group, Kind: req.res.plural, UID: types.UID(uid),
		},
	}
}
