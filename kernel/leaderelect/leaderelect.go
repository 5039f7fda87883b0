// Package leaderelect runs work only while this process holds a
// coordination.k8s.io/v1 Lease, as kube-scheduler and
// kube-controller-manager do (client-go's leader election): several
// servers on one store then never run the same component at once.
package leaderelect

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Config names the Lease and the timings.
type Config struct {
	// Client reaches the API server.
	Client *rest.Config
	// Namespace and Name of the Lease (Namespace defaults to
	// kube-system; Name is required).
	Namespace, Name string
	// Identity is this holder's name (default the host name); a
	// restarted process with the same identity takes its Lease back at
	// once.
	Identity string
	// LeaseDuration, RenewDeadline, RetryPeriod: client-go's timings
	// (defaults 15s, 10s, 2s, as kube-scheduler's).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// withDefaults fills the defaults and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Client == nil || c.Name == "" {
		return c, fmt.Errorf("leader election: client and lease name are required: %w", errdefs.ErrInvalid)
	}
	if c.Namespace == "" {
		c.Namespace = "kube-system"
	}
	if c.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "tugboat"
		}
		c.Identity = host
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = 10 * time.Second
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Run calls lead each time this process acquires the Lease, with a
// context that ends when it loses it (or ctx ends), and waits for lead to
// return before it competes again. It releases the Lease when ctx ends
// and returns nil then.
func Run(ctx context.Context, cfg Config, lead func(ctx context.Context)) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg.Client)
	if err != nil {
		return fmt.Errorf("leader election: clientset: %w", err)
	}
	// mu serializes terms: client-go starts OnStartedLeading in a
	// goroutine that may run after its term already ended (it then sees
	// its context done and does nothing), and Run waits on mu for a term
	// still running before it competes again.
	var mu sync.Mutex
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
				Client:     cs.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
			},
			LeaseDuration:   cfg.LeaseDuration,
			RenewDeadline:   cfg.RenewDeadline,
			RetryPeriod:     cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            cfg.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					mu.Lock()
					defer mu.Unlock()
					if ctx.Err() != nil {
						return
					}
					cfg.Logger.Info("leading", "lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
					lead(ctx)
				},
				OnStoppedLeading: func() {
					cfg.Logger.Info("not leading", "lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx)
		mu.Lock()
		mu.Unlock() //nolint:staticcheck // waits for a running term
	}
	return nil
}
