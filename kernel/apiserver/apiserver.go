// Package apiserver serves the Kubernetes REST API over a store.Store.
//
// The Server speaks the Kubernetes wire formats for the built-in resources
// listed in registry.go: discovery (/api, /apis, aggregated discovery),
// /version, /healthz /livez /readyz, OpenAPI v2/v3, and the verbs get,
// list, watch, create, update, patch, delete and deletecollection with
// label and field selectors, paging, resourceVersion semantics, the status,
// scale and binding subresources, finalizers and Table output. Responses
// are JSON, or YAML or Kubernetes protobuf (get, list, watch) for clients
// that prefer them; request bodies are JSON, YAML or protobuf. Objects
// are stored as JSON under store.Key(resource, namespace, name); the
// store's ModRevision is the object's metadata.resourceVersion and is never
// stored inside the value (see object.go). A watch cache (cache.go) keeps
// the objects decoded in memory for lists, selectors and protobuf.
//
// Authentication is not done here: the caller wraps Handler and puts the
// authenticated user in the request context with WithUser. Every write runs
// the configured AdmissionHooks, mutating ones first.
//
// A Server is safe for concurrent use. Errors reach clients as metav1.Status
// objects with the Kubernetes reason and HTTP code (status.go).
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes is 0
// (Kubernetes' own limit is 3 MiB).
const DefaultMaxBodyBytes = 3 << 20

// Config configures a Server. It is validated once by New.
type Config struct {
	// Store holds the objects; required. The Server does not close it.
	Store store.Store
	// Logger receives request errors and lifecycle messages; nil means
	// slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes bounds request bodies (413 beyond it); 0 means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Admission hooks run on every write: all mutating hooks in order, then
	// all validating hooks.
	Admission []AdmissionHook
	// Registry receives the server's metrics; nil means no metrics.
	Registry *prometheus.Registry
	// ServiceCIDR is the IPv4 range Service ClusterIPs come from; the zero
	// Prefix means DefaultServiceCIDR.
	ServiceCIDR netip.Prefix
	// NodePorts is the range Service node ports come from; the zero value
	// means DefaultNodePorts.
	NodePorts PortRange
}

// Server is the API server. Create it with New; call Close when done.
type Server struct {
	store    store.Store
	log      *slog.Logger
	maxBody  int64
	mutating []AdmissionHook
	validate []AdmissionHook
	reg      *registry
	metrics  *metrics
	handler  http.Handler
	// cache holds decoded objects for lists, protobuf responses and
	// selectors (cache.go).
	cache *watchCache
	// services allocates Service ClusterIPs and node ports
	// (servicealloc.go).
	services *serviceAllocator

	// ctx ends when Close is called; every watch derives from it.
	ctx     context.Context
	cancel  context.CancelFunc
	watchMu sync.Mutex // orders beginWatch against Close
	watches sync.WaitGroup
	closed  atomic.Bool
	ready   atomic.Bool

	docsOnce sync.Once
	docs     *openapiDocs
}

// New validates cfg, creates the default namespaces (idempotently) and
// returns a ready Server. Errors are errdefs.ErrInvalid for a bad Config, or
// the store's error if the namespaces cannot be written.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("apiserver: no store: %w", errdefs.ErrInvalid)
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("apiserver: negative max body bytes %d: %w", cfg.MaxBodyBytes, errdefs.ErrInvalid)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !cfg.ServiceCIDR.IsValid() {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	if err := validateServiceCIDR(cfg.ServiceCIDR); err != nil {
		return nil, fmt.Errorf("apiserver: %w", err)
	}
	if cfg.NodePorts == (PortRange{}) {
		cfg.NodePorts = DefaultNodePorts
	}
	if err := cfg.NodePorts.validate(); err != nil {
		return nil, fmt.Errorf("apiserver: node ports: %w", err)
	}
	s := &Server{
		store:   cfg.Store,
		log:     cfg.Logger.With(logComponent, "apiserver"),
		maxBody: cfg.MaxBodyBytes,
		reg:     newRegistry(),
	}
	for i, h := range cfg.Admission {
		if h == nil {
			return nil, fmt.Errorf("apiserver: admission hook %d is nil: %w", i, errdefs.ErrInvalid)
		}
		if h.Mutating() {
			s.mutating = append(s.mutating, h)
		} else {
			s.validate = append(s.validate, h)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cache = newWatchCache(s.store, s.reg, s.log)
	s.services = newServiceAllocator(s.store, s.log, cfg.ServiceCIDR, cfg.NodePorts)
	m, err := newMetrics(cfg.Registry, s)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.metrics, s.cache.metrics = m, m
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	if err := s.bootstrap(ctx); err != nil {
		s.cancel()
		return nil, err
	}
	// The cache fills in the background; until it is live, the store
	// serves every read.
	s.cache.start(s.ctx)
	s.handler = s.routes()
	s.ready.Store(true)
	return s, nil
}

// Handler returns the HTTP handler serving the whole API.
func (s *Server) Handler() http.Handler { return s.handler }

// Ready reports whether the Server can serve: it was set up, is not closed,
// and its store answers reads.
func (s *Server) Ready() bool {
	if !s.ready.Load() || s.closed.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := s.store.Get(ctx, store.Key("namespaces", "", "default"))
	return err == nil || errors.Is(err, errdefs.ErrNotFound)
}

// Close ends every open watch (clients see the stream end and re-watch
// elsewhere), stops the watch cache and makes Ready false. Requests in
// flight finish normally (reads fall back to the store). It does not close
// the store. Close is idempotent.
func (s *Server) Close() {
	s.watchMu.Lock()
	already := s.closed.Swap(true)
	s.watchMu.Unlock()
	if already {
		return
	}
	s.cancel()
	s.watches.Wait()
	s.cache.wait()
	s.services.wait()
}

// defaultNamespaces exist from the start, as in Kubernetes.
var defaultNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

// bootstrap creates the default namespaces unless they exist.
func (s *Server) bootstrap(ctx context.Context) error {
	res := s.reg.lookup("", "v1", "namespaces")
	for _, name := range defaultNamespaces {
		_, err := s.store.Get(ctx, store.Key(res.storage, "", name))
		if err == nil {
			continue
		}
		if !errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("apiserver: read namespace %s: %w", name, err)
		}
		obj := res.newObj()
		setName(obj, name)
		req := &request{verb: verbCreate, res: res, name: name}
		if _, err := s.createObject(ctx, req, obj, writeOptions{internal: true}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("apiserver: create namespace %s: %w", name, err)
		}
	}
	return nil
}

// logComponent is the slog key naming the component.
const logComponent = "component"
