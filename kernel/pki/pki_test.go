package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/pki"
)

func openPKI(t testing.TB, opts pki.Options) *pki.PKI {
	t.Helper()
	p, err := pki.Open(opts)
	if err != nil {
		t.Fatalf("open pki: %v", err)
	}
	return p
}

// readCert parses the certificate file name in dir.
func readCert(t testing.TB, dir, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cert
}

var certFiles = []string{pki.CACertFile, pki.ServingCertFile, pki.AdminCertFile}

func serials(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := make(map[string]string)
	for _, name := range certFiles {
		m[name] = readCert(t, dir, name).SerialNumber.String()
	}
	return m
}

func TestOpenCreatesFilesWithModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	openPKI(t, pki.Options{Dir: dir})

	for _, tc := range []struct {
		name string
		mode os.FileMode
	}{
		{pki.CAKeyFile, 0o600},
		{pki.ServingKeyFile, 0o600},
		{pki.AdminKeyFile, 0o600},
		{pki.CACertFile, 0o644},
		{pki.ServingCertFile, 0o644},
		{pki.AdminCertFile, 0o644},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi, err := os.Stat(filepath.Join(dir, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tc.mode {
				t.Errorf("mode %v, want %v", got, tc.mode)
			}
		})
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("directory mode %v, want 0700", got)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(tmp) > 0 {
		t.Errorf("temporary files left behind: %v", tmp)
	}
}

func TestCertificateContents(t *testing.T) {
	dir := t.TempDir()
	p := openPKI(t, pki.Options{Dir: dir, ExtraSANs: []string{"tugboat.example.com", "10.1.2.3"}})

	ca := readCert(t, dir, pki.CACertFile)
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA: IsCA=%v algorithm=%v, want a CA with an ECDSA key", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	if !ca.Equal(p.CACert()) {
		t.Error("CACert() differs from ca.crt")
	}

	serving := readCert(t, dir, pki.ServingCertFile)
	for _, name := range []string{"localhost", "tugboat.example.com", "kubernetes.default.svc"} {
		if err := serving.VerifyHostname(name); err != nil {
			t.Errorf("serving certificate: %v", err)
		}
	}
	for _, ip := range []string{"127.0.0.1", "::1", "10.1.2.3"} {
		if err := serving.VerifyHostname(ip); err != nil {
			t.Errorf("serving certificate: %v", err)
		}
	}
	if _, err := serving.Verify(x509.VerifyOptions{Roots: p.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving certificate does not verify for server auth: %v", err)
	}

	admin := readCert(t, dir, pki.AdminCertFile)
	if admin.Subject.CommonName != pki.AdminUser || !slices.Equal(admin.Subject.Organization, []string{pki.AdminGroup}) {
		t.Errorf("admin subject %v, want CN=%s O=%s", admin.Subject, pki.AdminUser, pki.AdminGroup)
	}
	if _, err := admin.Verify(x509.VerifyOptions{Roots: p.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate does not verify for client auth: %v", err)
	}
	if _, err := admin.Verify(x509.VerifyOptions{Roots: p.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("admin certificate verifies for server auth; want client auth only")
	}
}

func TestReopenReusesCertificates(t *testing.T) {
	dir := t.TempDir()
	openPKI(t, pki.Options{Dir: dir, ExtraSANs: []string{"10.0.0.1"}})
	first := serials(t, dir)
	openPKI(t, pki.Options{Dir: dir, ExtraSANs: []string{"10.0.0.1"}})
	second := serials(t, dir)
	for _, name := range certFiles {
		if first[name] != second[name] {
			t.Errorf("%s: serial %s after reopen, want %s (reused)", name, second[name], first[name])
		}
	}
}

func TestRegenerates(t *testing.T) {
	tests := []struct {
		name string
		// prepare changes the directory after a first Open; it returns the
		// options for the second Open.
		prepare func(t *testing.T, dir string) pki.Options
		renewed []string // certificates with a new serial after the second Open
	}{
		{
			name: "leaf files missing",
			prepare: func(t *testing.T, dir string) pki.Options {
				remove(t, dir, pki.ServingKeyFile, pki.AdminCertFile)
				return pki.Options{Dir: dir}
			},
			renewed: []string{pki.ServingCertFile, pki.AdminCertFile},
		},
		{
			name: "whole CA missing",
			prepare: func(t *testing.T, dir string) pki.Options {
				remove(t, dir, pki.CACertFile, pki.CAKeyFile)
				return pki.Options{Dir: dir}
			},
			renewed: certFiles,
		},
		{
			name: "new extra SAN",
			prepare: func(t *testing.T, dir string) pki.Options {
				return pki.Options{Dir: dir, ExtraSANs: []string{"new.example.com"}}
			},
			renewed: []string{pki.ServingCertFile},
		},
		{
			name: "leaves expired",
			prepare: func(t *testing.T, dir string) pki.Options {
				return pki.Options{Dir: dir, Now: func() time.Time { return time.Now().Add(pki.LeafValidity) }}
			},
			renewed: []string{pki.ServingCertFile, pki.AdminCertFile},
		},
		{
			name: "CA expired",
			prepare: func(t *testing.T, dir string) pki.Options {
				return pki.Options{Dir: dir, Now: func() time.Time { return time.Now().Add(pki.CAValidity) }}
			},
			renewed: certFiles,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			openPKI(t, pki.Options{Dir: dir})
			before := serials(t, dir)
			opts := tc.prepare(t, dir)
			p := openPKI(t, opts)
			after := serials(t, dir)
			for _, name := range certFiles {
				renewed := before[name] != after[name]
				if want := slices.Contains(tc.renewed, name); renewed != want {
					t.Errorf("%s renewed = %v, want %v", name, renewed, want)
				}
			}
			// Whatever was kept or renewed, the leaves chain to the CA in use.
			now := time.Now()
			if opts.Now != nil {
				now = opts.Now()
			}
			for _, name := range []string{pki.ServingCertFile, pki.AdminCertFile} {
				leaf := readCert(t, dir, name)
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.CAPool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
					t.Errorf("%s does not verify against the CA: %v", name, err)
				}
			}
		})
	}
}

