package network

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// The default Service that leads to the API server, as kube-apiserver
// keeps it.
const (
	KubernetesServiceName      = "kubernetes"
	KubernetesServiceNamespace = metav1.NamespaceDefault
	KubernetesServicePort      = 443
)

// KubernetesServiceConfig configures RunKubernetesService.
type KubernetesServiceConfig struct {
	// Client talks to the API server; required.
	Client kubernetes.Interface
	// ServiceCIDR is the Service range; the Service gets its first
	// address. The zero Prefix means DefaultServiceCIDR.
	ServiceCIDR netip.Prefix
	// Endpoint is where the API server listens for the cluster (its
	// advertised address and port); required.
	Endpoint netip.AddrPort
	// Interval is how often the objects are checked and repaired after
	// the first success; 0 means 10s (kube-apiserver's endpoint interval).
	Interval time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// KubernetesServiceIP is the cluster IP of the kubernetes Service: the
// first address of the service CIDR.
func KubernetesServiceIP(serviceCIDR netip.Prefix) netip.Addr {
	return serviceCIDR.Masked().Addr().Next()
}

// RunKubernetesService keeps the default/kubernetes Service (cluster IP
// KubernetesServiceIP, port 443 "https" to the API server's port), its
// Endpoints (labelled endpointslice.kubernetes.io/skip-mirror, as
// kube-apiserver writes them) and its EndpointSlice pointing at
// cfg.Endpoint: at once (retrying until it succeeds), then every
// Interval. It returns nil when ctx ends; errors wrap errdefs.ErrInvalid
// for a bad config.
func RunKubernetesService(ctx context.Context, cfg KubernetesServiceConfig) error {
	if cfg.Client == nil || !cfg.Endpoint.IsValid() {
		return fmt.Errorf("kubernetes service: need a client and an endpoint: %w", errdefs.ErrInvalid)
	}
	if !cfg.ServiceCIDR.IsValid() {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "kubernetes-service")
	retry := 100 * time.Millisecond
	failing := false
	for {
		wait := cfg.Interval
		if err := EnsureKubernetesService(ctx, cfg.Client, cfg.ServiceCIDR, cfg.Endpoint); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				log.Warn("kubernetes service: reconcile; retrying", "err", err)
			}
			failing = true
			wait, retry = retry, min(2*retry, cfg.Interval)
		} else {
			if failing {
				log.Info("kubernetes service reconciled")
			}
			failing, retry = false, 100*time.Millisecond
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// EnsureKubernetesService writes the kubernetes Service, Endpoints and
// EndpointSlice once, changing only what differs. A Service that holds
// another cluster IP keeps it (cluster IPs are immutable) and is an
// error wrapping errdefs.ErrConflict after its other fields are fixed.
func EnsureKubernetesService(ctx context.Context, cs kubernetes.Interface, serviceCIDR netip.Prefix, endpoint netip.AddrPort) error {
	ip := KubernetesServiceIP(serviceCIDR)
	port := int32(endpoint.Port())
	wantSpec := corev1.ServiceSpec{
		Type:            corev1.ServiceTypeClusterIP,
		ClusterIP:       ip.String(),
		Ports:           []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: KubernetesServicePort, TargetPort: intstr.FromInt32(port)}},
		SessionAffinity: corev1.ServiceAffinityNone,
	}
	labels := map[string]string{"component": "apiserver", "provider": "kubernetes"}
	svcs := cs.CoreV1().Services(KubernetesServiceNamespace)
	svc, err := svcs.Get(ctx, KubernetesServiceName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		svc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: KubernetesServiceName, Labels: labels}, Spec: wantSpec}
		if _, err := svcs.Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create service %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
		}
	case err != nil:
		return fmt.Errorf("get service %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
	default:
		if svc.Spec.Type != wantSpec.Type || !equality.Semantic.DeepEqual(svc.Spec.Ports, wantSpec.Ports) ||
			len(svc.Spec.Selector) > 0 || !hasLabels(svc.Labels, labels) {
			svc = svc.DeepCopy()
			svc.Spec.Type, svc.Spec.Ports, svc.Spec.Selector = wantSpec.Type, wantSpec.Ports, nil
			svc.Labels = mergeLabels(svc.Labels, labels)
			if _, err := svcs.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update service %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
			}
		}
	}
	if err := ensureKubernetesEndpoints(ctx, cs, endpoint); err != nil {
		return err
	}
	if err := ensureKubernetesSlice(ctx, cs, endpoint); err != nil {
		return err
	}
	if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != wantSpec.ClusterIP {
		return fmt.Errorf("service %s/%s has cluster IP %s, want %s (the first address of %s); delete it to fix: %w",
			KubernetesServiceNamespace, KubernetesServiceName, svc.Spec.ClusterIP, wantSpec.ClusterIP, serviceCIDR, errdefs.ErrConflict)
	}
	return nil
}

