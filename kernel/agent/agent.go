// Package agent is Tugboat's kubelet: it registers its machine as a Node,
// heartbeats through a Lease in kube-node-lease, and runs the pods bound
// to the node with a workload runtime (kernel/dataplane), reporting their
// status, running their probes and serving their logs. It talks only to
// the API server, through any client-go rest.Config: in-process inside
// `tugboat server`, over TLS with a node certificate in `tugboat agent`.
//
// Pods run under per-pod workers (one goroutine each, woken by pod
// changes, container exits, probe results and backoff timers). Container
// attempts are runtime containers named <pod UID>-<container>-<attempt>,
// labelled with the pod and container, so a restarted agent rebuilds its
// state from the runtime: running pods are adopted, never started twice,
// and containers of pods deleted meanwhile are removed.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Annotations and labels the agent owns.
const (
	// AnnotationIdentity on a Node records which agent holds the name.
	AnnotationIdentity = "agent.tugboat.dev/identity"
	// Runtime container labels.
	labelPodUID       = "pod-uid"
	labelPodName      = "pod-name"
	labelPodNamespace = "pod-namespace"
	labelContainer    = "container"
	labelAttempt      = "attempt"
	labelInit         = "init"
)

// Config configures an agent. Zero values mean the defaults.
type Config struct {
	// NodeName must be a DNS subdomain; required.
	NodeName string
	// Runtime runs the containers; required.
	Runtime dataplane.Runtime
	// Dir holds the agent's state (identity, pod volumes); required.
	Dir string
	// Labels and Taints are set at registration.
	Labels map[string]string
	Taints []corev1.Taint
	// Addresses of the node; default: the host's first non-loopback IPv4
	// address (127.0.0.1 without one) and its host name.
	Addresses []corev1.NodeAddress
	// Capacity overrides detected resources (cpu, memory,
	// ephemeral-storage, pods=110, nvidia.com/gpu).
	Capacity corev1.ResourceList
	// EventClient writes events; nil means the agent's client. A separate
	// client keeps events from using the rate limit of status writes.
	EventClient kubernetes.Interface
	// KubeletPort is reported in status.daemonEndpoints (where the API
	// server reaches the agent for logs and exec).
	KubeletPort int32
	// LeaseDuration (default 40s), RenewInterval (10s) and StatusInterval
	// (5m) time the two heartbeats.
	LeaseDuration, RenewInterval, StatusInterval time.Duration
	// Network turns on bridge mode (pods in their own network namespaces,
	// see NetworkConfig); nil means host mode (pods share the node's
	// network).
	Network *NetworkConfig
	// ServiceAddr, when the node runs the userspace Service proxy, is
	// where it serves a service port locally; host-network pods get it in
	// their <SVC>_SERVICE_HOST/_PORT variables. Nil means cluster IPs.
	ServiceAddr func(namespace, name, portName string) (netip.AddrPort, bool)
	// Services lists a namespace's Services from a cache (the node
	// network's informer) for the Service variables; nil means a List
	// request per container start.
	Services func(namespace string) ([]*corev1.Service, error)
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

func (c *Config) complete() error {
	if msgs := validation.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
		return fmt.Errorf("agent: node name %q: %s: %w", c.NodeName, msgs[0], errdefs.ErrInvalid)
	}
	if c.Runtime == nil || c.Dir == "" {
		return fmt.Errorf("agent: runtime and directory are required: %w", errdefs.ErrInvalid)
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if len(c.Addresses) == 0 {
		c.Addresses = defaultAddresses(c.NodeName)
	}
	return nil
}

// Agent is a running node agent.
type Agent struct {
	cfg      Config
	client   kubernetes.Interface
	rt       dataplane.Runtime
	log      *slog.Logger
	identity string

	pods     *podSource
	started  time.Time
	events   record.EventBroadcaster
	recorder record.EventRecorder
	cpu      cpuSamples
	net      *podNetwork // nil in host mode

	mu      sync.Mutex
	workers map[string]*podWorker // by pod UID

	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// Start registers the node (refusing a name another live agent holds:
// errdefs.ErrConflict), recovers the runtime's containers and starts the
// heartbeats and pod handling; it returns once the pod cache has synced.
func Start(ctx context.Context, client kubernetes.Interface, cfg Config) (*Agent, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	id, err := loadIdentity(filepath.Join(cfg.Dir, "identity"))
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, client: client, rt: cfg.Runtime, log: cfg.Logger, identity: id,
		workers: make(map[string]*podWorker), started: time.Now(),
		cpu: cpuSamples{last: map[string]cpuSample{}},
	}
	ctx, a.cancel = context.WithCancel(ctx)
	fail := func(err error) (*Agent, error) {
		a.cancel()
		a.wg.Wait()
		if a.events != nil {
			a.events.Shutdown()
		}
		return nil, err
	}
	if err := a.register(ctx); err != nil {
		return fail(err)
	}
	a.startEvents()
	if cfg.Network != nil {
		if err := a.startNetwork(ctx); err != nil {
			return fail(err)
		}
	}
	a.pods, err = startPodSource(ctx, client, cfg.NodeName, a.podChanged)
	if err != nil {
		return fail(err)
	}
	lease, err := a.renew(ctx, nil)
	if err != nil {
		return fail(fmt.Errorf("agent: node lease: %w", err))
	}
	a.wg.Go(func() { a.heartbeat(ctx, lease) })
	a.wg.Go(func() { a.nodeStatusLoop(ctx) })
	a.recover(ctx)
	a.wg.Go(func() { a.watchRuntime(ctx) })
	a.log.Info("node agent ready", "node", cfg.NodeName, "runtime", a.rt.Name())
	return a, nil
}

// Stop stops the agent's loops and pod workers; containers keep running
// (a restarted agent adopts them).
func (a *Agent) Stop() {
	a.cancel()
	a.wg.Wait()
	a.pods.stop()
	a.mu.Lock()
	workers := make([]*podWorker, 0, len(a.workers))
	for _, w := range a.workers {
		workers = append(workers, w)
	}
	a.mu.Unlock()
	for _, w := range workers {
		w.wait()
	}
	a.closeNetwork()
	a.events.Shutdown()
}

// NodeName returns the node's name.
func (a *Agent) NodeName() string { return a.cfg.NodeName }

// loadIdentity reads the agent's identity, creating it on first start.
func loadIdentity(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("agent: identity: %w", err)
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("agent: identity: %w", err)
	}
	id := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("agent: identity: %w", err)
	}
	return id, nil
}