func remove(t testing.TB, dir string, names ...string) {
	t.Helper()
	for _, name := range names {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name     string
		prepare  func(t *testing.T, dir string) // after a first successful Open
		extra    []string
		wantFile string // the error must name this file
	}{
		{
			name: "corrupt CA certificate",
			prepare: func(t *testing.T, dir string) {
				write(t, dir, pki.CACertFile, "not a certificate")
			},
			wantFile: pki.CACertFile,
		},
		{
			name: "corrupt serving key",
			prepare: func(t *testing.T, dir string) {
				write(t, dir, pki.ServingKeyFile, "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
			},
			wantFile: pki.ServingKeyFile,
		},
		{
			name: "truncated admin certificate",
			prepare: func(t *testing.T, dir string) {
				data, err := os.ReadFile(filepath.Join(dir, pki.AdminCertFile))
				if err != nil {
					t.Fatal(err)
				}
				write(t, dir, pki.AdminCertFile, string(data[:len(data)/2]))
			},
			wantFile: pki.AdminCertFile,
		},
		{
			name: "CA key missing",
			prepare: func(t *testing.T, dir string) {
				remove(t, dir, pki.CAKeyFile)
			},
			wantFile: pki.CAKeyFile,
		},
		{
			name: "key of another pair",
			prepare: func(t *testing.T, dir string) {
				data, err := os.ReadFile(filepath.Join(dir, pki.AdminKeyFile))
				if err != nil {
					t.Fatal(err)
				}
				write(t, dir, pki.ServingKeyFile, string(data))
			},
			wantFile: pki.ServingKeyFile,
		},
		{
			name:     "bad extra SAN",
			prepare:  func(t *testing.T, dir string) {},
			extra:    []string{"not a name!"},
			wantFile: "not a name!",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			openPKI(t, pki.Options{Dir: dir})
			tc.prepare(t, dir)
			_, err := pki.Open(pki.Options{Dir: dir, ExtraSANs: tc.extra})
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("Open error = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.wantFile) {
				t.Errorf("error %q does not name %q", err, tc.wantFile)
			}
		})
	}
}

