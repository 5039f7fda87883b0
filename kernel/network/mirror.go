package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// MirrorManagedBy is the endpointslice.kubernetes.io/managed-by value of
// the EndpointSlices the mirror writes (Kubernetes' own controller name,
// so tools that know it recognise them).
const MirrorManagedBy = "endpointslicemirroring-controller.k8s.io"

// maxMirrored is how many endpoint addresses of one Endpoints object are
// mirrored, as in Kubernetes.
const maxMirrored = 1000

// EndpointsMirror mirrors the Endpoints of Services without a selector
// (hand-written endpoints, the seed's external-service) into
// EndpointSlices, like Kubernetes' endpointslicemirroring controller, so
// the proxy, DNS and every other EndpointSlice reader see them. An
// Endpoints object is mirrored while its Service exists and has no
// selector, and unless it is labelled endpointslice.kubernetes.io/
// skip-mirror=true; its ready addresses become ready endpoints, its
// notReadyAddresses unready ones, one slice per distinct port list and
// address family, owned by the Endpoints, labelled with the service name
// and managed-by MirrorManagedBy. Slices no longer wanted are deleted.
// Run it once per cluster. It is safe for concurrent use; Run may be
// called once.
type EndpointsMirror struct {
	client kubernetes.Interface
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[string]

	services  corelisters.ServiceLister
	endpoints corelisters.EndpointsLister
	slices    discoverylisters.EndpointSliceLister
}

// NewEndpointsMirror returns a mirror; a nil client is an error wrapping
// errdefs.ErrInvalid; a nil logger means slog.Default().
func NewEndpointsMirror(client kubernetes.Interface, logger *slog.Logger) (*EndpointsMirror, error) {
	if client == nil {
		return nil, fmt.Errorf("endpoints mirror: no client: %w", errdefs.ErrInvalid)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &EndpointsMirror{client: client, log: logger.With("component", "endpoints-mirror")}, nil
}

// Run mirrors until ctx ends; it returns nil then, or an error if the
// caches never fill.
func (m *EndpointsMirror) Run(ctx context.Context) error {
	m.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "endpoints-mirror"})
	defer m.queue.ShutDown()
	factory := informers.NewSharedInformerFactory(m.client, 0)
	sliceFactory := informers.NewSharedInformerFactoryWithOptions(m.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelManagedBy + "=" + MirrorManagedBy
		}))
	svcInf, epInf := factory.Core().V1().Services(), factory.Core().V1().Endpoints()
	sliceInf := sliceFactory.Discovery().V1().EndpointSlices()
	m.services, m.endpoints, m.slices = svcInf.Lister(), epInf.Lister(), sliceInf.Lister()
	byKey := cache.ResourceEventHandlerFuncs{
		AddFunc:    m.enqueue,
		UpdateFunc: func(_, obj any) { m.enqueue(obj) },
		DeleteFunc: m.enqueue,
	}
	bySlice := cache.ResourceEventHandlerFuncs{
		AddFunc:    m.enqueueSlice,
		UpdateFunc: func(_, obj any) { m.enqueueSlice(obj) },
		DeleteFunc: m.enqueueSlice,
	}
	var synced []cache.InformerSynced
	for _, x := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{{svcInf.Informer(), byKey}, {epInf.Informer(), byKey}, {sliceInf.Informer(), bySlice}} {
		reg, err := x.inf.AddEventHandler(x.h)
		if err != nil {
			return fmt.Errorf("endpoints mirror: watch: %w", err)
		}
		synced = append(synced, x.inf.HasSynced, reg.HasSynced)
	}
	factory.Start(ctx.Done())
	sliceFactory.Start(ctx.Done())
	defer factory.Shutdown()
	defer sliceFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("endpoints mirror: caches did not sync: %w", errdefs.ErrUnavailable)
	}
	go func() {
		<-ctx.Done()
		m.queue.ShutDown()
	}()
	for m.next(ctx) {
	}
	return nil
}

func (m *EndpointsMirror) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		m.queue.Add(key)
	}
}

// enqueueSlice queues the Service a mirrored slice belongs to (repairing
// slices someone else changed or deleted).
func (m *EndpointsMirror) enqueueSlice(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok && s.Labels[discoveryv1.LabelServiceName] != "" {
		m.queue.Add(s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName])
	}
}

func (m *EndpointsMirror) next(ctx context.Context) bool {
	key, quit := m.queue.Get()
	if quit {
		return false
	}
	defer m.queue.Done(key)
	if err := m.sync(ctx, key); err != nil {
		if ctx.Err() == nil {
			m.log.Warn("mirror endpoints; retrying", "key", key, "err", err)
			m.queue.AddRateLimited(key)
		}
		return true
	}
	m.queue.Forget(key)
	return true
}

