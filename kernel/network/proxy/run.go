package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Syncer is a proxy mode: Iptables and Userspace.
type Syncer interface {
	Sync(ctx context.Context, services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) error
}

var (
	_ Syncer = (*Iptables)(nil)
	_ Syncer = (*Userspace)(nil)
)

// RunConfig configures Run.
type RunConfig struct {
	// Client watches Services and EndpointSlices; required.
	Client kubernetes.Interface
	// Informers, if set, is a factory (of Client) shared with other
	// readers of the node; Run starts its informers but leaves shutting it
	// down to its owner. Nil: Run has its own.
	Informers informers.SharedInformerFactory
	// MinInterval is the least time between two syncs (changes arriving
	// meanwhile are synced together); 0 means 100ms.
	MinInterval time.Duration
	// FullResync is how often an Iptables proxy rewrites everything
	// (repairing rules someone else changed); 0 means 5 minutes.
	FullResync time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Run keeps s in sync with the cluster's Services and EndpointSlices
// until ctx ends: it syncs once the caches are filled, then after every
// change (at most once per MinInterval), retrying failed syncs. It
// returns nil when ctx ends, or an error if the caches never fill.
func Run(ctx context.Context, cfg RunConfig, s Syncer) error {
	if cfg.Client == nil {
		return fmt.Errorf("proxy: no client: %w", errdefs.ErrInvalid)
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 100 * time.Millisecond
	}
	if cfg.FullResync <= 0 {
		cfg.FullResync = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "proxy")
	factory := cfg.Informers
	if factory == nil {
		factory = informers.NewSharedInformerFactory(cfg.Client, 0)
		defer factory.Shutdown()
	}
	svcs, eps := factory.Core().V1().Services(), factory.Discovery().V1().EndpointSlices()
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	var synced []cache.InformerSynced
	for _, inf := range []cache.SharedIndexInformer{svcs.Informer(), eps.Informer()} {
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("proxy: watch: %w", err)
		}
		synced = append(synced, inf.HasSynced, reg.HasSynced)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("proxy: caches did not sync: %w", errdefs.ErrUnavailable)
	}
	full := time.NewTicker(cfg.FullResync)
	defer full.Stop()
	retry := cfg.MinInterval
	poke()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-full.C:
			if f, ok := s.(interface{ FullSync() }); ok {
				f.FullSync()
			}
			poke()
			continue
		case <-changed:
		}
		start := time.Now()
		services, err1 := svcs.Lister().List(labels.Everything())
		slices, err2 := eps.Lister().List(labels.Everything())
		err := err1
		if err == nil {
			err = err2
		}
		if err == nil {
			err = s.Sync(ctx, services, slices)
		}
		wait := cfg.MinInterval - time.Since(start)
		if err != nil {
			log.Warn("proxy sync failed; retrying", "err", err, "in", retry)
			wait, retry = retry, min(2*retry, 30*time.Second)
			poke()
		} else {
			retry = cfg.MinInterval
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
	}
}
