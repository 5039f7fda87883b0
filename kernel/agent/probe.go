package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// prober runs one container attempt's startup, liveness and readiness
// probes, each in its own goroutine, and wakes the pod worker when a
// result changes.
type prober struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool   // startup probe passed (or none)
	ready   bool   // readiness probe passing (or none)
	kill    string // why the container must be restarted
}

// startProber starts the probes of container c (attempt id).
func startProber(ctx context.Context, w *podWorker, pod *corev1.Pod, c *corev1.Container, id string) *prober {
	ctx, cancel := context.WithCancel(ctx)
	p := &prober{cancel: cancel, started: c.StartupProbe == nil, ready: c.ReadinessProbe == nil}
	run := func(kind string, pr *corev1.Probe, on func(ok bool, msg string) bool) {
		if pr == nil {
			return
		}
		p.wg.Go(func() { p.loop(ctx, w, pod, c, id, kind, pr, on) })
	}
	run("Startup", c.StartupProbe, func(ok bool, msg string) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if ok {
			p.started = true
		} else {
			p.kill = "Startup probe failed: " + msg
		}
		return true // stop probing: done either way
	})
	run("Liveness", c.LivenessProbe, func(ok bool, msg string) bool {
		if ok {
			return false
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.kill = "Liveness probe failed: " + msg
		return true
	})
	run("Readiness", c.ReadinessProbe, func(ok bool, _ string) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.ready = ok
		return false
	})
	return p
}

func (p *prober) stop() {
	p.cancel()
	p.wg.Wait()
}

// results returns (started, ready).
func (p *prober) results() (bool, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started, p.started && p.ready
}

func (p *prober) killReason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kill
}

func (p *prober) isStarted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// loop probes every periodSeconds after initialDelaySeconds; a result
// counts once successThreshold successes or failureThreshold failures
// follow each other. on gets each counted result (and whether it changed
// nothing else) and returns true to stop the loop.
func (p *prober) loop(ctx context.Context, w *podWorker, pod *corev1.Pod, c *corev1.Container, id, kind string, pr *corev1.Probe, on func(bool, string) bool) {
	period := secs(pr.PeriodSeconds, 10)
	timeout := secs(pr.TimeoutSeconds, 1)
	failTh, okTh := int(pr.FailureThreshold), int(pr.SuccessThreshold)
	if failTh <= 0 {
		failTh = 3
	}
	if okTh <= 0 {
		okTh = 1
	}
	if !sleep(ctx, secs(pr.InitialDelaySeconds, 0)) {
		return
	}
	var oks, fails int
	last := -1 // last counted result: -1 none, 0 fail, 1 ok
	for {
		if kind == "Startup" || p.isStarted() {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			ok, msg := w.a.probe(pctx, pod, c, id, &pr.ProbeHandler)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if ok {
				oks, fails = oks+1, 0
			} else {
				oks, fails = 0, fails+1
			}
			var result = -1
			switch {
			case ok && oks >= okTh:
				result = 1
			case !ok && fails >= failTh:
				result = 0
			}
			if result >= 0 && result != last {
				last = result
				done := on(result == 1, msg)
				w.wake()
				if done {
					return
				}
			}
		}
		if !sleep(ctx, period) {
			return
		}
	}
}

func secs(n int32, def int) time.Duration {
	if n <= 0 {
		return time.Duration(def) * time.Second
	}
	return time.Duration(n) * time.Second
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// probe runs one probe action and reports success with a message for
// failures.
func (a *Agent) probe(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, h *corev1.ProbeHandler) (bool, string) {
	switch {
	case h.Exec != nil:
		code, err := a.rt.Exec(ctx, id, dataplane.ExecSpec{Command: h.Exec.Command, Stdout: io.Discard, Stderr: io.Discard})
		if err != nil {
			return false, err.Error()
		}
		if code != 0 {
			return false, fmt.Sprintf("command %q exited with %d", h.Exec.Command, code)
		}
		return true, ""
	case h.HTTPGet != nil:
		return a.probeHTTP(ctx, pod, c, h.HTTPGet)
	case h.TCPSocket != nil:
		port, err := resolvePort(h.TCPSocket.Port, c)
		if err != nil {
			return false, err.Error()
		}
		host := h.TCPSocket.Host
		if host == "" {
			host = a.podIP(pod) // as kubelet: the pod's IP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	case h.GRPC != nil:
		return false, "gRPC probes are not supported by this agent"
	}
	return false, "probe has no action"
}

// probeClient does not follow redirects off the probed host and skips TLS
// verification, as kubelet does.
var probeClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet probes do not verify
		DisableKeepAlives: true,
	},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 || req.URL.Host != via[0].URL.Host {
			return http.ErrUseLastResponse
		}
		return nil
	},
}

func (a *Agent) probeHTTP(ctx context.Context, pod *corev1.Pod, c *corev1.Container, g *corev1.HTTPGetAction) (bool, string) {
	port, err := resolvePort(g.Port, c)
	if err != nil {
		return false, err.Error()
	}
	host := g.Host
	if host == "" {
		host = a.podIP(pod) // as kubelet: the pod's IP
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
	if u.Path == "" {
		u.Path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "kube-probe/1.37")
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false, err.Error()
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	return false, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

// resolvePort resolves a numeric or named container port.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("port %q not found in container %s", p.StrVal, c.Name)
}
