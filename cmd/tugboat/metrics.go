package main

import (
	"context"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/metrics"
)

// MetricsSection holds the metrics.* keys (in ControllersConfig).
type MetricsSection struct {
	Enabled  bool          `mapstructure:"enabled"`
	Interval time.Duration `mapstructure:"interval"`
}

// metricsComponent is the resource metrics pipeline: a scraper of the
// nodes' stats summaries whose results the API server serves as
// metrics.k8s.io (kubectl top, the HPA). Every server runs its own.
func metricsComponent() component {
	return component{
		name: "metrics",
		options: func() []option {
			return []option{
				{"metrics.enabled", true, "serve metrics.k8s.io (kubectl top, the HPA) from the nodes' stats, scraped every metrics.interval"},
				{"metrics.interval", metrics.DefaultInterval, "how often the nodes' stats summaries are scraped (metrics-server's resolution); CPU use is the rate between two scrapes"},
			}
		},
		complete: completeMetrics,
		start:    startMetrics,
	}
}

func completeMetrics(c *Config) []error {
	if m := c.Controllers.Metrics; m.Interval < time.Second {
		return []error{invalid("metrics.interval", m.Interval, "must be at least 1s")}
	}
	return nil
}

// metricsUser is the identity the scraper acts as.
var metricsUser = apiserver.User{Name: "system:tugboat:metrics", Groups: []string{"system:masters"}}

// startMetrics runs the scraper and serves its metrics.
func startMetrics(ctx context.Context, env componentEnv) (func(), error) {
	m := env.Config.Controllers.Metrics
	if !m.Enabled || env.APIServer == nil {
		return func() {}, nil
	}
	rc := env.Client(metricsUser)
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	s, err := metrics.New(metrics.Config{Client: cs, Interval: m.Interval, Logger: env.Logger.With("component", "metrics")})
	if err != nil {
		return nil, err
	}
	env.APIServer.SetMetricsSource(s)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(runCtx)
	}()
	return func() {
		cancel()
		<-done
		env.APIServer.SetMetricsSource(nil)
	}, nil
}
