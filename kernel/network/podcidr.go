package network

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// PodCIDRConfig configures a PodCIDRAllocator.
type PodCIDRConfig struct {
	// Client talks to the API server; required.
	Client kubernetes.Interface
	// ClusterCIDR is the IPv4 range node pod CIDRs are cut from; the zero
	// Prefix means DefaultClusterCIDR.
	ClusterCIDR netip.Prefix
	// NodeMaskSize is the prefix length of each node's range; 0 means
	// DefaultNodeMaskSize. It must be longer than ClusterCIDR's and at
	// most 30.
	NodeMaskSize int
	// Logger receives allocation messages; nil means slog.Default().
	Logger *slog.Logger
}

// PodCIDRAllocator gives every Node without one a pod CIDR cut from the
// cluster CIDR, writing spec.podCIDR and spec.podCIDRs, like Kubernetes'
// node IPAM range allocator. The Node objects are the only record: at
// start it reads every Node's range before allocating, so a restart never
// hands a range out twice, and a deleted Node's range is free again. One
// worker allocates, so one allocator never races itself; run one per
// cluster (HA servers: behind leader election). It is safe for concurrent
// use; Run may be called once.
type PodCIDRAllocator struct {
	client kubernetes.Interface
	log    *slog.Logger
	ranges *cidrSet

	mu sync.Mutex
	// owner maps a range to the node holding it.
	owner map[netip.Prefix]string
	// waiting are the nodes that found the cluster CIDR full; a freed
	// range queues them again at once.
	waiting map[string]bool
	queue   workqueue.TypedRateLimitingInterface[string]
}

// NewPodCIDRAllocator validates cfg and returns an allocator; errors wrap
// errdefs.ErrInvalid.
func NewPodCIDRAllocator(cfg PodCIDRConfig) (*PodCIDRAllocator, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("pod CIDR allocator: no client: %w", errdefs.ErrInvalid)
	}
	if !cfg.ClusterCIDR.IsValid() {
		cfg.ClusterCIDR = DefaultClusterCIDR
	}
	if cfg.NodeMaskSize == 0 {
		cfg.NodeMaskSize = DefaultNodeMaskSize
	}
	set, err := newCIDRSet(cfg.ClusterCIDR, cfg.NodeMaskSize)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR allocator: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &PodCIDRAllocator{client: cfg.Client, log: cfg.Logger.With("component", "podcidr"),
		ranges: set, owner: map[netip.Prefix]string{}, waiting: map[string]bool{}}, nil
}

// Run allocates until ctx ends. It returns nil then, or an error if the
// Node cache never filled.
func (a *PodCIDRAllocator) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(a.client, 0)
	nodes := factory.Core().V1().Nodes()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	a.mu.Lock()
	a.queue = queue
	a.mu.Unlock()
	reg, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { a.observe(obj, queue) },
		UpdateFunc: func(old, obj any) {
			if o, ok := old.(*corev1.Node); ok && o.Spec.PodCIDR != obj.(*corev1.Node).Spec.PodCIDR {
				a.forget(o)
			}
			a.observe(obj, queue)
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				a.forget(n)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("pod CIDR allocator: watch nodes: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced, reg.HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("pod CIDR allocator: node cache did not sync: %w", errdefs.ErrUnavailable)
	}
	// Every existing range is known (the handlers ran for the initial
	// list) before the first allocation.
	lister := nodes.Lister()
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		name, shutdown := queue.Get()
		if shutdown {
			return nil
		}
		err := a.sync(ctx, lister, name)
		switch {
		case err == nil:
			queue.Forget(name)
		case ctx.Err() != nil:
		default:
			a.log.Warn("pod CIDR not allocated; retrying", "node", name, "err", err)
			queue.AddRateLimited(name)
		}
		queue.Done(name)
	}
}

