package pki

import (
	"fmt"
	"net"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// ClusterName names the cluster, user and context entries of a kubeconfig
// written by this package.
const ClusterName = "tugboat"

// ServerURL returns the https URL clients use for a server listening on
// addr (host:port). An unspecified host (empty, 0.0.0.0 or ::) becomes the
// loopback address of the same family, which the serving certificate always
// names.
func ServerURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("server url for %q: %v: %w", addr, err, errdefs.ErrInvalid)
	}
	switch ip := net.ParseIP(host); {
	case host == "":
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

// WriteKubeconfig writes a kubeconfig (mode 0600) with one cluster, one
// user and one current context, all named ClusterName, embedding the CA
// certificate and the client certificate and key.
func WriteKubeconfig(path, server string, caPEM, certPEM, keyPEM []byte) error {
	cfg := clientcmdapi.NewConfig()
	cluster := clientcmdapi.NewCluster()
	cluster.Server = server
	cluster.CertificateAuthorityData = caPEM
	cfg.Clusters[ClusterName] = cluster
	user := clientcmdapi.NewAuthInfo()
	user.ClientCertificateData = certPEM
	user.ClientKeyData = keyPEM
	cfg.AuthInfos[ClusterName] = user
	kctx := clientcmdapi.NewContext()
	kctx.Cluster = ClusterName
	kctx.AuthInfo = ClusterName
	cfg.Contexts[ClusterName] = kctx
	cfg.CurrentContext = ClusterName
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	// WriteToFile sets 0600 only when it creates the file.
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// WriteAdminKubeconfig writes a kubeconfig for the admin client certificate
// pointing at server (see ServerURL).
func (p *PKI) WriteAdminKubeconfig(path, server string) error {
	return WriteKubeconfig(path, server, p.caPEM, p.admin.cert, p.admin.key)
}
