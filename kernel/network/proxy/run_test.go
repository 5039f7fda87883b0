package proxy_test

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/network/nettest"
	"github.com/tugboat-dev/tugboat/kernel/network/proxy"
)

func newClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	_, cfg := apiservertest.Start(t, apiserver.Config{Logger: slog.New(slog.DiscardHandler)})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return cs
}

// eventually polls cond every 10ms until it holds or 30s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunFollowsTheCluster drives a userspace proxy from a real API
// server: the service appears, loses its only ready endpoint, and goes.
func TestRunFollowsTheCluster(t *testing.T) {
	cs := newClient(t)
	backend := nettest.Serve(t, "", netip.AddrPortFrom(loopback, 0), "backend")
	u := proxy.NewUserspace(proxy.UserspaceConfig{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { u.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- proxy.Run(ctx, proxy.RunConfig{Client: cs, MinInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}, u)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	svc := loopService(false, 0, corev1.ProtocolTCP)
	svc.Spec.Type, svc.Spec.ClusterIP = corev1.ServiceTypeClusterIP, ""
	bg := context.Background()
	if _, err := cs.CoreV1().Services("default").Create(bg, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice := loopSlice("web", "http", backend.Port(), true, corev1.ProtocolTCP)
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(bg, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "service proxied", func() bool {
		to, ok := u.Addr("default", "web", "http")
		if !ok {
			return false
		}
		line, err := nettest.Dial("", to)
		return err == nil && line == "backend"
	})
	slice.Endpoints[0].Conditions.Ready = new(bool)
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Update(bg, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "not-ready endpoint dropped", func() bool {
		to, ok := u.Addr("default", "web", "http")
		_, err := nettest.Dial("", to)
		return ok && err != nil
	})
	if err := cs.CoreV1().Services("default").Delete(bg, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "service removed", func() bool {
		_, ok := u.Addr("default", "web", "http")
		return !ok
	})
}
