package apiserver

import (
	"net/http"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validation/path"
)

// Verbs, as Kubernetes names them in authorization and metrics.
const (
	verbGet              = "get"
	verbList             = "list"
	verbWatch            = "watch"
	verbCreate           = "create"
	verbUpdate           = "update"
	verbPatch            = "patch"
	verbDelete           = "delete"
	verbDeleteCollection = "deletecollection"
)

// request is a parsed resource request.
type request struct {
	verb        string
	res         *resource
	namespace   string
	name        string
	subresource string
	query       url.Values
}

// key is the store key of the request's object.
func (r *request) key() string { return objectKey(r.res, r.namespace, r.name) }

// parseRequest maps a resource URL (/api/v1/..., /apis/<g>/<v>/...) and
// method to a request, like Kubernetes' RequestInfoFactory. It returns a
// 404 StatusError for unknown paths and 405 for methods a path does not
// support.
func (s *Server) parseRequest(r *http.Request) (*request, error) {
	parts := splitPath(r.URL.Path)
	var group, version string
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		version, parts = parts[1], parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		group, version, parts = parts[1], parts[2], parts[3:]
	default:
		return nil, notFoundPath()
	}
	req := &request{query: r.URL.Query()}
	watchPath := false
	if parts[0] == "watch" {
		watchPath, parts = true, parts[1:]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		switch {
		case len(parts) == 2:
			req.name, parts = parts[1], parts[:1]
		case len(parts) == 3 && (parts[2] == subStatus || parts[2] == "finalize"):
			req.name, req.subresource, parts = parts[1], parts[2], parts[:1]
		default:
			req.namespace, parts = parts[1], parts[2:]
		}
	}
	if len(parts) == 0 || len(parts) > 3 {
		return nil, notFoundPath()
	}
	if len(parts) >= 2 {
		req.name = parts[1]
	}
	if len(parts) == 3 {
		req.subresource = parts[2]
	}
	req.res = s.reg.lookup(group, version, parts[0])
	if req.res == nil || (req.namespace != "" && !req.res.namespaced) {
		return nil, notFoundPath()
	}
	if req.subresource != "" && !req.res.hasSub(req.subresource) {
		return nil, notFoundPath()
	}
	for _, seg := range []string{req.namespace, req.name} {
		if seg == "" {
			continue
		}
		if msgs := path.IsValidPathSegmentName(seg); len(msgs) > 0 {
			return nil, apierrors.NewBadRequest(strings.Join(msgs, "; "))
		}
	}
	verb, err := verbOf(r.Method, req, watchPath)
	if err != nil {
		return nil, err
	}
	req.verb = verb
	return req, nil
}

// verbOf maps the method (and whether a name and subresource are present)
// to a verb.
func verbOf(method string, req *request, watchPath bool) (string, error) {
	named := req.name != ""
	switch method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watchPath || isTrue(req.query.Get("watch")):
			if req.subresource != "" {
				return "", methodNotAllowed(req, method)
			}
			return verbWatch, nil
		case named:
			return verbGet, nil
		case req.subresource == "":
			return verbList, nil
		}
	case http.MethodPost:
		if !named && req.subresource == "" && (req.namespace != "" || !req.res.namespaced) {
			return verbCreate, nil
		}
		if named && req.subresource == subBinding {
			return verbCreate, nil
		}
	case http.MethodPut:
		if named && req.subresource != subBinding && req.subresource != subLog {
			return verbUpdate, nil
		}
	case http.MethodPatch:
		if named && req.subresource != subBinding && req.subresource != subLog {
			return verbPatch, nil
		}
	case http.MethodDelete:
		if named && req.subresource == "" {
			return verbDelete, nil
		}
		if !named && (req.namespace != "" || !req.res.namespaced) {
			return verbDeleteCollection, nil
		}
	}
	return "", methodNotAllowed(req, method)
}

func isTrue(v string) bool { return v == "true" || v == "1" }

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}