// podChanged routes a pod event to its worker, starting one if needed.
func (a *Agent) podChanged(ctx context.Context, pod *corev1.Pod, deleted bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.workers[string(pod.UID)]
	if w == nil {
		if deleted {
			return
		}
		w = newPodWorker(a, pod)
		a.workers[string(pod.UID)] = w
		a.wg.Go(func() { w.run(ctx) })
	}
	w.update(pod, deleted)
}

// workerDone forgets a finished worker.
func (a *Agent) workerDone(uid string) {
	a.mu.Lock()
	delete(a.workers, uid)
	a.mu.Unlock()
}

// worker returns the worker of a pod UID, if any.
func (a *Agent) worker(uid string) *podWorker {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.workers[uid]
}

// watchRuntime wakes the worker of each container that changed.
func (a *Agent) watchRuntime(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-a.rt.Changes():
			st, err := a.rt.State(id)
			if err != nil {
				continue
			}
			if w := a.worker(st.Labels[labelPodUID]); w != nil {
				w.wake()
			}
		}
	}
}

// recover removes the containers of pods this node no longer has; the
// workers of the others adopt their containers as they start.
func (a *Agent) recover(ctx context.Context) {
	list, err := a.rt.List()
	if err != nil {
		a.log.Warn("agent: list runtime containers", "err", err)
		return
	}
	live := make(map[string]bool)
	for _, p := range a.pods.list() {
		live[string(p.UID)] = true
	}
	gone := make(map[string]bool)
	for _, st := range list {
		uid := st.Labels[labelPodUID]
		if live[uid] {
			continue
		}
		gone[uid] = true
		if err := a.rt.Remove(ctx, st.ID); err != nil {
			a.log.Warn("agent: remove container of a deleted pod", "container", st.ID, "err", err)
		}
	}
	for uid := range gone {
		if uid != "" {
			os.RemoveAll(a.podDir(uid))
		}
	}
	a.cleanupNetwork(live)
	// Pod directories without containers or pods.
	ents, _ := os.ReadDir(filepath.Join(a.cfg.Dir, "pods"))
	for _, e := range ents {
		if !live[e.Name()] {
			os.RemoveAll(filepath.Join(a.cfg.Dir, "pods", e.Name()))
		}
	}
}

// podDir is where a pod's volumes live.
func (a *Agent) podDir(uid string) string { return filepath.Join(a.cfg.Dir, "pods", uid) }