// observe records a node's range, or queues the node if it has none.
func (a *PodCIDRAllocator) observe(obj any, queue workqueue.TypedRateLimitingInterface[string]) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	if n.Spec.PodCIDR == "" {
		queue.Add(n.Name)
		return
	}
	p, err := netip.ParsePrefix(n.Spec.PodCIDR)
	if err != nil {
		a.log.Warn("node has an invalid pod CIDR", "node", n.Name, "podCIDR", n.Spec.PodCIDR)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if o, ok := a.owner[p]; ok && o != n.Name {
		a.log.Warn("pod CIDR held by two nodes", "podCIDR", p, "node", n.Name, "other", o)
	}
	a.owner[p] = n.Name
}

// forget frees a deleted node's range.
func (a *PodCIDRAllocator) forget(n *corev1.Node) {
	p, err := netip.ParsePrefix(n.Spec.PodCIDR)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.waiting, n.Name)
	if a.owner[p] == n.Name {
		delete(a.owner, p)
		a.wake()
	}
}

// sync gives node name a range if it still has none.
func (a *PodCIDRAllocator) sync(ctx context.Context, lister corelisters.NodeLister, name string) error {
	n, err := lister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if n.Spec.PodCIDR != "" {
		return nil
	}
	p, err := a.take(name)
	if err != nil {
		return err
	}
	// The resourceVersion makes the patch fail if the node changed since
	// the cache saw it (another writer may have set a range).
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
		"spec":     map[string]any{"podCIDR": p.String(), "podCIDRs": []string{p.String()}},
	})
	if err != nil {
		a.release(p, name)
		return err
	}
	if _, err := a.client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		a.release(p, name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("set pod CIDR %s of node %s: %w", p, name, err)
	}
	a.log.Info("allocated pod CIDR", "node", name, "podCIDR", p)
	return nil
}

// take picks the lowest free range for node.
func (a *PodCIDRAllocator) take(node string) (netip.Prefix, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.ranges.count {
		p := a.ranges.nth(i)
		if _, used := a.owner[p]; !used {
			a.owner[p] = node
			return p, nil
		}
	}
	a.waiting[node] = true
	return netip.Prefix{}, fmt.Errorf("cluster CIDR %s has no free /%d range: %w", a.ranges.cluster, a.ranges.bits, errdefs.ErrUnavailable)
}

// wake queues the nodes waiting for a range; a.mu is held.
func (a *PodCIDRAllocator) wake() {
	for node := range a.waiting {
		a.queue.Add(node)
		delete(a.waiting, node)
	}
}

func (a *PodCIDRAllocator) release(p netip.Prefix, node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.owner[p] == node {
		delete(a.owner, p)
		a.wake()
	}
}

// cidrSet enumerates the node ranges of a cluster CIDR.
type cidrSet struct {
	cluster netip.Prefix
	bits    int
	base    uint32
	count   uint32
}

func newCIDRSet(cluster netip.Prefix, bits int) (*cidrSet, error) {
	switch {
	case !cluster.IsValid() || !cluster.Addr().Is4():
		return nil, fmt.Errorf("cluster CIDR %s: want an IPv4 prefix: %w", cluster, errdefs.ErrInvalid)
	case cluster.Masked() != cluster:
		return nil, fmt.Errorf("cluster CIDR %s: host bits set: %w", cluster, errdefs.ErrInvalid)
	case bits <= cluster.Bits() || bits > 30:
		return nil, fmt.Errorf("node mask size %d: want %d < size <= 30: %w", bits, cluster.Bits(), errdefs.ErrInvalid)
	case bits-cluster.Bits() > 20:
		return nil, fmt.Errorf("node mask size %d: more than 2^20 node ranges in %s: %w", bits, cluster, errdefs.ErrInvalid)
	}
	b := cluster.Addr().As4()
	return &cidrSet{cluster: cluster, bits: bits, base: binary.BigEndian.Uint32(b[:]), count: 1 << (bits - cluster.Bits())}, nil
}

// nth is the i-th range (i < count).
func (s *cidrSet) nth(i uint32) netip.Prefix {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], s.base+i<<(32-s.bits))
	return netip.PrefixFrom(netip.AddrFrom4(b), s.bits)
}
