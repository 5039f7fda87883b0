package e2e

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/internal/testenv"
)

// networkArgs are the server's address ranges in the network tests.
var networkArgs = []string{"--service-cidr", "10.100.0.0/24", "--service-node-port-range", "31000-31009",
	"--cluster-cidr", "10.245.0.0/16", "--node-cidr-mask-size", "26"}

// TestNetworkAllocation checks, through the real binary, that Services get
// addresses from the configured ranges, that kubectl sees kube-apiserver's
// errors for taken or out-of-range ones, that Nodes get pod CIDRs, and
// that all of it survives a restart.
func TestNetworkAllocation(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	args := append([]string{"--data-dir", dataDir}, networkArgs...)
	s := testenv.StartServer(t, args...)
	cs := clientset(t, s)
	k := newKubectl(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	svcCIDR := netip.MustParsePrefix("10.100.0.0/24")

	np, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "np"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "np"},
			Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create np: %v", err)
	}
	ip := netip.MustParseAddr(np.Spec.ClusterIP)
	if port := np.Spec.Ports[0].NodePort; !svcCIDR.Contains(ip) || port < 31000 || port > 31009 {
		t.Fatalf("np got %s:%d, want an address of %s and a port of 31000-31009", ip, port, svcCIDR)
	}
	k.run(t, "create", "service", "clusterip", "dns", "--tcp=53", "--clusterip=10.100.0.10")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"taken IP", []string{"create", "service", "clusterip", "dup", "--tcp=80", "--clusterip=10.100.0.10"},
			"failed to allocate IP 10.100.0.10: provided IP is already allocated"},
		{"IP out of range", []string{"create", "service", "clusterip", "far", "--tcp=80", "--clusterip=10.96.0.10"},
			"The range of valid IPs is 10.100.0.0/24"},
		{"node port out of range", []string{"create", "service", "nodeport", "far", "--tcp=80", "--node-port=30080"},
			"The range of valid ports is 31000-31009"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := k.try(t, tt.args...)
			if res.code == 0 || !strings.Contains(res.stderr, tt.want) || !strings.Contains(res.stderr, "Invalid") {
				t.Fatalf("kubectl %v: exit %d, stderr %q; want a failure naming %q", tt.args, res.code, res.stderr, tt.want)
			}
		})
	}

	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "net-node"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node: %v", err)
	}
	cidr := waitPodCIDR(t, ctx, cs, "net-node")
	if p := netip.MustParsePrefix(cidr); p.Bits() != 26 || !netip.MustParsePrefix("10.245.0.0/16").Contains(p.Addr()) {
		t.Fatalf("node got pod CIDR %s, want a /26 of 10.245.0.0/16", cidr)
	}

	s.Stop(t)
	s = testenv.StartServer(t, args...)
	cs = clientset(t, s)
	_, err = cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "again"},
		Spec: corev1.ServiceSpec{ClusterIP: np.Spec.ClusterIP, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "provided IP is already allocated") {
		t.Fatalf("create with np's IP after a restart: %v, want 422 already allocated", err)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "net-node-2"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node: %v", err)
	}
	if got := waitPodCIDR(t, ctx, cs, "net-node-2"); got == cidr {
		t.Fatalf("second node got %s, the first node's pod CIDR", got)
	}
}

func waitPodCIDR(t testing.TB, ctx context.Context, cs kubernetes.Interface, name string) string {
	t.Helper()
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get node %s: %v", name, err)
		}
		if n.Spec.PodCIDR != "" {
			return n.Spec.PodCIDR
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node %s got no pod CIDR", name)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
