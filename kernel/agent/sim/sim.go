// Package sim runs simulated nodes, like kwok: it registers Node objects,
// keeps their Leases in kube-node-lease renewed, and plays the kubelet for
// the pods bound to them — a pod goes Running as soon as it is seen, a pod
// whose restartPolicy is not Always succeeds (or fails) after a delay, and
// a pod being deleted is removed at once. No process runs anywhere.
//
// A Cluster is one set of simulated nodes served by one pod informer, one
// node informer, one heartbeat loop and a few workers, so thousands of
// nodes fit on a small machine. It talks only to the API server, through
// any client-go rest.Config (in-process loopback or remote).
//
// Pods are steered by annotations (see the Annotation* constants); a node
// stops heartbeating and stops handling its pods while it carries
// AnnotationStopped="true", so node-lifecycle behaviour can be tested.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Annotations that steer the simulation.
const (
	// AnnotationExitAfter on a pod overrides Config.ExitAfter (a Go
	// duration, e.g. "3s") for pods whose restartPolicy is not Always.
	AnnotationExitAfter = "sim.tugboat.dev/exit-after"
	// AnnotationExitCode on a pod sets its containers' exit code (default
	// 0): non-zero makes a Never pod Failed and restarts an OnFailure
	// pod's containers every exit-after.
	AnnotationExitCode = "sim.tugboat.dev/exit-code"
	// AnnotationStopped="true" on a Node stops its heartbeat (Lease and
	// status) and its pod handling until the annotation is removed.
	AnnotationStopped = "sim.tugboat.dev/stopped"
	// LabelSim="true" marks the nodes a Cluster registers.
	LabelSim = "node.tugboat.dev/sim"
)

// LeaseNamespace holds the node Leases.
const LeaseNamespace = corev1.NamespaceNodeLease

