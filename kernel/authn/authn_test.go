package authn_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/authn"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/pki"
)

const tokenFile = `secret-token,alice,uid-1,"dev,ops"
other-token, bob ,uid-2
`

func writeFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.csv")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// echoUser answers with the user the middleware recorded, as JSON.
var echoUser = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	u, ok := apiserver.UserFrom(r.Context())
	if !ok {
		http.Error(w, "no user on context", http.StatusInternalServerError)
		return
	}
	json.NewEncoder(w).Encode(u)
})

// server starts the middleware over echoUser with real TLS on 127.0.0.1.
func server(t testing.TB) (*httptest.Server, *pki.PKI) {
	t.Helper()
	p, err := pki.Open(pki.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := authn.New(authn.Config{TokenFile: writeFile(t, tokenFile)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a.Middleware(echoUser))
	srv.TLS = p.ServerTLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, p
}

func keyPair(t testing.TB, certPEM, keyPEM []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMiddleware(t *testing.T) {
	srv, p := server(t)
	adminCert, adminKey := p.AdminPEM()
	admin := keyPair(t, adminCert, adminKey)
	nodeCert, nodeKey, err := p.IssueClientCert("system:node:n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	node := keyPair(t, nodeCert, nodeKey)

	anonymous := &apiserver.User{Name: authn.Anonymous, Groups: []string{authn.GroupUnauthenticated}}
	tests := []struct {
		name   string
		method string
		path   string
		cert   *tls.Certificate
		auth   string          // Authorization header
		want   *apiserver.User // nil: expect 401
	}{
		{name: "admin certificate", path: "/api", cert: &admin,
			want: &apiserver.User{Name: "admin", Groups: []string{"system:masters", authn.GroupAuthenticated}}},
		{name: "certificate without groups", path: "/api/v1/nodes", cert: &node,
			want: &apiserver.User{Name: "system:node:n1", Groups: []string{authn.GroupAuthenticated}}},
		{name: "certificate wins over a bad token", path: "/api", cert: &admin, auth: "Bearer nope",
			want: &apiserver.User{Name: "admin", Groups: []string{"system:masters", authn.GroupAuthenticated}}},
		{name: "token with groups", path: "/api", auth: "Bearer secret-token",
			want: &apiserver.User{Name: "alice", Groups: []string{"dev", "ops", authn.GroupAuthenticated}}},
		{name: "token, lower-case scheme, no groups", method: http.MethodPost, path: "/api/v1/namespaces", auth: "bearer other-token",
			want: &apiserver.User{Name: "bob", Groups: []string{authn.GroupAuthenticated}}},
		{name: "unknown token", path: "/api", auth: "Bearer wrong"},
		{name: "empty token", path: "/api", auth: "Bearer "},
		{name: "unknown token on a public path", path: "/healthz", auth: "Bearer wrong"},
		{name: "basic auth is not supported", path: "/api", auth: "Basic YWRtaW46YWRtaW4="},
		{name: "anonymous api", path: "/api"},
		{name: "anonymous resource", path: "/api/v1/namespaces/default/pods"},
		{name: "anonymous metrics", path: "/metrics"},
		{name: "anonymous healthz", path: "/healthz", want: anonymous},
		{name: "anonymous livez", path: "/livez", want: anonymous},
		{name: "anonymous readyz", path: "/readyz", want: anonymous},
		{name: "anonymous version", path: "/version", want: anonymous},
		{name: "anonymous version slash", path: "/version/", want: anonymous},
		{name: "anonymous HEAD healthz", method: http.MethodHead, path: "/healthz", want: anonymous},
		{name: "anonymous POST healthz", method: http.MethodPost, path: "/healthz"},
		{name: "anonymous healthz subpath", path: "/healthz/ping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tlsCfg := &tls.Config{RootCAs: p.CAPool()}
			if tc.cert != nil {
				tlsCfg.Certificates = []tls.Certificate{*tc.cert}
			}
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
			defer client.CloseIdleConnections()
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequest(method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				checkUnauthorized(t, resp, body)
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d (%s), want 200", resp.StatusCode, body)
			}
			if method == http.MethodHead {
				return // no body to compare
			}
			var got apiserver.User
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			if got.Name != tc.want.Name || !slices.Equal(got.Groups, tc.want.Groups) {
				t.Errorf("user %+v, want %+v", got, *tc.want)
			}
		})
	}
}

func checkUnauthorized(t testing.TB, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d (%s), want 401", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("decode status %q: %v", body, err)
	}
	if st.Kind != "Status" || st.APIVersion != "v1" || st.Status != metav1.StatusFailure ||
		st.Reason != metav1.StatusReasonUnauthorized || st.Code != http.StatusUnauthorized {
		t.Errorf("status body %s, want a v1 Status Failure/Unauthorized/401", body)
	}
}

func TestNoTokenFileRejectsTokens(t *testing.T) {
	a, err := authn.New(authn.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/api", nil)
	req.Header.Set("Authorization", "Bearer anything")
	a.Middleware(echoUser).ServeHTTP(rec, req)
	checkUnauthorized(t, rec.Result(), rec.Body.Bytes())
}

func TestLoadTokenFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string // substring of the error
	}{
		{name: "two columns", content: "tok,alice\n", want: "line 1: 2 columns"},
		{name: "empty token", content: "ok,bob,1\n,alice,2\n", want: "line 2: empty token"},
		{name: "empty user", content: "tok,,1\n", want: "line 1: empty user name"},
		{name: "duplicate token", content: "tok,alice,1\ntok,bob,2\n", want: "line 2: duplicate token"},
		{name: "unterminated quote", content: "tok,alice,1,\"dev\n", want: "tokens.csv"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.content)
			_, err := authn.LoadTokenFile(path)
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not contain %q and the path", err, tc.want)
			}
		})
	}
	if _, err := authn.New(authn.Config{TokenFile: filepath.Join(t.TempDir(), "missing.csv")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing token file: error %v, want ErrNotExist", err)
	}
}
