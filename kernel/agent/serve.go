package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// APIServerClientName is the common name of the client certificate the
// API server presents to remote agents (for logs and exec).
const APIServerClientName = "system:tugboat-apiserver"

// ServeTLS serves the agent's Handler on ln until ctx is done. The
// serving certificate is self-signed (the API server does not verify
// agents' serving certificates, as kube-apiserver by default does not
// verify kubelets'); clients must present a certificate signed by the
// cluster CA (caPEM) with common name APIServerClientName.
func (a *Agent) ServeTLS(ctx context.Context, ln net.Listener, caPEM []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("agent: no CA certificate")
	}
	cert, err := selfSigned(a.cfg.NodeName, a.cfg.Addresses)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
				for _, ch := range chains {
					if len(ch) > 0 && ch[0].Subject.CommonName == APIServerClientName {
						return nil
					}
				}
				return errors.New("agent: client is not the API server")
			},
		},
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			srv.Shutdown(sctx)
			cancel()
		case <-done:
		}
	}()
	err = srv.Serve(tls.NewListener(ln, srv.TLSConfig))
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// selfSigned makes a serving certificate for the node's names and
// addresses.
func selfSigned(name string, addrs []corev1.NodeAddress) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{name},
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a.Address); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if !slices.Contains(tmpl.DNSNames, a.Address) {
			tmpl.DNSNames = append(tmpl.DNSNames, a.Address)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("agent: serving certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// NodeURL is the base URL of a node's kubelet API, from its InternalIP
// (else any address) and daemon endpoint port.
func NodeURL(n *corev1.Node) (string, error) {
	port := n.Status.DaemonEndpoints.KubeletEndpoint.Port
	if port == 0 {
		return "", fmt.Errorf("node %s reports no agent port", n.Name)
	}
	var host string
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range n.Status.Addresses {
			if a.Type == t && host == "" {
				host = a.Address
			}
		}
	}
	if host == "" {
		return "", fmt.Errorf("node %s reports no address", n.Name)
	}
	return "https://" + net.JoinHostPort(host, fmt.Sprint(port)), nil
}