// Config describes a set of simulated nodes. The zero value of each field
// means its default.
type Config struct {
	// Nodes is how many nodes to simulate, named Prefix+"0" ...
	// Prefix+"<Nodes-1>". Ignored when Names is set.
	Nodes int
	// Prefix of generated node names; default "sim-".
	Prefix string
	// Names, when set, are the node names (Nodes and Prefix are ignored).
	Names []string
	// Capacity of each node; default cpu 32, memory 256Gi, pods 110,
	// ephemeral-storage 1Ti. Allocatable equals capacity.
	Capacity corev1.ResourceList
	// Labels added to every node (besides kubernetes.io/hostname, os,
	// arch and LabelSim).
	Labels map[string]string
	// Taints of every node at registration.
	Taints []corev1.Taint
	// Customize, if set, edits node i before it is created (per-node
	// labels such as zones, capacities, taints).
	Customize func(i int, n *corev1.Node)
	// ExitAfter is how long a pod whose restartPolicy is not Always runs
	// before it succeeds; default 1s; AnnotationExitAfter overrides it.
	ExitAfter time.Duration
	// LeaseDuration is the Leases' leaseDurationSeconds; default 40s.
	LeaseDuration time.Duration
	// RenewInterval is how often each Lease is renewed; default 10s.
	// Renewals of all nodes are spread evenly over the interval.
	RenewInterval time.Duration
	// StatusInterval is how often each node's Ready condition heartbeat
	// is rewritten; default 5m (spread like the renewals).
	StatusInterval time.Duration
	// Workers write pod statuses concurrently; default 4.
	Workers int
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultCapacity is a simulated node's capacity unless configured.
func DefaultCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("32"),
		corev1.ResourceMemory:           resource.MustParse("256Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
}

// maxNodes bounds the node index so addresses stay unique (one /24 pod
// range per node from 10.128.0.0/9).
const maxNodes = 1 << 15

func (c *Config) complete() error {
	if c.Prefix == "" {
		c.Prefix = "sim-"
	}
	if len(c.Names) == 0 {
		if c.Nodes < 0 {
			return fmt.Errorf("sim: negative node count %d: %w", c.Nodes, errdefs.ErrInvalid)
		}
		for i := range c.Nodes {
			c.Names = append(c.Names, c.Prefix+strconv.Itoa(i))
		}
	}
	if len(c.Names) > maxNodes {
		return fmt.Errorf("sim: %d nodes, at most %d: %w", len(c.Names), maxNodes, errdefs.ErrInvalid)
	}
	seen := make(map[string]bool, len(c.Names))
	for _, n := range c.Names {
		if msgs := validation.IsDNS1123Subdomain(n); len(msgs) > 0 {
			return fmt.Errorf("sim: node name %q: %s: %w", n, msgs[0], errdefs.ErrInvalid)
		}
		if seen[n] {
			return fmt.Errorf("sim: node name %q twice: %w", n, errdefs.ErrInvalid)
		}
		seen[n] = true
	}
	if c.Capacity == nil {
		c.Capacity = DefaultCapacity()
	}
	if c.ExitAfter == 0 {
		c.ExitAfter = time.Second
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 40 * time.Second
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = 10 * time.Second
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = 5 * time.Minute
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.ExitAfter < 0 || c.LeaseDuration < time.Second || c.RenewInterval < 0 || c.StatusInterval < 0 || c.Workers < 0 {
		return fmt.Errorf("sim: negative durations or worker count: %w", errdefs.ErrInvalid)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// node is the simulator's state of one node.
type node struct {
	name    string
	index   int
	stopped atomic.Bool // AnnotationStopped is set
	gone    atomic.Bool // the Node object was deleted

	mu    sync.Mutex
	lease *coordinationv1.Lease // last written
	ips   map[netip.Addr]string // pod IP -> pod UID
}

// Cluster is a running set of simulated nodes. Its methods are safe for
// concurrent use.
type Cluster struct {
	cfg    Config
	client kubernetes.Interface
	log    *slog.Logger
	nodes  map[string]*node
	order  []*node

	factory informers.SharedInformerFactory
	pods    cache.SharedIndexInformer
	queue   workqueue.TypedRateLimitingInterface[string]

	// started records when the simulator first saw each running pod, so
	// exit delays are exact (status times have second precision).
	mu      sync.Mutex
	started map[string]time.Time   // pod UID -> start
	usage   map[string]*cpuCounter // pod UID -> synthetic CPU use (stats.go)

	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// Start registers the nodes (creating them, or marking existing ones Ready
// again), creates their Leases, and runs the simulation until ctx is done
// or Stop is called. It returns once every node is registered and the
// informers have synced.
func Start(ctx context.Context, client kubernetes.Interface, cfg Config) (*Cluster, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:     cfg,
		client:  client,
		log:     cfg.Logger,
		nodes:   make(map[string]*node, len(cfg.Names)),
		started: make(map[string]time.Time),
		queue: workqueue.NewTypedRateLimitingQueue(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 5*time.Second)),
	}
	for i, name := range cfg.Names {
		n := &node{name: name, index: i, ips: make(map[netip.Addr]string)}
		c.nodes[name] = n
		c.order = append(c.order, n)
	}
	ctx, c.cancel = context.WithCancel(ctx)
	if err := c.register(ctx); err != nil {
		c.cancel()
		c.queue.ShutDown()
		return nil, err
	}
	if err := c.startInformers(ctx); err != nil {
		c.cancel()
		c.queue.ShutDown()
		c.factory.Shutdown()
		return nil, err
	}
	c.renewAll(ctx) // every Lease exists before Start returns
	c.wg.Go(func() { c.heartbeat(ctx) })
	for range cfg.Workers {
		c.wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	c.wg.Go(func() {
		<-ctx.Done()
		c.queue.ShutDown()
	})
	c.log.Info("simulated nodes ready", "nodes", len(c.order))
	return c, nil
}

// Stop ends the simulation and waits for its goroutines. Nodes, Leases
// and pods stay as they are.
func (c *Cluster) Stop() {
	c.cancel()
	c.wg.Wait()
	c.factory.Shutdown()
}

// Names returns the simulated nodes' names in index order.
func (c *Cluster) Names() []string {
	out := make([]string, len(c.order))
	for i, n := range c.order {
		out[i] = n.name
	}
	return out
}

// Manages reports whether name is one of the simulated nodes.
func (c *Cluster) Manages(name string) bool { return c.nodes[name] != nil }

// SetStopped stops (true) or resumes (false) one node's heartbeat and pod
// handling without touching the Node object; AnnotationStopped does the
// same through the API. It returns errdefs.ErrNotFound for unknown nodes.
func (c *Cluster) SetStopped(name string, stopped bool) error {
	n := c.nodes[name]
	if n == nil {
		return fmt.Errorf("sim: node %q: %w", name, errdefs.ErrNotFound)
	}
	if n.stopped.Swap(stopped) && !stopped {
		c.resync(name)
	}
	return nil
}

// nodeObject builds node i's Node for registration.
func (c *Cluster) nodeObject(n *node) *corev1.Node {
	labels := map[string]string{
		corev1.LabelHostname:   n.name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
		LabelSim:               "true",
	}
	for k, v := range c.cfg.Labels {
		labels[k] = v
	}
	obj := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: labels},
		Spec: corev1.NodeSpec{
			PodCIDR:  podCIDR(n.index).String(),
			PodCIDRs: []string{podCIDR(n.index).String()},
			Taints:   append([]corev1.Taint(nil), c.cfg.Taints...),
		},
		Status: corev1.NodeStatus{
			Capacity:    c.cfg.Capacity.DeepCopy(),
			Allocatable: c.cfg.Capacity.DeepCopy(),
		},
	}
	if c.cfg.Customize != nil {
		c.cfg.Customize(n.index, obj)
	}
	setNodeStatus(obj, n)
	return obj
}

// setNodeStatus fills the status fields the simulator owns.
func setNodeStatus(obj *corev1.Node, n *node) {
	now := metav1.Now()
	obj.Status.Phase = corev1.NodeRunning
	obj.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: nodeIP(n.index).String()},
		{Type: corev1.NodeHostName, Address: n.name},
	}
	obj.Status.DaemonEndpoints.KubeletEndpoint.Port = 10250
	obj.Status.NodeInfo = corev1.NodeSystemInfo{
		MachineID: "sim", SystemUUID: "sim-" + strconv.Itoa(n.index), BootID: "sim",
		KernelVersion: "sim", OSImage: "Tugboat simulated node", OperatingSystem: "linux", Architecture: "amd64",
		ContainerRuntimeVersion: "sim://1", KubeletVersion: "v1.37.2-tugboat", KubeProxyVersion: "v1.37.2-tugboat",
	}
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "simulated node is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}
	for _, p := range []struct {
		t      corev1.NodeConditionType
		reason string
	}{
		{corev1.NodeMemoryPressure, "KubeletHasSufficientMemory"},
		{corev1.NodeDiskPressure, "KubeletHasNoDiskPressure"},
		{corev1.NodePIDPressure, "KubeletHasSufficientPID"},
	} {
		setNodeCondition(obj, corev1.NodeCondition{Type: p.t, Status: corev1.ConditionFalse, Reason: p.reason,
			LastHeartbeatTime: now, LastTransitionTime: now})
	}
	setNodeCondition(obj, ready)
}

