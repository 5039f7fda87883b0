package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// PEM block types written by this package.
const (
	certBlock = "CERTIFICATE"
	keyBlock  = "EC PRIVATE KEY"
)

// backdate moves NotBefore into the past to tolerate clock skew between
// machines, as Kubernetes' certificate helpers do.
const backdate = 5 * time.Minute

// leafSpec describes a certificate signed by the CA.
type leafSpec struct {
	certFile, keyFile string // paths; empty for certificates not stored
	cn                string
	groups            []string
	usage             x509.ExtKeyUsage
	sans              []string // IPs and DNS names (serving certificates)
}

// newCA creates a self-signed CA certificate and key valid from now.
func newCA(now time.Time) (pemPair, *x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pemPair{}, nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return pemPair{}, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "tugboat-ca"},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return pemPair{}, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return pemPair{}, nil, nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return pemPair{}, nil, nil, err
	}
	return pemPair{cert: encodeCert(der), key: keyPEM}, cert, key, nil
}

// issue creates a new key and a certificate for it signed by the CA. The
// certificate never outlives the CA.
func (p *PKI) issue(spec leafSpec) (pemPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pemPair{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return pemPair{}, err
	}
	now := p.now()
	notAfter := now.Add(LeafValidity)
	if notAfter.After(p.ca.NotAfter) {
		notAfter = p.ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.cn, Organization: spec.groups},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{spec.usage},
	}
	for _, san := range spec.sans {
		if ip := net.ParseIP(san); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, san)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		return pemPair{}, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return pemPair{}, err
	}
	return pemPair{cert: encodeCert(der), key: keyPEM}, nil
}

// newSerial returns a random 128-bit positive serial number.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: certBlock, Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: keyBlock, Bytes: der}), nil
}

// parseCert decodes the first certificate in a PEM file; path names the
// file in errors.
func parseCert(path string, data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != certBlock {
		return nil, fmt.Errorf("open pki: %s: no PEM %q block (corrupt file? remove it to regenerate): %w", path, certBlock, errdefs.ErrInvalid)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("open pki: %s: %v (corrupt file? remove it to regenerate): %w", path, err, errdefs.ErrInvalid)
	}
	return cert, nil
}

// parseKey decodes an ECDSA private key (SEC 1 or PKCS #8) from a PEM file.
func parseKey(path string, data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("open pki: %s: no PEM block (corrupt file? remove it to regenerate): %w", path, errdefs.ErrInvalid)
	}
	switch block.Type {
	case keyBlock:
		key, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("open pki: %s: %v: %w", path, err, errdefs.ErrInvalid)
		}
		return key, nil
	case "PRIVATE KEY":
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("open pki: %s: %v: %w", path, err, errdefs.ErrInvalid)
		}
		if ec, ok := key.(*ecdsa.PrivateKey); ok {
			return ec, nil
		}
		return nil, fmt.Errorf("open pki: %s: key is %T, want ECDSA: %w", path, key, errdefs.ErrInvalid)
	}
	return nil, fmt.Errorf("open pki: %s: PEM block %q is not a private key: %w", path, block.Type, errdefs.ErrInvalid)
}

// writePair writes the key (mode 0600) and then the certificate (0644),
// each atomically, so a crash leaves either the old or the new file.
func writePair(certPath, keyPath string, pair pemPair) error {
	if err := writeFileAtomic(keyPath, pair.key, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pair.cert, 0o644)
}

// writeFileAtomic writes data to a temporary file in path's directory,
// syncs it and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
