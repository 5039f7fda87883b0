// Package pki creates and keeps the certificates of a Tugboat control plane:
// a self-signed certificate authority, the API server's serving certificate
// and the admin client certificate, stored as PEM files in one directory
// (<data-dir>/pki) and reused across restarts.
//
// Open generates only what is missing or expired (or, for the serving
// certificate, no longer covers the configured names); anything present but
// unparsable is an error naming the file, never silently replaced. Private
// keys are ECDSA P-256, written with mode 0600.
//
// A PKI is safe for concurrent use once opened. Errors wrap the categories of
// kernel/errdefs: ErrInvalid for bad options and corrupt or inconsistent
// files.
package pki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// File names inside the PKI directory; the names follow kubeadm's
// /etc/kubernetes/pki layout.
const (
	CACertFile      = "ca.crt"
	CAKeyFile       = "ca.key"
	ServingCertFile = "apiserver.crt"
	ServingKeyFile  = "apiserver.key"
	AdminCertFile   = "admin.crt"
	AdminKeyFile    = "admin.key"
)

// Identity of the admin client certificate: Kubernetes grants the
// system:masters group every permission.
const (
	AdminUser  = "admin"
	AdminGroup = "system:masters"
)

// Validity periods, as kubeadm chooses them.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
	// RenewBefore: a certificate that expires within this window counts as
	// expired and is regenerated on Open.
	RenewBefore = 7 * 24 * time.Hour
)

// Options configure Open.
type Options struct {
	// Dir holds the PEM files; it is created (mode 0700) if missing.
	// Required.
	Dir string
	// ExtraSANs are added to the serving certificate's subject alternative
	// names: each is an IP address or a DNS name. 127.0.0.1, ::1,
	// localhost, the host name and the in-cluster kubernetes.default names
	// are always present.
	ExtraSANs []string
	// Now returns the current time; nil means time.Now. Tests set it to
	// produce certificates that are already expired.
	Now    func() time.Time
	Logger *slog.Logger
}

// PKI is an opened certificate directory.
type PKI struct {
	dir    string
	now    func() time.Time
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	pool   *x509.CertPool
	serve  tls.Certificate
	admin  pemPair
	logger *slog.Logger
}

// pemPair is a certificate and its key, PEM-encoded.
type pemPair struct {
	cert, key []byte
}

// Open loads the certificates in opts.Dir, generating whichever are missing
// or expired. A new CA invalidates the leaf certificates, which are then
// regenerated too. A CA with only one of its two files present is an error
// (regenerating it would silently invalidate every client certificate issued
// so far); a leaf certificate with a file missing is simply regenerated.
func Open(opts Options) (*PKI, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("open pki: no directory: %w", errdefs.ErrInvalid)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	sans, err := servingSANs(opts.ExtraSANs)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open pki: %w", err)
	}
	p := &PKI{dir: opts.Dir, now: opts.Now, logger: opts.Logger}
	caFresh, err := p.loadOrCreateCA()
	if err != nil {
		return nil, err
	}
	servePair, err := p.loadOrCreateLeaf(leafSpec{
		certFile: ServingCertFile,
		keyFile:  ServingKeyFile,
		cn:       "tugboat-apiserver",
		usage:    x509.ExtKeyUsageServerAuth,
		sans:     sans,
	}, caFresh)
	if err != nil {
		return nil, err
	}
	p.serve, err = tls.X509KeyPair(servePair.cert, servePair.key)
	if err != nil {
		return nil, fmt.Errorf("open pki: serving key pair %s: %v: %w", p.path(ServingCertFile), err, errdefs.ErrInvalid)
	}
	p.admin, err = p.loadOrCreateLeaf(leafSpec{
		certFile: AdminCertFile,
		keyFile:  AdminKeyFile,
		cn:       AdminUser,
		groups:   []string{AdminGroup},
		usage:    x509.ExtKeyUsageClientAuth,
	}, caFresh)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Dir returns the directory the files live in.
func (p *PKI) Dir() string { return p.dir }

// CACert returns the CA certificate.
func (p *PKI) CACert() *x509.Certificate { return p.ca }

// CAPEM returns the CA certificate, PEM-encoded.
func (p *PKI) CAPEM() []byte { return slices.Clone(p.caPEM) }

