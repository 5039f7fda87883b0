package network_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/network"
)

// kubernetesObjects reads the kubernetes Service, Endpoints and
// EndpointSlice.
func kubernetesObjects(t testing.TB, cs kubernetes.Interface) (*corev1.Service, *corev1.Endpoints, *discoveryv1.EndpointSlice) {
	t.Helper()
	ctx := ctxT(t)
	svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get service: %v", err)
	}
	ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get endpoints: %v", err)
	}
	sl, err := cs.DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get endpointslice: %v", err)
	}
	return svc, ep, sl
}

// checkKubernetesObjects fails t unless the objects lead to endpoint.
func checkKubernetesObjects(t testing.TB, cs kubernetes.Interface, endpoint netip.AddrPort) {
	t.Helper()
	svc, ep, sl := kubernetesObjects(t, cs)
	if svc.Spec.ClusterIP != "10.96.0.1" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 ||
		svc.Spec.Ports[0].Name != "https" || svc.Spec.Ports[0].TargetPort.IntValue() != int(endpoint.Port()) || len(svc.Spec.Selector) != 0 {
		t.Errorf("service spec %+v, want cluster IP 10.96.0.1, port https 443 -> %d, no selector", svc.Spec, endpoint.Port())
	}
	if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Subsets[0].Addresses[0].IP != endpoint.Addr().String() ||
		len(ep.Subsets[0].Ports) != 1 || ep.Subsets[0].Ports[0].Port != int32(endpoint.Port()) {
		t.Errorf("endpoints subsets %+v, want %s", ep.Subsets, endpoint)
	}
	if ep.Labels[discoveryv1.LabelSkipMirror] != "true" {
		t.Errorf("endpoints labels %v, want %s=true", ep.Labels, discoveryv1.LabelSkipMirror)
	}
	if sl.Labels[discoveryv1.LabelServiceName] != "kubernetes" || len(sl.Endpoints) != 1 ||
		sl.Endpoints[0].Addresses[0] != endpoint.Addr().String() || len(sl.Ports) != 1 || *sl.Ports[0].Port != int32(endpoint.Port()) {
		t.Errorf("endpointslice %+v, want %s labelled with the service name", sl, endpoint)
	}
}

func TestEnsureKubernetesService(t *testing.T) {
	cs := newClient(t)
	ctx := ctxT(t)
	cidr := network.DefaultServiceCIDR
	first := netip.MustParseAddrPort("192.0.2.10:6443")
	if err := network.EnsureKubernetesService(ctx, cs, cidr, first); err != nil {
		t.Fatalf("first ensure: %v", err)
	}
	checkKubernetesObjects(t, cs, first)

	t.Run("unchanged objects are not written", func(t *testing.T) {
		svc, ep, sl := kubernetesObjects(t, cs)
		if err := network.EnsureKubernetesService(ctx, cs, cidr, first); err != nil {
			t.Fatalf("ensure: %v", err)
		}
		svc2, ep2, sl2 := kubernetesObjects(t, cs)
		if svc.ResourceVersion != svc2.ResourceVersion || ep.ResourceVersion != ep2.ResourceVersion || sl.ResourceVersion != sl2.ResourceVersion {
			t.Errorf("resource versions changed: %s/%s/%s -> %s/%s/%s", svc.ResourceVersion, ep.ResourceVersion, sl.ResourceVersion,
				svc2.ResourceVersion, ep2.ResourceVersion, sl2.ResourceVersion)
		}
	})
	t.Run("a new address updates endpoints and slice", func(t *testing.T) {
		moved := netip.MustParseAddrPort("192.0.2.11:7443")
		if err := network.EnsureKubernetesService(ctx, cs, cidr, moved); err != nil {
			t.Fatalf("ensure: %v", err)
		}
		checkKubernetesObjects(t, cs, moved)
	})
	t.Run("a changed service is repaired", func(t *testing.T) {
		svc, _, _ := kubernetesObjects(t, cs)
		svc.Spec.Ports[0].Port = 8443
		svc.Spec.Selector = map[string]string{"app": "x"}
		if _, err := cs.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update service: %v", err)
		}
		if err := cs.DiscoveryV1().EndpointSlices("default").Delete(ctx, "kubernetes", metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete slice: %v", err)
		}
		if err := network.EnsureKubernetesService(ctx, cs, cidr, first); err != nil {
			t.Fatalf("ensure: %v", err)
		}
		checkKubernetesObjects(t, cs, first)
	})
	t.Run("another cluster IP is a conflict", func(t *testing.T) {
		if err := cs.CoreV1().Services("default").Delete(ctx, "kubernetes", metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete service: %v", err)
		}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.5", Ports: []corev1.ServicePort{{Port: 1}}}}
		if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create service: %v", err)
		}
		err := network.EnsureKubernetesService(ctx, cs, cidr, first)
		if !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("ensure = %v, want ErrConflict", err)
		}
		got, _, _ := kubernetesObjects(t, cs)
		if got.Spec.Ports[0].Port != 443 {
			t.Errorf("ports %+v not repaired alongside the conflict", got.Spec.Ports)
		}
	})
}

func TestRunKubernetesService(t *testing.T) {
	cs := newClient(t)
	endpoint := netip.MustParseAddrPort("127.0.0.1:6443")
	if err := network.RunKubernetesService(context.Background(), network.KubernetesServiceConfig{Client: cs}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("run without an endpoint = %v, want ErrInvalid", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- network.RunKubernetesService(ctx, network.KubernetesServiceConfig{Client: cs, Endpoint: endpoint,
			Interval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	}()
	// Deleted objects come back at the next interval.
	wait := ctxT(t)
	for _, del := range []func() error{
		func() error { return nil },
		func() error {
			return cs.CoreV1().Endpoints("default").Delete(wait, "kubernetes", metav1.DeleteOptions{})
		},
	} {
		if err := del(); err != nil {
			t.Fatalf("delete: %v", err)
		}
		for {
			_, err := cs.CoreV1().Endpoints("default").Get(wait, "kubernetes", metav1.GetOptions{})
			if err == nil {
				break
			}
			if wait.Err() != nil {
				t.Fatalf("endpoints never (re)appeared: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	checkKubernetesObjects(t, cs, endpoint)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run = %v after cancel, want nil", err)
	}
}
