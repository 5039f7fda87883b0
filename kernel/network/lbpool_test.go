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

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/network"
)

func runLB(t testing.TB, cs kubernetes.Interface, pool ...string) {
	t.Helper()
	var prefixes []netip.Prefix
	for _, p := range pool {
		prefixes = append(prefixes, netip.MustParsePrefix(p))
	}
	a, err := network.NewLoadBalancerAllocator(network.LoadBalancerConfig{Client: cs, Pool: prefixes, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("new allocator: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

func createLB(t testing.TB, cs kubernetes.Interface, name, want string) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, LoadBalancerIP: want, Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := cs.CoreV1().Services("default").Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

// waitLB waits until service name's ingress satisfies ok and returns it.
func waitLB(t testing.TB, cs kubernetes.Interface, name string, ok func(ip string) bool) string {
	t.Helper()
	ctx := ctxT(t)
	for {
		svc, err := cs.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		ip := ""
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) == 1 {
			ip = ing[0].IP
		}
		if ok(ip) {
			return ip
		}
		select {
		case <-ctx.Done():
			t.Fatalf("service %s: ingress %q never as wanted", name, ip)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func some(ip string) bool { return ip != "" }

// TestLoadBalancerAllocator uses a pool of two addresses (a /30 without
// its network and broadcast addresses).
func TestLoadBalancerAllocator(t *testing.T) {
	cs := newClient(t)
	createLB(t, cs, "fixed", "192.0.2.2")
	runLB(t, cs, "192.0.2.0/30")
	if got := waitLB(t, cs, "fixed", some); got != "192.0.2.2" {
		t.Fatalf("fixed got %s, want its spec.loadBalancerIP 192.0.2.2", got)
	}
	createLB(t, cs, "a", "")
	if got := waitLB(t, cs, "a", some); got != "192.0.2.1" {
		t.Fatalf("a got %s, want the only free 192.0.2.1", got)
	}
	// The pool is empty: b waits until fixed stops being a load balancer.
	createLB(t, cs, "b", "")
	ctx := ctxT(t)
	svc, err := cs.CoreV1().Services("default").Get(ctx, "fixed", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.Type, svc.Spec.LoadBalancerIP, svc.Spec.ExternalTrafficPolicy = corev1.ServiceTypeClusterIP, "", ""
	svc.Spec.Ports[0].NodePort = 0
	if _, err := cs.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("make fixed a ClusterIP service: %v", err)
	}
	waitLB(t, cs, "fixed", func(ip string) bool { return ip == "" })
	if got := waitLB(t, cs, "b", some); got != "192.0.2.2" {
		t.Fatalf("b got %s, want fixed's freed 192.0.2.2", got)
	}
	// Deleting a frees its address for c.
	createLB(t, cs, "c", "")
	if err := cs.CoreV1().Services("default").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := waitLB(t, cs, "c", some); got != "192.0.2.1" {
		t.Fatalf("c got %s, want a's freed 192.0.2.1", got)
	}
}

func TestLoadBalancerConfigValidated(t *testing.T) {
	cs := newClient(t)
	for _, pool := range []string{"fd00::/120", "10.0.0.1/24", "10.0.0.0/8"} {
		t.Run(pool, func(t *testing.T) {
			_, err := network.NewLoadBalancerAllocator(network.LoadBalancerConfig{Client: cs, Pool: []netip.Prefix{netip.MustParsePrefix(pool)}})
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}