// CAPool returns a pool holding only the CA certificate.
func (p *PKI) CAPool() *x509.CertPool { return p.pool.Clone() }

// ServingCert returns the API server's serving certificate and key.
func (p *PKI) ServingCert() tls.Certificate { return p.serve }

// AdminPEM returns the admin client certificate and key, PEM-encoded.
func (p *PKI) AdminPEM() (certPEM, keyPEM []byte) {
	return slices.Clone(p.admin.cert), slices.Clone(p.admin.key)
}

// ServerTLSConfig is the TLS configuration for the API server: the serving
// certificate, TLS 1.2 or newer, and client certificates verified against
// the CA when the client offers one (VerifyClientCertIfGiven), so clients
// may authenticate with a bearer token instead, or not at all for the
// public health endpoints.
func (p *PKI) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{p.serve},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    p.pool.Clone(),
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// IssueClientCert signs a new client certificate for user name (the
// subject's common name) in groups (its organizations), valid for
// LeafValidity. Nothing is written to disk. For node and component
// credentials.
func (p *PKI) IssueClientCert(name string, groups []string) (certPEM, keyPEM []byte, err error) {
	if name == "" {
		return nil, nil, fmt.Errorf("issue client certificate: empty user name: %w", errdefs.ErrInvalid)
	}
	pair, err := p.issue(leafSpec{
		cn:     name,
		groups: groups,
		usage:  x509.ExtKeyUsageClientAuth,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("issue client certificate for %q: %w", name, err)
	}
	return pair.cert, pair.key, nil
}

func (p *PKI) path(name string) string { return filepath.Join(p.dir, name) }

// loadOrCreateCA loads the CA, or creates it when both files are missing or
// the certificate has expired. It reports whether the CA is new.
func (p *PKI) loadOrCreateCA() (fresh bool, err error) {
	certPath, keyPath := p.path(CACertFile), p.path(CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		return true, p.createCA("missing")
	case errors.Is(certErr, os.ErrNotExist):
		return false, fmt.Errorf("open pki: %s is missing but %s exists; restore it, or remove both to create a new CA (existing client certificates stop working): %w", certPath, keyPath, errdefs.ErrInvalid)
	case errors.Is(keyErr, os.ErrNotExist):
		return false, fmt.Errorf("open pki: %s is missing but %s exists; restore it, or remove both to create a new CA (existing client certificates stop working): %w", keyPath, certPath, errdefs.ErrInvalid)
	case certErr != nil:
		return false, fmt.Errorf("open pki: %w", certErr)
	case keyErr != nil:
		return false, fmt.Errorf("open pki: %w", keyErr)
	}
	cert, err := parseCert(certPath, certPEM)
	if err != nil {
		return false, err
	}
	key, err := parseKey(keyPath, keyPEM)
	if err != nil {
		return false, err
	}
	if !cert.IsCA {
		return false, fmt.Errorf("open pki: %s is not a CA certificate: %w", certPath, errdefs.ErrInvalid)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return false, fmt.Errorf("open pki: %s does not match the certificate %s: %w", keyPath, certPath, errdefs.ErrInvalid)
	}
	if p.expiring(cert) {
		return true, p.createCA("expired")
	}
	p.setCA(cert, key, certPEM)
	return false, nil
}

func (p *PKI) createCA(reason string) error {
	pair, cert, key, err := newCA(p.now())
	if err != nil {
		return fmt.Errorf("open pki: create CA: %w", err)
	}
	if err := writePair(p.path(CACertFile), p.path(CAKeyFile), pair); err != nil {
		return fmt.Errorf("open pki: %w", err)
	}
	p.logger.Info("created certificate authority", "reason", reason, "cert", p.path(CACertFile), "not_after", cert.NotAfter)
	p.setCA(cert, key, pair.cert)
	return nil
}

func (p *PKI) setCA(cert *x509.Certificate, key *ecdsa.PrivateKey, certPEM []byte) {
	p.ca, p.caKey, p.caPEM = cert, key, certPEM
	p.pool = x509.NewCertPool()
	p.pool.AddCert(cert)
}

// expiring reports whether cert is not yet valid or expires within
// RenewBefore.
func (p *PKI) expiring(cert *x509.Certificate) bool {
	now := p.now()
	return now.Before(cert.NotBefore) || now.Add(RenewBefore).After(cert.NotAfter)
}

// loadOrCreateLeaf loads a leaf key pair, or issues a new one when a file is
// missing, the certificate expires soon, was not signed by the current CA,
// or (for the serving certificate) does not cover every wanted name.
func (p *PKI) loadOrCreateLeaf(spec leafSpec, caFresh bool) (pemPair, error) {
	spec.certFile, spec.keyFile = p.path(spec.certFile), p.path(spec.keyFile)
	reason, pair, err := p.checkLeaf(spec, caFresh)
	if err != nil {
		return pemPair{}, err
	}
	if reason == "" {
		return pair, nil
	}
	pair, err = p.issue(spec)
	if err != nil {
		return pemPair{}, fmt.Errorf("open pki: issue %s: %w", spec.certFile, err)
	}
	if err := writePair(spec.certFile, spec.keyFile, pair); err != nil {
		return pemPair{}, fmt.Errorf("open pki: %w", err)
	}
	p.logger.Info("issued certificate", "reason", reason, "cert", spec.certFile, "cn", spec.cn)
	return pair, nil
}

// checkLeaf returns why the leaf must be (re)issued, or "" and the loaded
// pair when it can be reused. Unparsable files are errors.
func (p *PKI) checkLeaf(spec leafSpec, caFresh bool) (reason string, pair pemPair, err error) {
	certPEM, certErr := os.ReadFile(spec.certFile)
	keyPEM, keyErr := os.ReadFile(spec.keyFile)
	switch {
	case errors.Is(certErr, os.ErrNotExist) || errors.Is(keyErr, os.ErrNotExist):
		return "missing", pemPair{}, nil
	case certErr != nil:
		return "", pemPair{}, fmt.Errorf("open pki: %w", certErr)
	case keyErr != nil:
		return "", pemPair{}, fmt.Errorf("open pki: %w", keyErr)
	}
	cert, err := parseCert(spec.certFile, certPEM)
	if err != nil {
		return "", pemPair{}, err
	}
	key, err := parseKey(spec.keyFile, keyPEM)
	if err != nil {
		return "", pemPair{}, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return "", pemPair{}, fmt.Errorf("open pki: %s does not match the certificate %s: %w", spec.keyFile, spec.certFile, errdefs.ErrInvalid)
	}
	switch {
	case caFresh:
		return "new CA", pemPair{}, nil
	case cert.CheckSignatureFrom(p.ca) != nil:
		return "not signed by the current CA", pemPair{}, nil
	case p.expiring(cert):
		return "expired", pemPair{}, nil
	case !coversSANs(cert, spec.sans):
		return "subject alternative names changed", pemPair{}, nil
	}
	return "", pemPair{cert: certPEM, key: keyPEM}, nil
}

// coversSANs reports whether cert names every wanted DNS name and IP.
func coversSANs(cert *x509.Certificate, want []string) bool {
	for _, san := range want {
		if ip := net.ParseIP(san); ip != nil {
			if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(cert.DNSNames, san) {
			return false
		}
	}
	return true
}

// servingSANs returns the serving certificate's names: the defaults plus
// the validated extras, without duplicates.
func servingSANs(extra []string) ([]string, error) {
	sans := []string{
		"127.0.0.1", "::1", "localhost",
		"kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local",
	}
	if host, err := os.Hostname(); err == nil && host != "" && len(validation.IsDNS1123Subdomain(strings.ToLower(host))) == 0 {
		sans = append(sans, strings.ToLower(host))
	}
	for _, san := range extra {
		if err := ValidateSAN(san); err != nil {
			return nil, fmt.Errorf("open pki: %w", err)
		}
		if ip := net.ParseIP(san); ip != nil {
			san = ip.String()
		}
		if !slices.Contains(sans, san) {
			sans = append(sans, san)
		}
	}
	return sans, nil
}

// ValidateSAN checks that san is an IP address or a DNS name (lower-case
// RFC 1123 subdomain, optionally with a leading "*." wildcard). The error
// wraps errdefs.ErrInvalid.
func ValidateSAN(san string) error {
	if net.ParseIP(san) != nil {
		return nil
	}
	name := strings.TrimPrefix(san, "*.")
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("subject alternative name %q is neither an IP address nor a DNS name: %s: %w", san, strings.Join(errs, "; "), errdefs.ErrInvalid)
	}
	return nil
}
