// Package controller is the kernel's controller driver: it keeps informer
// caches of the resources the loaded controllers watch (raw JSON, indexed
// by namespace, labels and owner), maps watch events to keys with each
// controller's declared Enqueue modes, and runs rate-limited work queues
// whose workers call the controllers (Wasm plugins, through the
// Reconciler interface) one key at a time. Only the holder of a
// coordination.k8s.io/v1 Lease runs controllers.
//
// The driver holds no policy. It also serves the controllers' host calls
// (Get, List, Write; see Host): reads from its caches, writes through the
// API server with the result put in the cache at once.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/leaderelect"
)

// Reconciler is one controller as the driver calls it (the runtime adapts
// a Wasm plugin). Calls for one controller may run concurrently, up to its
// Workers; the driver never reconciles the same key twice at once.
type Reconciler interface {
	Reconcile(ctx context.Context, req hostapi.ReconcileRequest) (hostapi.ReconcileResult, error)
}

// Registration adds one controller to the driver.
type Registration struct {
	Name       string
	Spec       hostapi.ControllerSpec
	Reconciler Reconciler
	// Workers is the number of keys reconciled at once (default 2).
	Workers int
}

// Config configures a Driver.
type Config struct {
	// Client reaches the API server (in-process or remote).
	Client *rest.Config
	Logger *slog.Logger
	// LeaderElection makes the driver run controllers only while it holds
	// the Lease LeaseNamespace/LeaseName as Identity (LeaseName defaults
	// to tugboat-controllers; the others default as in leaderelect.Config:
	// kube-system, the host name).
	LeaderElection bool
	LeaseNamespace string
	LeaseName      string
	Identity       string
	// LeaseDuration, RenewDeadline, RetryPeriod: client-go leader
	// election timings (0: leaderelect's defaults).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// CallTimeout bounds one Reconcile call (default 30s; the plugin's own
	// timeout usually ends it first).
	CallTimeout time.Duration
}

// Driver runs controllers. Add registers them before Run; the Host
// methods (Get, List, Write) are safe for concurrent use.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	api   *api
	ctrls []*ctrl
	term  atomic.Pointer[term]
	// reconciles counts Reconcile calls (for tests and stats).
	reconciles atomic.Int64
}

// ctrl is one registered controller.
type ctrl struct {
	reg   Registration
	self  map[string]bool     // EnqueueSelf / EnqueueGC resources
	modes map[string][]string // resource -> enqueue modes
}

// key is one work item: an object a controller reconciles.
type key struct{ res, ns, name string }