func ensureKubernetesEndpoints(ctx context.Context, cs kubernetes.Interface, endpoint netip.AddrPort) error {
	want := []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: endpoint.Addr().String()}},
		Ports:     []corev1.EndpointPort{{Name: "https", Port: int32(endpoint.Port()), Protocol: corev1.ProtocolTCP}},
	}}
	labels := map[string]string{discoveryv1.LabelSkipMirror: "true"}
	client := cs.CoreV1().Endpoints(KubernetesServiceNamespace)
	ep, err := client.Get(ctx, KubernetesServiceName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		ep = &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: KubernetesServiceName, Labels: labels}, Subsets: want}
		if _, err := client.Create(ctx, ep, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create endpoints %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("get endpoints %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
	}
	if equality.Semantic.DeepEqual(ep.Subsets, want) && hasLabels(ep.Labels, labels) {
		return nil
	}
	ep = ep.DeepCopy()
	ep.Subsets, ep.Labels = want, mergeLabels(ep.Labels, labels)
	if _, err := client.Update(ctx, ep, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update endpoints %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
	}
	return nil
}

func ensureKubernetesSlice(ctx context.Context, cs kubernetes.Interface, endpoint netip.AddrPort) error {
	addrType := discoveryv1.AddressTypeIPv4
	if endpoint.Addr().Is6() && !endpoint.Addr().Is4In6() {
		addrType = discoveryv1.AddressTypeIPv6
	}
	ready := true
	name, proto, port := "https", corev1.ProtocolTCP, int32(endpoint.Port())
	want := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: KubernetesServiceName, Labels: map[string]string{discoveryv1.LabelServiceName: KubernetesServiceName}},
		AddressType: addrType,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{endpoint.Addr().Unmap().String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &port}},
	}
	client := cs.DiscoveryV1().EndpointSlices(KubernetesServiceNamespace)
	sl, err := client.Get(ctx, KubernetesServiceName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := client.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create endpointslice %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("get endpointslice %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
	}
	if sl.AddressType == want.AddressType && equality.Semantic.DeepEqual(sl.Endpoints, want.Endpoints) &&
		equality.Semantic.DeepEqual(sl.Ports, want.Ports) && hasLabels(sl.Labels, want.Labels) {
		return nil
	}
	if sl.AddressType != want.AddressType { // immutable: replace the slice
		if err := client.Delete(ctx, KubernetesServiceName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete endpointslice %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
		}
		if _, err := client.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create endpointslice %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
		}
		return nil
	}
	sl = sl.DeepCopy()
	sl.Endpoints, sl.Ports, sl.Labels = want.Endpoints, want.Ports, mergeLabels(sl.Labels, want.Labels)
	if _, err := client.Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update endpointslice %s/%s: %w", KubernetesServiceNamespace, KubernetesServiceName, err)
	}
	return nil
}

// hasLabels reports whether have holds every label of want.
func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// mergeLabels returns have with want's labels set (a new map).
func mergeLabels(have, want map[string]string) map[string]string {
	out := make(map[string]string, len(have)+len(want))
	for k, v := range have {
		out[k] = v
	}
	for k, v := range want {
		out[k] = v
	}
	return out
}
