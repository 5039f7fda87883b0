package apiserver

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// metrics are the server's Prometheus collectors. A nil *metrics (no
// registry configured) records nothing.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	watchers *prometheus.GaugeVec
	lists    *prometheus.CounterVec
	fills    prometheus.Counter
}

// newMetrics registers the collectors in reg (nil: no metrics). The store
// gauges are read at scrape time.
func newMetrics(reg *prometheus.Registry, s *Server) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiserver_request_total",
			Help: "Counter of API requests by verb, resource, subresource and HTTP code.",
		}, []string{"verb", "resource", "subresource", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiserver_request_duration_seconds",
			Help:    "API request latency by verb and resource (watches: until the stream ends).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"verb", "resource", "subresource"}),
		watchers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiserver_registered_watchers",
			Help: "Number of open watch streams by resource.",
		}, []string{"resource"}),
		lists: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tugboat_watch_cache_lists_total",
			Help: "Lists by resource and source: the watch cache, or the store and the reason it served the list.",
		}, []string{"resource", "source", "reason"}),
		fills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tugboat_watch_cache_fills_total",
			Help: "Times the watch cache listed the store: at start, and after its watch was lost (compaction, falling behind).",
		}),
	}
	collectors := []prometheus.Collector{
		m.requests, m.duration, m.watchers, m.lists, m.fills, cacheObjects{s.cache},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tugboat_watch_cache_revision",
			Help: "Revision up to which the watch cache has applied every event.",
		}, func() float64 { return float64(s.cache.revision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tugboat_store_revision",
			Help: "Current store revision (the latest resourceVersion).",
		}, func() float64 { return float64(s.store.Revision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tugboat_store_compacted_revision",
			Help: "Revision of the last store compaction.",
		}, func() float64 { return float64(s.store.CompactedRevision()) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("apiserver: register metrics: %v: %w", err, errdefs.ErrInvalid)
		}
	}
	return m, nil
}

func (m *metrics) observe(l requestLabels, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(l.verb, l.resource, l.sub, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(l.verb, l.resource, l.sub).Observe(d.Seconds())
}

func (m *metrics) watchStarted(res *resource) {
	if m != nil {
		m.watchers.WithLabelValues(res.plural).Inc()
	}
}

func (m *metrics) watchEnded(res *resource) {
	if m != nil {
		m.watchers.WithLabelValues(res.plural).Dec()
	}
}

// listServed counts a list by what served it.
func (m *metrics) listServed(res *resource, source, reason string) {
	if m != nil {
		m.lists.WithLabelValues(res.plural, source, reason).Inc()
	}
}

func (m *metrics) cacheFilled() {
	if m != nil {
		m.fills.Inc()
	}
}

// cacheObjects reports the number of cached objects per resource at scrape
// time.
type cacheObjects struct{ c *watchCache }

var cacheObjectsDesc = prometheus.NewDesc("tugboat_watch_cache_objects",
	"Objects in the watch cache by resource.", []string{"resource"}, nil)

func (co cacheObjects) Describe(ch chan<- *prometheus.Desc) { ch <- cacheObjectsDesc }

func (co cacheObjects) Collect(ch chan<- prometheus.Metric) {
	for _, set := range co.c.order {
		ch <- prometheus.MustNewConstMetric(cacheObjectsDesc, prometheus.GaugeValue, float64(set.len()), set.res.plural)
	}
}
