package apiserver

import (
	"net/http"
	"strings"
	"time"
)

// routes builds the top-level handler: health, version, discovery, OpenAPI
// and resources, all behind the metrics recorder.
func (s *Server) routes() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		info := s.serve(rec, r)
		s.metrics.observe(info, rec.code(), time.Since(start))
	})
}

// requestLabels are the metric labels of a served request.
type requestLabels struct {
	verb     string
	resource string
	sub      string
}

// serve dispatches one request and returns its metric labels.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) requestLabels {
	p := r.URL.Path
	switch {
	case p == "/healthz" || p == "/livez" || p == "/readyz" ||
		strings.HasPrefix(p, "/healthz/") || strings.HasPrefix(p, "/livez/") || strings.HasPrefix(p, "/readyz/"):
		s.serveHealth(w, r)
		return requestLabels{verb: "get", resource: "health"}
	case p == "/version" || p == "/version/":
		s.serveVersion(w, r)
		return requestLabels{verb: "get", resource: "version"}
	case p == "/openapi/v2" || p == "/openapi/v3" || strings.HasPrefix(p, "/openapi/v3/"):
		s.serveOpenAPI(w, r)
		return requestLabels{verb: "get", resource: "openapi"}
	}
	if s.serveNodeStream(w, r) { // pods/exec, attach, portforward (nodeproxy.go)
		return requestLabels{verb: "create", resource: "pods", sub: "exec"}
	}
	if s.serveMetricsAPI(w, r) { // metrics.k8s.io (metricsapi.go)
		return requestLabels{verb: strings.ToLower(r.Method), resource: "metrics"}
	}
	if r.Method == http.MethodGet && s.serveDiscovery(w, r) {
		return requestLabels{verb: "get", resource: "discovery"}
	}
	req, err := s.parseRequest(r)
	if err != nil {
		s.writeError(w, r, req, err)
		return requestLabels{verb: strings.ToLower(r.Method), resource: "unknown"}
	}
	if err := s.authorizeNode(w, r, req); err != nil { // nodeauthz.go
		s.writeError(w, r, req, err)
		return requestLabels{verb: req.verb, resource: req.res.plural, sub: req.subresource}
	}
	s.serveResource(w, r, req)
	return requestLabels{verb: req.verb, resource: req.res.plural, sub: req.subresource}
}

// serveResource dispatches a parsed resource request by verb and
// subresource.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, req *request) {
	switch req.verb {
	case verbGet:
		switch req.subresource {
		case subScale:
			s.serveGetScale(w, r, req)
		case subLog:
			s.serveLog(w, r, req)
		default:
			s.serveGet(w, r, req)
		}
	case verbList:
		s.serveList(w, r, req)
	case verbWatch:
		s.serveWatch(w, r, req)
	case verbCreate:
		if req.subresource == subBinding {
			s.serveBinding(w, r, req)
			return
		}
		s.serveCreate(w, r, req)
	case verbUpdate:
		if req.subresource == subScale {
			s.serveUpdateScale(w, r, req)
			return
		}
		s.serveUpdate(w, r, req)
	case verbPatch:
		s.servePatch(w, r, req)
	case verbDelete:
		s.serveDelete(w, r, req)
	case verbDeleteCollection:
		s.serveDeleteCollection(w, r, req)
	}
}

// recorder remembers the status code written; Unwrap lets
// http.ResponseController reach the underlying writer's Flush.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