// setNodeCondition sets cond, keeping the transition time when the status
// did not change.
func setNodeCondition(obj *corev1.Node, cond corev1.NodeCondition) {
	for i, cur := range obj.Status.Conditions {
		if cur.Type == cond.Type {
			if cur.Status == cond.Status {
				cond.LastTransitionTime = cur.LastTransitionTime
			}
			obj.Status.Conditions[i] = cond
			return
		}
	}
	obj.Status.Conditions = append(obj.Status.Conditions, cond)
}

// register creates every node (or marks an existing one Ready) with a
// few concurrent writers.
func (c *Cluster) register(ctx context.Context) error {
	work := make(chan *node)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range min(16, max(1, len(c.order))) {
		wg.Go(func() {
			for n := range work {
				if err := c.registerOne(ctx, n); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for _, n := range c.order {
		select {
		case work <- n:
		case err := <-errs:
			close(work)
			wg.Wait()
			return err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (c *Cluster) registerOne(ctx context.Context, n *node) error {
	obj := c.nodeObject(n)
	created, err := c.client.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{})
	if err == nil {
		if len(created.Status.Conditions) > 0 {
			return nil // the server kept the status, as Kubernetes does for nodes
		}
		setNodeStatus(created, n)
		created.Status.Capacity, created.Status.Allocatable = obj.Status.Capacity, obj.Status.Allocatable
		_, err = c.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("sim: node %s status: %w", n.name, err)
		}
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("sim: register node %s: %w", n.name, err)
	}
	for attempt := 0; ; attempt++ {
		cur, err := c.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("sim: node %s: %w", n.name, err)
		}
		n.stopped.Store(cur.Annotations[AnnotationStopped] == "true")
		setNodeStatus(cur, n)
		cur.Status.Capacity, cur.Status.Allocatable = obj.Status.Capacity, obj.Status.Allocatable
		_, err = c.client.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt == 5 {
			return fmt.Errorf("sim: node %s status: %w", n.name, err)
		}
	}
}

// heartbeat renews Leases (every RenewInterval) and node statuses (every
// StatusInterval), spreading both over their intervals in 100ms ticks, and
// hands the writes to a few goroutines so the store can group-commit them.
func (c *Cluster) heartbeat(ctx context.Context) {
	const tick = 100 * time.Millisecond
	renewSlots := max(1, int(c.cfg.RenewInterval/tick))
	statusSlots := max(1, int(c.cfg.StatusInterval/tick))
	work := make(chan func(), 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(work)
	for range 4 {
		wg.Go(func() {
			for f := range work {
				f()
			}
		})
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for slot := 0; ; slot++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, n := range c.order {
			if n.stopped.Load() || n.gone.Load() {
				continue
			}
			if i%renewSlots == slot%renewSlots {
				select {
				case work <- func() { c.renew(ctx, n) }:
				case <-ctx.Done():
					return
				}
			}
			if i%statusSlots == slot%statusSlots && slot >= statusSlots {
				select {
				case work <- func() { c.postStatus(ctx, n) }:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// renewAll renews every Lease once, concurrently.
func (c *Cluster) renewAll(ctx context.Context) {
	work := make(chan *node)
	var wg sync.WaitGroup
	for range min(16, max(1, len(c.order))) {
		wg.Go(func() {
			for n := range work {
				c.renew(ctx, n)
			}
		})
	}
	for _, n := range c.order {
		work <- n
	}
	close(work)
	wg.Wait()
}

// renew writes n's Lease with a fresh renewTime, creating it if missing.
func (c *Cluster) renew(ctx context.Context, n *node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	leases := c.client.CoordinationV1().Leases(LeaseNamespace)
	now := metav1.NowMicro()
	if n.lease == nil {
		cur, err := leases.Get(ctx, n.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cur, err = leases.Create(ctx, c.newLease(n, now), metav1.CreateOptions{})
			if err != nil {
				c.logErr(ctx, "create lease", n.name, err)
				return
			}
			n.lease = cur
			return
		case err != nil:
			c.logErr(ctx, "get lease", n.name, err)
			return
		}
		n.lease = cur
	}
	l := n.lease.DeepCopy()
	l.Spec.RenewTime = &now
	holder := n.name
	l.Spec.HolderIdentity = &holder
	secs := int32(c.cfg.LeaseDuration / time.Second)
	l.Spec.LeaseDurationSeconds = &secs
	out, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		n.lease = nil // re-read next time (conflict, deleted)
		c.logErr(ctx, "renew lease", n.name, err)
		return
	}
	n.lease = out
}

func (c *Cluster) newLease(n *node, now metav1.MicroTime) *coordinationv1.Lease {
	holder := n.name
	secs := int32(c.cfg.LeaseDuration / time.Second)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: n.name, Namespace: LeaseNamespace},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &now,
		},
	}
	if obj, ok, _ := c.nodeInformer().GetIndexer().GetByKey(n.name); ok {
		nd := obj.(*corev1.Node)
		l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: nd.Name, UID: nd.UID}}
	}
	return l
}

// postStatus rewrites n's Ready condition heartbeat.
func (c *Cluster) postStatus(ctx context.Context, n *node) {
	obj, ok, _ := c.nodeInformer().GetIndexer().GetByKey(n.name)
	if !ok {
		return
	}
	nd := obj.(*corev1.Node).DeepCopy()
	setNodeStatus(nd, n)
	if _, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, nd, metav1.UpdateOptions{}); err != nil {
		c.logErr(ctx, "node status", n.name, err)
	}
}

func (c *Cluster) logErr(ctx context.Context, op, name string, err error) {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return
	}
	c.log.Debug("sim: "+op, "node", name, "err", err)
}

// nodeIP is node i's InternalIP, from 172.16.0.0/12.
func nodeIP(i int) netip.Addr {
	v := uint32(172)<<24 | uint32(16)<<16 + uint32(i+1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// podCIDR is node i's pod range: 10.(128+i/256).(i%256).0/24.
func podCIDR(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(128 + i/256), byte(i % 256), 0}), 24)
}
