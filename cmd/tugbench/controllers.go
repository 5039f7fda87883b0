package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// controllersConfig are the flags of `tugbench controllers`.
type controllersConfig struct {
	deployments, replicas, nodes int
	pluginsDir                   string
	bind                         bool
	workers                      int
	timeout                      time.Duration
}

// runControllers measures the controllers: Deployments x replicas on sim
// nodes, from the creates to every pod Running (pod startup latency as
// Kubernetes measures it: creation to Running, observed via watch).
func runControllers(args []string) error {
	var cfg controllersConfig
	fs := flag.NewFlagSet("controllers", flag.ContinueOnError)
	fs.IntVar(&cfg.deployments, "deployments", 100, "Deployments to create")
	fs.IntVar(&cfg.replicas, "replicas", 10, "replicas per Deployment")
	fs.IntVar(&cfg.nodes, "nodes", 100, "simulated nodes")
	fs.StringVar(&cfg.pluginsDir, "plugins-dir", "bin/plugins", "directory of the built controller plugins (make plugins)")
	fs.BoolVar(&cfg.bind, "bind", false, "also bind pods round-robin from the benchmark (a stand-in for a server without a scheduler)")
	fs.IntVar(&cfg.workers, "workers", 0, "controllers.workers of the server (0: its default)")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.deployments < 1 || cfg.replicas < 1 || cfg.nodes < 1 {
		return errors.New("-deployments, -replicas and -nodes must be positive")
	}
	plugins, err := filepath.Abs(cfg.pluginsDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(plugins, "deployment.wasm")); err != nil {
		return fmt.Errorf("controller plugins: %w (run make plugins)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	tmp, err := os.MkdirTemp("", "tugbench-controllers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, err := buildTugboat(ctx, tmp)
	if err != nil {
		return err
	}
	// Shortened node-lifecycle timings for the node failure measurement;
	// the log settings are the ones startServer needs.
	config := filepath.Join(tmp, "controllers.yaml")
	if err := os.WriteFile(config, []byte(benchServerConfig+`controllers:
  plugins:
    - name: node-lifecycle
      path: `+filepath.Join(plugins, "node-lifecycle.wasm")+`
      settings: {"gracePeriod": "2s", "evictionTimeout": "1s"}
`), 0o600); err != nil {
		return err
	}
	extra := []string{"--config", config, "--sim-nodes", fmt.Sprint(cfg.nodes), "--disable-agent",
		"--controllers-plugins-dir", plugins, "--sim-renew-interval", "500ms"}
	if cfg.workers > 0 {
		extra = append(extra, "--controllers-workers", fmt.Sprint(cfg.workers))
	}
	srv, err := startServerArgs(ctx, bin, tmp, extra...)
	if err != nil {
		return err
	}
	defer srv.stop()
	cs, err := newBenchClient(srv.kubeconfig, &mediaTypes{})
	if err != nil {
		return err
	}
	if err := waitNodes(ctx, cs, cfg.nodes); err != nil {
		return err
	}
	progress("controllers: %d sim nodes ready; warming up (plugins compile, caches sync)", cfg.nodes)
	if err := warmUp(ctx, cs); err != nil {
		return err
	}
	return benchDeployments(ctx, cfg, srv, cs)
}

// startServerArgs is startServer with extra server flags.
func startServerArgs(ctx context.Context, bin, parent string, extra ...string) (*serverProc, error) {
	wrapper := filepath.Join(parent, "tugboat-wrapper")
	script := "#!/bin/sh\nexec " + shellQuote(bin) + " \"$@\""
	for _, a := range extra {
		script += " " + shellQuote(a)
	}
	if err := os.WriteFile(wrapper, []byte(script+"\n"), 0o755); err != nil {
		return nil, err
	}
	return startServer(ctx, wrapper, parent)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// waitNodes waits for n Ready nodes.
func waitNodes(ctx context.Context, cs kubernetes.Interface, n int) error {
	for {
		l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			ready := 0
			for _, node := range l.Items {
				for _, c := range node.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
			if ready >= n {
				return nil
			}
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("waiting for %d ready nodes: %w", n, err)
		}
	}
}

// warmUp runs one Deployment to Running and deletes it, so that the
// measured run does not include plugin compilation or cache syncs.
func warmUp(ctx context.Context, cs kubernetes.Interface) error {
	d := benchDeployment(0, 1)
	d.Name = "warm-up"
	d.Spec.Selector.MatchLabels = map[string]string{"app": "warm-up"}
	d.Spec.Template.Labels = map[string]string{"app": "warm-up"}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=warm-up"})
		if err == nil && len(l.Items) == 1 && l.Items[0].Status.Phase == corev1.PodRunning {
			break
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("warm-up pod not Running: %w", err)
		}
	}
	if err := cs.AppsV1().Deployments("default").Delete(ctx, "warm-up", metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=warm-up"})
		if err == nil && len(l.Items) == 0 {
			return nil
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("warm-up pod not deleted: %w", err)
		}
	}
}

// podTimes records, per pod, when the watch first saw it and when it saw
// it Running.
type podTimes struct {
	mu      sync.Mutex
	seen    map[types.UID]time.Time
	running map[types.UID]time.Time
	done    chan struct{}
	want    int
}

func (p *podTimes) observe(pod *corev1.Pod, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.seen[pod.UID]; !ok {
		p.seen[pod.UID] = now
	}
	if pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp == nil {
		if _, ok := p.running[pod.UID]; !ok {
			p.running[pod.UID] = now
			if len(p.running) == p.want {
				close(p.done)
			}
		}
	}
}

func benchDeployments(ctx context.Context, cfg controllersConfig, srv *serverProc, cs *kubernetes.Clientset) error {
	total := cfg.deployments * cfg.replicas
	times := &podTimes{seen: map[types.UID]time.Time{}, running: map[types.UID]time.Time{}, done: make(chan struct{}), want: total}
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	defer w.Stop()
	var binds atomic.Int64
	unbound := make(chan *corev1.Pod, total)
	go func() {
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			times.observe(pod, time.Now())
			if cfg.bind && ev.Type == watch.Added && pod.Spec.NodeName == "" {
				unbound <- pod
			}
		}
	}()
	var wg sync.WaitGroup
	if cfg.bind {
		for i := range 8 {
			wg.Go(func() {
				next := i
				for {
					select {
					case <-ctx.Done():
						return
					case <-times.done:
						return
					case pod := <-unbound:
						b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
							Target: corev1.ObjectReference{Kind: "Node", Name: fmt.Sprintf("sim-%d", next%cfg.nodes)}}
						if cs.CoreV1().Pods("default").Bind(ctx, b, metav1.CreateOptions{}) == nil {
							binds.Add(1)
						}
						next += 8
					}
				}
			})
		}
	}
	cpu0 := srv.cpuTime()
	start := time.Now()
	progress("controllers: creating %d deployments x %d replicas", cfg.deployments, cfg.replicas)
	errs := make(chan error, cfg.deployments)
	var cw sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range cfg.deployments {
		sem <- struct{}{}
		cw.Go(func() {
			defer func() { <-sem }()
			if _, err := cs.AppsV1().Deployments("default").Create(ctx, benchDeployment(i, cfg.replicas), metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		})
	}
	cw.Wait()
	created := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("create deployment: %w", err)
	}
	select {
	case <-times.done:
	case <-ctx.Done():
		times.mu.Lock()
		n := len(times.running)
		times.mu.Unlock()
		return fmt.Errorf("only %d of %d pods Running before the timeout", n, total)
	}
	elapsed := time.Since(start)
	cpu := srv.cpuTime() - cpu0
	wg.Wait()

	times.mu.Lock()
	lat := make([]time.Duration, 0, len(times.running))
	for uid, r := range times.running {
		lat = append(lat, r.Sub(times.seen[uid]))
	}
	times.mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(math.Ceil(p*float64(len(lat))))-1] }
	fmt.Printf("controllers: %d Deployments x %d replicas on %d sim nodes (binding: %s)\n", cfg.deployments, cfg.replicas, cfg.nodes,
		map[bool]string{true: fmt.Sprintf("benchmark stand-in, %d binds", binds.Load()), false: "server scheduler"}[cfg.bind])
	fmt.Printf("  creates issued in        %v\n", created.Round(time.Millisecond))
	fmt.Printf("  all %d pods Running in %v\n", total, elapsed.Round(time.Millisecond))
	fmt.Printf("  pod startup p50 %v  p99 %v  max %v (watch ADDED -> Running)\n",
		pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	fmt.Printf("  server CPU during the run %.2f s\n", cpu.Seconds())
	if d, n, err := nodeFailure(ctx, cs, total); err != nil {
		fmt.Printf("  node failure -> replacement: %v\n", err)
	} else {
		fmt.Printf("  node failure -> replacement: sim-0 stopped; its %d pods replaced and Running elsewhere after %v (grace 2s, eviction 1s, lease renew 500ms)\n", n, d.Round(time.Millisecond))
	}
	fmt.Printf("RESULT pods_running_s=%.2f pod_startup_p99_ms=%d controller_cpu_s=%.2f\n",
		elapsed.Seconds(), pct(0.99).Milliseconds(), cpu.Seconds())
	return nil
}

// nodeFailure stops sim-0's heartbeat and returns how long it took until
// total pods run on the other nodes, and how many pods sim-0 had.
func nodeFailure(ctx context.Context, cs kubernetes.Interface, total int) (time.Duration, int, error) {
	count := func() (onFailed, elsewhere int, err error) {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, 0, err
		}
		for _, p := range l.Items {
			switch {
			case p.Spec.NodeName == "sim-0":
				onFailed++
			case p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil:
				elsewhere++
			}
		}
		return onFailed, elsewhere, nil
	}
	victims, _, err := count()
	if err != nil {
		return 0, 0, err
	}
	patch := []byte(`{"metadata":{"annotations":{"sim.tugboat.dev/stopped":"true"}}}`)
	start := time.Now()
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "sim-0", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return 0, 0, err
	}
	for {
		if _, elsewhere, err := count(); err == nil && elsewhere >= total {
			return time.Since(start), victims, nil
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return 0, victims, fmt.Errorf("pods of the failed node not replaced: %w", err)
		}
	}
}

func benchDeployment(i, replicas int) *appsv1.Deployment {
	name := fmt.Sprintf("bench-%03d", i)
	labels := map[string]string{"app": name}
	r := int32(replicas)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &r,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
}
