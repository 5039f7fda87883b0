// Package authn authenticates requests to the Tugboat API server the way
// Kubernetes does: a client certificate verified by the TLS layer against the
// cluster CA (user = common name, groups = organizations), or a bearer token
// from a static token file. The Authenticator's Middleware puts the user on
// the request context and answers everything else with 401 and a
// metav1.Status body, except the public health and version endpoints that
// Kubernetes' system:public-info-viewer role opens to anonymous users. The
// user reaches the API handler through apiserver.WithUser.
//
// Authentication only: what a user may do (RBAC) is decided later in the
// chain, from the user and groups recorded here. An Authenticator is
// immutable after New and safe for concurrent use.
package authn

import (
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
)

// Kubernetes' well-known user and group names.
const (
	// Anonymous is the user of requests without credentials.
	Anonymous = "system:anonymous"
	// GroupUnauthenticated is the group of Anonymous.
	GroupUnauthenticated = "system:unauthenticated"
	// GroupAuthenticated is added to every authenticated user's groups.
	GroupAuthenticated = "system:authenticated"
)

// publicPaths are readable without credentials (GET or HEAD), like the
// non-resource URLs of Kubernetes' system:public-info-viewer ClusterRole.
var publicPaths = []string{"/healthz", "/livez", "/readyz", "/version", "/version/"}

// Config configures an Authenticator.
type Config struct {
	// TokenFile is a Kubernetes static token file (see LoadTokenFile); ""
	// disables bearer tokens.
	TokenFile string
	Logger    *slog.Logger
}

// Authenticator turns request credentials into a User.
type Authenticator struct {
	tokens map[string]apiserver.User
	log    *slog.Logger
}

// New builds an Authenticator, loading cfg.TokenFile if set. Errors wrap
// errdefs.ErrInvalid for a malformed token file.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Authenticator{log: cfg.Logger}
	if cfg.TokenFile != "" {
		tokens, err := LoadTokenFile(cfg.TokenFile)
		if err != nil {
			return nil, err
		}
		a.tokens = tokens
	}
	return a, nil
}

// Authenticate returns the user r authenticates as. ok is false when r
// presents a bearer token that is not known; a request with no credentials
// at all authenticates as Anonymous.
func (a *Authenticator) Authenticate(r *http.Request) (u apiserver.User, ok bool) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return certUser(r.TLS.VerifiedChains[0][0]), true
	}
	if token, found := bearerToken(r); found {
		u, ok := a.tokens[token]
		return u, ok && token != ""
	}
	return apiserver.User{Name: Anonymous, Groups: []string{GroupUnauthenticated}}, true
}

// Middleware authenticates every request before next sees it; next finds
// the user with apiserver.UserFrom. Anonymous requests reach next only for the public
// endpoints; other anonymous requests and every request with a bad token
// get 401 Unauthorized.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := a.Authenticate(r)
		if !ok || (u.Name == Anonymous && !isPublic(r)) {
			a.log.Debug("unauthenticated request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "bad_token", !ok)
			writeUnauthorized(w)
			return
		}
		next.ServeHTTP(w, r.WithContext(apiserver.WithUser(r.Context(), u)))
	})
}

// certUser maps a verified client certificate to its user, as Kubernetes'
// x509 authenticator does.
func certUser(cert *x509.Certificate) apiserver.User {
	groups := append(slices.Clone(cert.Subject.Organization), GroupAuthenticated)
	return apiserver.User{Name: cert.Subject.CommonName, Groups: groups}
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header; found is true whenever such a header is present.
func bearerToken(r *http.Request) (token string, found bool) {
	scheme, token, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

func isPublic(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && slices.Contains(publicPaths, r.URL.Path)
}

// writeUnauthorized writes the 401 metav1.Status that kube-apiserver sends.
func writeUnauthorized(w http.ResponseWriter) {
	status := apierrors.NewUnauthorized("Unauthorized").Status()
	status.Kind, status.APIVersion = "Status", "v1"
	body, err := json.Marshal(status)
	if err != nil { // a fixed value; cannot happen
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnauthorized)
	w.Write(body)
}