// New validates cfg and returns a driver.
func New(cfg Config) (*Driver, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("controller driver: no client config: %w", errdefs.ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = "tugboat-controllers"
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	a, err := newAPI(cfg.Client)
	if err != nil {
		return nil, fmt.Errorf("controller driver: %w", err)
	}
	return &Driver{cfg: cfg, log: cfg.Logger, api: a}, nil
}

// Add registers a controller; call it before Run.
func (d *Driver) Add(r Registration) error {
	if r.Name == "" || r.Reconciler == nil {
		return fmt.Errorf("controller registration without name or reconciler: %w", errdefs.ErrInvalid)
	}
	if r.Workers <= 0 {
		r.Workers = 2
	}
	c := &ctrl{reg: r, self: make(map[string]bool), modes: make(map[string][]string)}
	for _, w := range r.Spec.Watches {
		switch w.Enqueue {
		case hostapi.EnqueueSelf, hostapi.EnqueueGC:
			c.self[w.Resource] = true
		case hostapi.EnqueueOwner, hostapi.EnqueueNamespace, hostapi.EnqueueName, hostapi.EnqueueNone:
		default:
			return fmt.Errorf("controller %q: watch of %s: enqueue mode %q: %w", r.Name, w.Resource, w.Enqueue, errdefs.ErrInvalid)
		}
		if w.Resource == "" || w.Resource == hostapi.AllResources {
			return fmt.Errorf("controller %q: watch needs a resource name: %w", r.Name, errdefs.ErrInvalid)
		}
		c.modes[w.Resource] = append(c.modes[w.Resource], w.Enqueue)
	}
	if len(c.self) == 0 {
		return fmt.Errorf("controller %q watches no primary resource (enqueue %q): %w", r.Name, hostapi.EnqueueSelf, errdefs.ErrInvalid)
	}
	d.ctrls = append(d.ctrls, c)
	return nil
}

// Reconciles returns how many Reconcile calls the driver made.
func (d *Driver) Reconciles() int64 { return d.reconciles.Load() }

// Run runs the controllers until ctx ends: at once without leader
// election, else whenever this driver holds the Lease. It returns nil when
// ctx ends.
func (d *Driver) Run(ctx context.Context) error {
	if len(d.ctrls) == 0 {
		<-ctx.Done()
		return nil
	}
	if !d.cfg.LeaderElection {
		d.lead(ctx)
		return nil
	}
	return leaderelect.Run(ctx, leaderelect.Config{Client: d.cfg.Client, Namespace: d.cfg.LeaseNamespace,
		Name: d.cfg.LeaseName, Identity: d.cfg.Identity, LeaseDuration: d.cfg.LeaseDuration,
		RenewDeadline: d.cfg.RenewDeadline, RetryPeriod: d.cfg.RetryPeriod, Logger: d.log}, d.lead)
}

// term is one leadership term: its caches, owner index and queues.
type term struct {
	d      *Driver
	res    *resources
	caches map[string]*resourceCache
	queues map[*ctrl]workqueue.TypedRateLimitingInterface[key]
	owners *ownerIndex
}

// lead runs the controllers until ctx ends.
func (d *Driver) lead(ctx context.Context) {
	var res *resources
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if res, err = discover(d.cfg.Client); err == nil {
			break
		}
		d.log.Warn("controllers: discovery", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	t := &term{d: d, res: res, caches: make(map[string]*resourceCache),
		queues: make(map[*ctrl]workqueue.TypedRateLimitingInterface[key]), owners: newOwnerIndex()}
	for _, c := range d.ctrls {
		for name := range c.modes {
			if t.caches[name] != nil {
				continue
			}
			info, err := res.lookup(name)
			if err != nil {
				d.log.Warn("watched resource not served; ignored", "controller", c.reg.Name, "resource", name)
				continue
			}
			if !info.watchable { // e.g. pods.metrics.k8s.io: reads go to the API
				d.log.Warn("watched resource cannot be watched; not cached", "controller", c.reg.Name, "resource", name)
				continue
			}
			t.caches[name] = newResourceCache(info)
		}
		t.queues[c] = workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[key](),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: c.reg.Name})
	}
	d.term.Store(t)
	defer d.term.CompareAndSwap(t, nil)

	var wg sync.WaitGroup
	synced := make([]chan struct{}, 0, len(t.caches))
	for _, c := range t.caches {
		r := &reflector{api: d.api, cache: c, log: d.log, notify: t.notify, synced: make(chan struct{})}
		synced = append(synced, r.synced)
		wg.Go(func() { r.run(ctx) })
	}
	for _, s := range synced {
		select {
		case <-s:
		case <-ctx.Done():
		}
	}
	if ctx.Err() == nil {
		d.log.Info("controller caches synced", "resources", len(t.caches), "controllers", len(d.ctrls))
		for c, q := range t.queues {
			for range c.reg.Workers {
				wg.Go(func() { t.work(ctx, c, q) })
			}
			if c.reg.Spec.ResyncSeconds > 0 {
				wg.Go(func() { t.resync(ctx, c, q) })
			}
		}
	}
	<-ctx.Done()
	for _, q := range t.queues {
		q.ShutDown()
	}
	wg.Wait()
}

// work reconciles keys from q until it shuts down.
func (t *term) work(ctx context.Context, c *ctrl, q workqueue.TypedRateLimitingInterface[key]) {
	for {
		k, shutdown := q.Get()
		if shutdown {
			return
		}
		t.reconcile(ctx, c, q, k)
		q.Done(k)
	}
}

func (t *term) reconcile(ctx context.Context, c *ctrl, q workqueue.TypedRateLimitingInterface[key], k key) {
	t.d.reconciles.Add(1)
	cctx, cancel := context.WithTimeout(ctx, t.d.cfg.CallTimeout)
	res, err := c.reg.Reconciler.Reconcile(cctx, hostapi.ReconcileRequest{Resource: k.res, Namespace: k.ns, Name: k.name})
	cancel()
	if err == nil && res.Error != "" {
		err = errors.New(res.Error)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		n := q.NumRequeues(k)
		if n&(n-1) == 0 { // 0, 1, 2, 4, 8...: do not flood the log
			t.d.log.Warn("reconcile", "controller", c.reg.Name, "resource", k.res, "namespace", k.ns, "name", k.name,
				"retries", n, "err", err)
		}
		q.AddRateLimited(k)
		return
	}
	q.Forget(k)
	if res.RequeueAfterMillis > 0 {
		q.AddAfter(k, time.Duration(res.RequeueAfterMillis)*time.Millisecond)
	}
}

// resync re-enqueues every primary of c periodically.
func (t *term) resync(ctx context.Context, c *ctrl, q workqueue.TypedRateLimitingInterface[key]) {
	tick := time.NewTicker(time.Duration(c.reg.Spec.ResyncSeconds) * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for res := range c.self {
			if cache := t.caches[res]; cache != nil {
				for _, nn := range cache.keys("") {
					q.Add(key{res, nn[0], nn[1]})
				}
			}
		}
	}
}
