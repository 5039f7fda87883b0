package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/tugboat-dev/tugboat/kernel/agent"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/authn"
	"github.com/tugboat-dev/tugboat/kernel/pki"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
	"github.com/tugboat-dev/tugboat/runtime"
)

func newServerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Serve the Kubernetes API over TLS from the kernel store",
		Long: `Serve the Kubernetes API over TLS from the kernel store.

On first start the server creates a CA, a serving certificate and an admin
client certificate under <data-dir>/pki and writes an admin kubeconfig; later
starts reuse them. SIGTERM or SIGINT shut it down gracefully (a second signal
exits at once).

Every flag is also a key of the --config file ("log-level" is log.level
there) and an environment variable (TUGBOAT_LOG_LEVEL); flags win over the
environment, which wins over the file, which wins over the defaults.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // a second signal gets the default behaviour: exit
			}()
			return runServer(ctx, cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	addFlags(cmd.Flags())
	return cmd
}

// newLogger builds the process logger from the log.* keys.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // validated by loadConfig
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runServer runs the API server until ctx is done, then shuts down
// gracefully: the listener closes, watches end, in-flight requests finish
// (up to shutdown-timeout), and the store closes.
func runServer(ctx context.Context, cfg Config, stdout, stderr io.Writer) (err error) {
	logger := newLogger(cfg, stderr)
	setClientGoLog(logger)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	certs, err := pki.Open(pki.Options{
		Dir:       filepath.Join(cfg.DataDir, "pki"),
		ExtraSANs: append(listenSANs(cfg.Listen), cfg.TLS.ExtraSANs...),
		Logger:    logger.With("component", "pki"),
	})
	if err != nil {
		return err
	}
	auth, err := authn.New(authn.Config{TokenFile: cfg.Auth.TokenFile, Logger: logger.With("component", "authn")})
	if err != nil {
		return fmt.Errorf("auth.token-file: %w", err)
	}

	window := cfg.Store.CompactionWindow
	if window == 0 {
		window = -1 // the store's "disabled"
	}
	st, err := tbadger.Open(tbadger.Options{
		Dir:              filepath.Join(cfg.DataDir, "store"),
		CompactionWindow: window,
		Logger:           logger.With("component", "store"),
	})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
		logger.Info("stopped")
	}()

	registry := prometheus.NewRegistry()
	registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	engine, err := runtime.NewEngine(ctx, runtime.Config{
		CacheDir: cfg.WasmCacheDir,
		Logger:   logger.With("component", "runtime"),
	})
	if err != nil {
		return fmt.Errorf("plugin runtime: %w", err)
	}
	defer func() {
		if cerr := engine.Close(context.Background()); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close plugin runtime: %w", cerr))
		}
	}()
	hooks, err := loadAdmission(ctx, engine, cfg.Admission.Plugins, logger)
	if err != nil {
		return err
	}
	api, err := apiserver.New(apiserver.Config{
		Store:        st,
		Logger:       logger.With("component", "apiserver"),
		MaxBodyBytes: cfg.API.MaxBodyBytes,
		Admission:    hooks,
		Registry:     registry,
		ServiceCIDR:  cfg.Network.serviceCIDR,
		NodePorts:    cfg.Network.nodePorts,
	})
	if err != nil {
		return fmt.Errorf("api server: %w", err)
	}
	metrics := promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry})
	handler := auth.Middleware(routeMetrics(metrics, api.Handler()))
	// Joining needs no credentials (the join token authenticates it), so
	// its endpoints sit in front of authentication.
	join, err := JoinHandler(cfg, certs)
	if err != nil {
		api.Close()
		return err
	}
	handler = routeJoin(join, handler)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		api.Close()
		return fmt.Errorf("listen: %w", err)
	}
	addr := ln.Addr().String()
	server, err := pki.ServerURL(addr)
	if err != nil {
		ln.Close()
		api.Close()
		return err
	}
	if err := certs.WriteAdminKubeconfig(cfg.WriteKubeconfig, server); err != nil {
		ln.Close()
		api.Close()
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         certs.ServerTLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          log.New(&httpErrorLog{logger: logger.With("component", "http")}, "", 0),
	}
	logger.Info("serving", "addr", addr, "url", server, "data_dir", cfg.DataDir, "kubeconfig", cfg.WriteKubeconfig)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	go announceReady(ctx, api, logger, stdout, server, cfg.WriteKubeconfig)

	env := componentEnv{
		Config:    cfg,
		Logger:    logger,
		Engine:    engine,
		Store:     st,
		Certs:     certs,
		APIServer: api,
		API:       api.Handler(),
		ServerURL: server,
	}
	var stops []func()
	stopComponents := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		stops = nil
	}
	defer stopComponents()
	for _, c := range components() {
		if c.start == nil {
			continue
		}
		stop, err := c.start(ctx, env)
		if err != nil && ctx.Err() != nil {
			// Shutdown began while the component was starting (loading
			// plugins, say): not a failure.
			logger.Info("shutdown during start", "component", c.name, "err", err)
			break
		}
		if err != nil {
			srv.Close()
			api.Close()
			return fmt.Errorf("start %s: %w", c.name, err)
		}
		stops = append(stops, stop)
	}

	select {
	case err := <-serveErr:
		api.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	stopComponents()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(shutdownCtx) }()
	api.Close() // ends watches, which Shutdown would otherwise wait for
	if err := <-shutdown; err != nil {
		logger.Warn("requests still running at the shutdown timeout; closing their connections", "err", err)
		srv.Close()
	}
	return nil
}

// routeJoin sends the node join endpoints to join and everything else to
// next.
func routeJoin(join, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == agent.JoinCAPath || r.URL.Path == agent.JoinPath {
			join.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// routeMetrics sends /metrics to metrics and everything else to api.
func routeMetrics(metrics, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			metrics.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// listenSANs returns the listen host as a serving certificate name when it
// is a specific address, so clients can use the address as configured.
func listenSANs(listen string) []string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return nil
	}
	return []string{host}
}

// announceReady waits for the API server's readiness, then logs "ready"
// with the time since the process started and prints how to use kubectl.
func announceReady(ctx context.Context, api *apiserver.Server, logger *slog.Logger, stdout io.Writer, server, kubeconfig string) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !api.Ready() {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	logger.Info("ready", "since_start", sinceProcessStart().Round(time.Millisecond), "url", server)
	fmt.Fprintf(stdout, `
Tugboat is serving the Kubernetes API at %s
Use it with kubectl (bin/kubectl is built by "make kubectl"; any kubectl works):

    export KUBECONFIG=%s
    bin/kubectl get ns

`, server, kubeconfig)
}

// httpErrorLog routes net/http's error log to slog: TLS handshake failures
// (clients that do not trust the CA, port scanners) at debug level,
// anything else at warn.
type httpErrorLog struct {
	logger *slog.Logger
}

func (l *httpErrorLog) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	if bytes.Contains(p, []byte("TLS handshake error")) {
		l.logger.Debug(msg)
	} else {
		l.logger.Warn(msg)
	}
	return len(p), nil
}
