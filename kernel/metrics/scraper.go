// Package metrics is the kernel's resource metrics pipeline, the
// in-process counterpart of Kubernetes' metrics-server: a Scraper reads
// each Ready node's kubelet Summary API (stats/summary, through the API
// server's nodes/<name>/proxy) every interval, turns the cumulative CPU
// counters of two consecutive readings into rates, and keeps the latest
// per-pod and per-node CPU rate and memory working set in memory, as
// metrics.k8s.io/v1beta1 PodMetrics and NodeMetrics for the API server to
// serve. Nothing is stored: after a restart, metrics are back after two
// scrapes.
package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// DefaultInterval is metrics-server's default resolution.
const DefaultInterval = 15 * time.Second

// Config configures a Scraper.
type Config struct {
	// Client lists nodes and pods and reaches the nodes' stats through
	// the API server's node proxy.
	Client kubernetes.Interface
	// Interval between scrapes; default DefaultInterval.
	Interval time.Duration
	// Timeout of one node's scrape; default Interval/2 capped at 10s.
	Timeout time.Duration
	// Parallelism is how many nodes are scraped at once; default 8.
	Parallelism int
	Logger      *slog.Logger
}

// Scraper scrapes the nodes' stats and serves the resulting metrics. Its
// methods are safe for concurrent use.
type Scraper struct {
	cfg Config
	log *slog.Logger

	mu    sync.RWMutex
	state state
}

// state is what the scrapes have learnt: the last readings (to compute
// the next rates) and the metrics of the last scrape.
type state struct {
	containers map[string]sample // namespace/pod/container
	nodes      map[string]sample
	pods       []metricsv1beta1.PodMetrics // sorted by namespace/name
	nodeUsage  []metricsv1beta1.NodeMetrics
}

// New validates cfg and returns a Scraper.
func New(cfg Config) (*Scraper, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("metrics scraper: no client: %w", errdefs.ErrInvalid)
	}
	if cfg.Interval < 0 || cfg.Timeout < 0 || cfg.Parallelism < 0 {
		return nil, fmt.Errorf("metrics scraper: negative interval, timeout or parallelism: %w", errdefs.ErrInvalid)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = min(cfg.Interval/2, 10*time.Second)
	}
	if cfg.Parallelism == 0 {
		cfg.Parallelism = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scraper{cfg: cfg, log: cfg.Logger, state: state{containers: map[string]sample{}, nodes: map[string]sample{}}}, nil
}

// Run scrapes every interval until ctx ends; it returns nil then.
func (s *Scraper) Run(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	for {
		if err := s.Scrape(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("metrics scrape", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Scrape runs one round: every Ready node's stats summary is read and
// the metrics replaced. A node that cannot be read is logged and left
// out of this round's metrics.
func (s *Scraper) Scrape(ctx context.Context) error {
	nodes, err := s.cfg.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	pods, err := s.cfg.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	var ready []*corev1.Node
	for i := range nodes.Items {
		if nodeReady(&nodes.Items[i]) {
			ready = append(ready, &nodes.Items[i])
		}
	}
	results := make([]*statsv1alpha1.Summary, len(ready))
	received := make([]time.Time, len(ready))
	sem := make(chan struct{}, s.cfg.Parallelism)
	var wg sync.WaitGroup
	for i, n := range ready {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			sum, at, err := s.fetch(ctx, n.Name)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Debug("metrics: scrape node", "node", n.Name, "err", err)
				}
				return
			}
			results[i], received[i] = sum, at
		})
	}
	wg.Wait()
	in := input{nodeLabels: map[string]map[string]string{}, podLabels: map[string]map[string]string{}, summaries: map[string]*statsv1alpha1.Summary{},
		received: map[string]time.Time{}}
	for _, n := range ready {
		in.nodeLabels[n.Name] = n.Labels
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		in.podLabels[p.Namespace+"/"+p.Name] = p.Labels
	}
	for i, sum := range results {
		if sum != nil {
			in.summaries[ready[i].Name] = sum
			in.received[ready[i].Name] = received[i]
		}
	}
	s.mu.Lock()
	s.state = s.state.next(in)
	s.mu.Unlock()
	return nil
}

// fetch reads node's stats summary and returns it with when it arrived.
func (s *Scraper) fetch(ctx context.Context, node string) (*statsv1alpha1.Summary, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	raw, err := s.cfg.Client.CoreV1().RESTClient().Get().
		Resource("nodes").Name(node).SubResource("proxy").Suffix("stats", "summary").
		SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("node %s stats summary: %w: %w", node, errdefs.ErrUnavailable, err)
	}
	received := time.Now()
	var sum statsv1alpha1.Summary
	if err := json.Unmarshal(raw, &sum); err != nil {
		return nil, time.Time{}, fmt.Errorf("node %s stats summary: %w: %w", node, errdefs.ErrInvalid, err)
	}
	return &sum, received, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodMetrics returns the metrics of the pods in namespace (all
// namespaces for ""), sorted by namespace and name. The caller must not
// modify them.
func (s *Scraper) PodMetrics(namespace string) []metricsv1beta1.PodMetrics {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if namespace == "" {
		return s.state.pods
	}
	lo := sort.Search(len(s.state.pods), func(i int) bool { return s.state.pods[i].Namespace >= namespace })
	hi := lo
	for hi < len(s.state.pods) && s.state.pods[hi].Namespace == namespace {
		hi++
	}
	return s.state.pods[lo:hi]
}

// NodeMetrics returns the metrics of the nodes, sorted by name. The
// caller must not modify them.
func (s *Scraper) NodeMetrics() []metricsv1beta1.NodeMetrics {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.state.nodeUsage
}

// cpuQuantity renders nanocores as metrics-server does ("1234567n").
func cpuQuantity(nanocores uint64) resource.Quantity {
	return *resource.NewScaledQuantity(int64(nanocores), resource.Nano)
}

func memoryQuantity(bytes uint64) resource.Quantity {
	return *resource.NewQuantity(int64(bytes), resource.BinarySI)
}
