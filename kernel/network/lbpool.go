package network

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// LoadBalancerConfig configures a LoadBalancerAllocator.
type LoadBalancerConfig struct {
	// Client talks to the API server; required.
	Client kubernetes.Interface
	// Pool are the IPv4 ranges handed out, in order (the network and
	// broadcast addresses of prefixes up to /30 are skipped); required.
	Pool []netip.Prefix
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// LoadBalancerAllocator gives every Service of type LoadBalancer an
// address from a configured pool in status.loadBalancer.ingress (honouring
// spec.loadBalancerIP if it is free in the pool), and takes it back when
// the Service is deleted or changes type, like MetalLB's controller. The
// Services are the only record (it reads them all before allocating), so
// a restart never hands an address out twice. Run one per cluster. It is
// safe for concurrent use; Run may be called once.
type LoadBalancerAllocator struct {
	client kubernetes.Interface
	log    *slog.Logger
	pool   []netip.Addr

	mu    sync.Mutex
	owner map[netip.Addr]string // address -> namespace/name
	// waiting are the Services that found the pool exhausted; a release
	// queues them again at once.
	waiting map[string]bool
	queue   workqueue.TypedRateLimitingInterface[string]
}

// NewLoadBalancerAllocator validates cfg; errors wrap errdefs.ErrInvalid.
func NewLoadBalancerAllocator(cfg LoadBalancerConfig) (*LoadBalancerAllocator, error) {
	if cfg.Client == nil || len(cfg.Pool) == 0 {
		return nil, fmt.Errorf("load balancer allocator: a client and a pool are required: %w", errdefs.ErrInvalid)
	}
	var pool []netip.Addr
	for _, p := range cfg.Pool {
		if !p.IsValid() || !p.Addr().Is4() || p.Masked() != p || p.Bits() < 16 {
			return nil, fmt.Errorf("load balancer pool %s: want a masked IPv4 prefix of /16 or longer: %w", p, errdefs.ErrInvalid)
		}
		first, last := p.Addr(), lastAddr(p)
		if p.Bits() <= 30 {
			first, last = first.Next(), last.Prev()
		}
		for a := first; a.IsValid() && a.Compare(last) <= 0; a = a.Next() {
			if !slices.Contains(pool, a) {
				pool = append(pool, a)
			}
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &LoadBalancerAllocator{client: cfg.Client, log: cfg.Logger.With("component", "lbpool"), pool: pool,
		owner: map[netip.Addr]string{}, waiting: map[string]bool{}}, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Run allocates until ctx ends; it returns nil then, or an error if the
// Service cache never filled.
func (a *LoadBalancerAllocator) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(a.client, 0)
	svcs := factory.Core().V1().Services()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	a.mu.Lock()
	a.queue = queue
	a.mu.Unlock()
	reg, err := svcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.observe(obj, queue) },
		UpdateFunc: func(_, obj any) { a.observe(obj, queue) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if svc, ok := obj.(*corev1.Service); ok {
				a.releaseAll(svc.Namespace + "/" + svc.Name)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("load balancer allocator: watch services: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcs.Informer().HasSynced, reg.HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("load balancer allocator: service cache did not sync: %w", errdefs.ErrUnavailable)
	}
	lister := svcs.Lister()
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		key, shutdown := queue.Get()
		if shutdown {
			return nil
		}
		err := a.sync(ctx, lister, key)
		switch {
		case err == nil:
			queue.Forget(key)
		case ctx.Err() != nil:
		default:
			a.log.Warn("load balancer address not set; retrying", "service", key, "err", err)
			queue.AddRateLimited(key)
		}
		queue.Done(key)
	}
}

// ingress are the pool addresses in svc's status.
func (a *LoadBalancerAllocator) ingress(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil && slices.Contains(a.pool, ip) {
			out = append(out, ip)
		}
	}
	return out
}

// observe records a Service's addresses and queues it if it needs one or
// must give one back.
func (a *LoadBalancerAllocator) observe(obj any, queue workqueue.TypedRateLimitingInterface[string]) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	key := svc.Namespace + "/" + svc.Name
	held := a.ingress(svc)
	a.mu.Lock()
	for _, ip := range held {
		if o, ok := a.owner[ip]; ok && o != key {
			a.log.Warn("load balancer address held by two services", "ip", ip, "service", key, "other", o)
		}
		a.owner[ip] = key
	}
	a.mu.Unlock()
	isLB := svc.Spec.Type == corev1.ServiceTypeLoadBalancer
	if (isLB && len(svc.Status.LoadBalancer.Ingress) == 0) || (!isLB && len(held) > 0) {
		queue.Add(key)
	}
}

func (a *LoadBalancerAllocator) sync(ctx context.Context, lister corelisters.ServiceLister, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := lister.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	held := a.ingress(svc)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		if len(held) == 0 {
			return nil
		}
		upd := svc.DeepCopy()
		upd.Status.LoadBalancer = corev1.LoadBalancerStatus{}
		if _, err := a.client.CoreV1().Services(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("clear load balancer address of %s: %w", key, err)
		}
		for _, ip := range held {
			a.release(ip, key)
		}
		return nil
	}
	if len(svc.Status.LoadBalancer.Ingress) > 0 {
		return nil
	}
	ip, err := a.take(key, svc.Spec.LoadBalancerIP)
	if err != nil {
		return err
	}
	upd := svc.DeepCopy()
	upd.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip.String(), IPMode: ptrTo(corev1.LoadBalancerIPModeVIP)}}
	if _, err := a.client.CoreV1().Services(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		a.release(ip, key)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("set load balancer address %s of %s: %w", ip, key, err)
	}
	a.log.Info("allocated load balancer address", "service", key, "ip", ip)
	return nil
}

func ptrTo[T any](v T) *T { return &v }

// take reserves want if it is a free pool address, else the first free one.
func (a *LoadBalancerAllocator) take(key, want string) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w, err := netip.ParseAddr(want); err == nil {
		if !slices.Contains(a.pool, w) {
			return netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s is not in the pool: %w", w, errdefs.ErrInvalid)
		}
		if o, used := a.owner[w]; used && o != key {
			return netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s is held by %s: %w", w, o, errdefs.ErrConflict)
		}
		a.owner[w] = key
		return w, nil
	}
	for _, ip := range a.pool {
		if _, used := a.owner[ip]; !used {
			a.owner[ip] = key
			return ip, nil
		}
	}
	a.waiting[key] = true
	return netip.Addr{}, fmt.Errorf("load balancer pool is exhausted: %w", errdefs.ErrUnavailable)
}

// wake queues the Services waiting for an address; a.mu is held.
func (a *LoadBalancerAllocator) wake() {
	for key := range a.waiting {
		a.queue.Add(key)
		delete(a.waiting, key)
	}
}

func (a *LoadBalancerAllocator) release(ip netip.Addr, key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.owner[ip] == key {
		delete(a.owner, ip)
		a.wake()
	}
}

func (a *LoadBalancerAllocator) releaseAll(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.waiting, key)
	for ip, o := range a.owner {
		if o == key {
			delete(a.owner, ip)
			a.wake()
		}
	}
}
