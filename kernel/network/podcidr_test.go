package network_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/network"
)

// newClient starts an API server over a real Badger store and returns an
// in-process client.
func newClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	_, cfg := apiservertest.Start(t, apiserver.Config{Logger: slog.New(slog.DiscardHandler)})
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return cs
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// runAllocator runs an allocator until the returned stop is called.
func runAllocator(t testing.TB, cs kubernetes.Interface, cidr string, mask int) (stop func()) {
	t.Helper()
	a, err := network.NewPodCIDRAllocator(network.PodCIDRConfig{Client: cs, ClusterCIDR: netip.MustParsePrefix(cidr),
		NodeMaskSize: mask, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("new allocator: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("allocator run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func createNode(t testing.TB, cs kubernetes.Interface, name, podCIDR string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR}}
	if podCIDR != "" {
		n.Spec.PodCIDRs = []string{podCIDR}
	}
	if _, err := cs.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
}

// waitCIDR waits until node name has a pod CIDR and returns it.
func waitCIDR(t testing.TB, cs kubernetes.Interface, name string) string {
	t.Helper()
	ctx := ctxT(t)
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get node %s: %v", name, err)
		}
		if n.Spec.PodCIDR != "" {
			if len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != n.Spec.PodCIDR {
				t.Fatalf("node %s: podCIDRs %v disagree with podCIDR %s", name, n.Spec.PodCIDRs, n.Spec.PodCIDR)
			}
			return n.Spec.PodCIDR
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node %s got no pod CIDR", name)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func deleteNode(t testing.TB, cs kubernetes.Interface, name string) {
	t.Helper()
	if err := cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete node %s: %v", name, err)
	}
}

// TestPodCIDRAllocator fills a cluster CIDR of four /24s (one set by
// hand), frees ranges by deleting nodes, and restarts the allocator: a
// waiting node always gets exactly the range that came free.
func TestPodCIDRAllocator(t *testing.T) {
	cs := newClient(t)
	createNode(t, cs, "manual", "10.244.0.0/24")
	stop := runAllocator(t, cs, "10.244.0.0/22", 24)
	cluster := netip.MustParsePrefix("10.244.0.0/22")
	seen := map[string]string{"10.244.0.0/24": "manual"}
	for _, name := range []string{"a", "b", "c"} {
		createNode(t, cs, name, "")
		got := waitCIDR(t, cs, name)
		p, err := netip.ParsePrefix(got)
		if err != nil || p.Bits() != 24 || !cluster.Contains(p.Addr()) {
			t.Fatalf("node %s got %q, want a /24 of %s", name, got, cluster)
		}
		if other, dup := seen[got]; dup {
			t.Fatalf("nodes %s and %s both got %s", other, name, got)
		}
		seen[got] = name
	}
	byNode := map[string]string{}
	for cidr, name := range seen {
		byNode[name] = cidr
	}

	// The range is full: d waits until b's range comes free.
	createNode(t, cs, "d", "")
	deleteNode(t, cs, "b")
	if got := waitCIDR(t, cs, "d"); got != byNode["b"] {
		t.Fatalf("node d got %s, want b's freed %s", got, byNode["b"])
	}

	// A new allocator learns every range from the nodes.
	stop()
	createNode(t, cs, "e", "")
	runAllocator(t, cs, "10.244.0.0/22", 24)
	deleteNode(t, cs, "manual")
	if got := waitCIDR(t, cs, "e"); got != "10.244.0.0/24" {
		t.Fatalf("node e got %s after the restart, want the freed 10.244.0.0/24", got)
	}
}

func TestPodCIDRConfigValidated(t *testing.T) {
	cs := newClient(t)
	tests := []struct {
		name string
		cidr string
		mask int
	}{
		{"IPv6", "fd00::/48", 64},
		{"host bits", "10.244.0.1/16", 24},
		{"mask not longer", "10.244.0.0/16", 16},
		{"mask too long", "10.244.0.0/16", 31},
		{"too many ranges", "10.0.0.0/8", 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := network.NewPodCIDRAllocator(network.PodCIDRConfig{Client: cs, ClusterCIDR: netip.MustParsePrefix(tt.cidr), NodeMaskSize: tt.mask})
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestValidateCIDRs(t *testing.T) {
	tests := []struct {
		cluster, service string
		ok               bool
	}{
		{"10.244.0.0/16", "10.96.0.0/12", true},
		{"10.0.0.0/8", "10.96.0.0/12", false},
		{"10.96.0.0/16", "10.96.0.0/12", false},
		{"10.244.0.1/16", "10.96.0.0/12", false},
		{"fd00::/48", "10.96.0.0/12", false},
	}
	for _, tt := range tests {
		t.Run(tt.cluster+"+"+tt.service, func(t *testing.T) {
			err := network.ValidateCIDRs(netip.MustParsePrefix(tt.cluster), netip.MustParsePrefix(tt.service))
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, errdefs.ErrInvalid)) {
				t.Fatalf("got %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