func write(t testing.TB, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startTLSServer serves, with p's server TLS configuration on 127.0.0.1,
// a handler that reports the verified client certificate's common name or
// "anonymous".
func startTLSServer(t testing.TB, p *pki.PKI) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			fmt.Fprint(w, "anonymous")
			return
		}
		fmt.Fprint(w, r.TLS.VerifiedChains[0][0].Subject.CommonName)
	}))
	srv.TLS = p.ServerTLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// get does a GET with a client using the CA as its only root and the given
// client certificates.
func get(t testing.TB, p *pki.PKI, url string, certs ...tls.Certificate) (string, error) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      p.CAPool(),
		Certificates: certs,
	}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	p := openPKI(t, pki.Options{Dir: dir})
	srv := startTLSServer(t, p)

	adminCert, adminKey := p.AdminPEM()
	admin, err := tls.X509KeyPair(adminCert, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, nodeKey, err := p.IssueClientCert("system:node:n1", []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	node, err := tls.X509KeyPair(nodeCert, nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	// A client certificate from an unrelated CA must be refused.
	other := openPKI(t, pki.Options{Dir: t.TempDir()})
	strangerCert, strangerKey := other.AdminPEM()
	stranger, err := tls.X509KeyPair(strangerCert, strangerKey)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		certs   []tls.Certificate
		want    string
		wantErr bool
	}{
		{name: "admin certificate", certs: []tls.Certificate{admin}, want: pki.AdminUser},
		{name: "issued node certificate", certs: []tls.Certificate{node}, want: "system:node:n1"},
		{name: "no certificate", want: "anonymous"},
		{name: "certificate of another CA", certs: []tls.Certificate{stranger}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := get(t, p, srv.URL, tc.certs...)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("request succeeded with body %q, want a TLS error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("server saw %q, want %q", got, tc.want)
			}
		})
	}
}

func TestKubeconfig(t *testing.T) {
	dir := t.TempDir()
	p := openPKI(t, pki.Options{Dir: filepath.Join(dir, "pki")})
	srv := startTLSServer(t, p)

	path := filepath.Join(dir, "sub", "admin.kubeconfig")
	if err := p.WriteAdminKubeconfig(path, srv.URL); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v, want 0600", fi.Mode().Perm())
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != srv.URL {
		t.Errorf("host %q, want %q", cfg.Host, srv.URL)
	}
	if len(cfg.CAData) == 0 || len(cfg.CertData) == 0 || len(cfg.KeyData) == 0 {
		t.Fatal("kubeconfig does not embed the CA, client certificate and key")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: mustTLSConfig(t, cfg.CAData, cfg.CertData, cfg.KeyData)}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != pki.AdminUser {
		t.Errorf("server saw %q, want %q", body, pki.AdminUser)
	}
}

func mustTLSConfig(t testing.TB, caPEM, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in kubeconfig")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}
}

func TestServerURL(t *testing.T) {
	tests := []struct {
		addr    string
		want    string
		wantErr bool
	}{
		{addr: "127.0.0.1:6443", want: "https://127.0.0.1:6443"},
		{addr: "0.0.0.0:6443", want: "https://127.0.0.1:6443"},
		{addr: ":6443", want: "https://127.0.0.1:6443"},
		{addr: "[::]:6443", want: "https://[::1]:6443"},
		{addr: "[::1]:443", want: "https://[::1]:443"},
		{addr: "tugboat.example.com:6443", want: "https://tugboat.example.com:6443"},
		{addr: "no-port", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			got, err := pki.ServerURL(tc.addr)
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("ServerURL(%q) = %q, %v; want ErrInvalid", tc.addr, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ServerURL(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
			}
		})
	}
}

func TestIssueClientCertRejectsEmptyName(t *testing.T) {
	p := openPKI(t, pki.Options{Dir: t.TempDir()})
	if _, _, err := p.IssueClientCert("", nil); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("IssueClientCert(\"\") error = %v, want ErrInvalid", err)
	}
}