// sync makes the mirrored slices of one namespace/name match its
// Endpoints.
func (m *EndpointsMirror) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	var want []*discoveryv1.EndpointSlice
	svc, err := m.services.Services(ns).Get(name)
	if err == nil && len(svc.Spec.Selector) == 0 {
		if ep, err := m.endpoints.Endpoints(ns).Get(name); err == nil && ep.Labels[discoveryv1.LabelSkipMirror] != "true" {
			want = MirrorSlices(ep)
		}
	}
	have, err := m.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: MirrorManagedBy}))
	if err != nil {
		return err
	}
	client := m.client.DiscoveryV1().EndpointSlices(ns)
	for _, w := range want {
		i := slices.IndexFunc(have, func(h *discoveryv1.EndpointSlice) bool { return h.Name == w.Name })
		if i < 0 {
			if _, err := client.Create(ctx, w, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create endpointslice %s/%s: %w", ns, w.Name, err)
			}
			continue
		}
		h := have[i]
		have = slices.Delete(have, i, i+1)
		if sameSlice(h, w) {
			continue
		}
		u := h.DeepCopy()
		u.Labels, u.OwnerReferences, u.Endpoints, u.Ports = w.Labels, w.OwnerReferences, w.Endpoints, w.Ports
		if _, err := client.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update endpointslice %s/%s: %w", ns, w.Name, err)
		}
	}
	for _, h := range have {
		err := client.Delete(ctx, h.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete endpointslice %s/%s: %w", ns, h.Name, err)
		}
	}
	return nil
}

func sameSlice(have, want *discoveryv1.EndpointSlice) bool {
	return have.AddressType == want.AddressType &&
		equality.Semantic.DeepEqual(have.Labels, want.Labels) &&
		equality.Semantic.DeepEqual(have.OwnerReferences, want.OwnerReferences) &&
		equality.Semantic.DeepEqual(have.Endpoints, want.Endpoints) &&
		equality.Semantic.DeepEqual(have.Ports, want.Ports)
}

// MirrorSlices computes the EndpointSlices that mirror ep: one per
// distinct port list and address family (subsets with equal ports are
// merged), at most 1000 addresses in all, named
// <endpoints>-<hash of ports and family> so that they are stable.
func MirrorSlices(ep *corev1.Endpoints) []*discoveryv1.EndpointSlice {
	type group struct {
		ports    []discoveryv1.EndpointPort
		addrType discoveryv1.AddressType
		eps      []discoveryv1.Endpoint
	}
	groups := map[string]*group{}
	var order []string
	total := 0
	for _, ss := range ep.Subsets {
		ports := mirrorPorts(ss.Ports)
		for _, list := range []struct {
			addrs []corev1.EndpointAddress
			ready bool
		}{{ss.Addresses, true}, {ss.NotReadyAddresses, false}} {
			for _, a := range list.addrs {
				ip, err := netip.ParseAddr(a.IP)
				if err != nil || total >= maxMirrored {
					continue
				}
				total++
				t := discoveryv1.AddressTypeIPv4
				if !ip.Unmap().Is4() {
					t = discoveryv1.AddressTypeIPv6
				}
				k := portsKey(ports) + "|" + string(t)
				g, ok := groups[k]
				if !ok {
					g = &group{ports: ports, addrType: t}
					groups[k] = g
					order = append(order, k)
				}
				ready := list.ready
				e := discoveryv1.Endpoint{Addresses: []string{ip.Unmap().String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
				if a.Hostname != "" {
					e.Hostname = ptr(a.Hostname)
				}
				if a.NodeName != nil && *a.NodeName != "" {
					e.NodeName = ptr(*a.NodeName)
				}
				if a.TargetRef != nil {
					e.TargetRef = a.TargetRef.DeepCopy()
				}
				g.eps = append(g.eps, e)
			}
		}
	}
	slices.Sort(order)
	var out []*discoveryv1.EndpointSlice
	owner := metav1.NewControllerRef(ep, corev1.SchemeGroupVersion.WithKind("Endpoints"))
	for _, k := range order {
		g := groups[k]
		slices.SortStableFunc(g.eps, func(a, b discoveryv1.Endpoint) int { return strings.Compare(a.Addresses[0], b.Addresses[0]) })
		lbls := map[string]string{}
		for k, v := range ep.Labels {
			lbls[k] = v
		}
		lbls[discoveryv1.LabelServiceName] = ep.Name
		lbls[discoveryv1.LabelManagedBy] = MirrorManagedBy
		sum := sha256.Sum256([]byte(k))
		out = append(out, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name:            sliceName(ep.Name, hex.EncodeToString(sum[:])[:10]),
				Namespace:       ep.Namespace,
				Labels:          lbls,
				OwnerReferences: []metav1.OwnerReference{*owner},
			},
			AddressType: g.addrType,
			Endpoints:   g.eps,
			Ports:       g.ports,
		})
	}
	return out
}

// sliceName is name-suffix, shortening name so the result is a valid
// object name (at most 253 characters).
func sliceName(name, suffix string) string {
	if room := 253 - len(suffix) - 1; len(name) > room {
		name = strings.TrimRight(name[:room], ".-")
	}
	return name + "-" + suffix
}

func mirrorPorts(in []corev1.EndpointPort) []discoveryv1.EndpointPort {
	out := make([]discoveryv1.EndpointPort, 0, len(in))
	for _, p := range in {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		out = append(out, discoveryv1.EndpointPort{Name: ptr(p.Name), Protocol: &proto, Port: ptr(p.Port), AppProtocol: p.AppProtocol})
	}
	slices.SortFunc(out, func(a, b discoveryv1.EndpointPort) int { return strings.Compare(*a.Name, *b.Name) })
	return out
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s/%s/%d;", *p.Name, *p.Protocol, *p.Port)
	}
	return b.String()
}

func ptr[T any](v T) *T { return &v }
