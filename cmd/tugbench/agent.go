package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	execrt "github.com/tugboat-dev/tugboat/kernel/dataplane/exec"
	"github.com/tugboat-dev/tugboat/kernel/pki"
)

// The agent benchmark runs `tugboat server` and, as a separate process, a
// `tugboat agent` node on the exec runtime (so its CPU and memory are the
// agent's alone), creates pods bound to that node and measures creation
// to Running, then the agent's RSS and CPU while it idles with the pods
// running.

const agentBenchNode = "bench-node"

type agentBenchConfig struct {
	pods   int
	settle time.Duration
	idle   time.Duration
}

func runAgentBench(args []string) (err error) {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	var cfg agentBenchConfig
	fs.IntVar(&cfg.pods, "pods", 100, "pods to create on the node")
	fs.DurationVar(&cfg.settle, "settle", 10*time.Second, "wait after the last pod runs before measuring idle")
	fs.DurationVar(&cfg.idle, "idle", 30*time.Second, "idle measurement window")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.pods < 1 || cfg.idle <= 0 {
		return fmt.Errorf("-pods must be positive and -idle positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "tugbench-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, err := buildTugboat(ctx, tmp)
	if err != nil {
		return err
	}
	srv, err := startServer(ctx, bin, tmp)
	if err != nil {
		return err
	}
	defer srv.stop()

	// The node's credentials, as a join would issue them.
	certs, err := pki.Open(pki.Options{Dir: filepath.Join(srv.dir, "data", "pki"), ExtraSANs: []string{"127.0.0.1"}})
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := certs.IssueClientCert("system:node:"+agentBenchNode, []string{"system:nodes"})
	if err != nil {
		return err
	}
	agentDir := filepath.Join(tmp, "agent")
	if err := os.MkdirAll(agentDir, 0o700); err != nil {
		return err
	}
	if err := pki.WriteKubeconfig(filepath.Join(agentDir, "node.kubeconfig"), srv.url, certs.CAPEM(), certPEM, keyPEM); err != nil {
		return err
	}
	// The agent runs from its own copy of the binary, as on another
	// machine: pages of a file mapped by both processes would count in
	// both resident sets and could not be trimmed.
	agentBin := filepath.Join(tmp, "tugboat-agent")
	if err := copyFile(bin, agentBin); err != nil {
		return err
	}
	agentCmd := exec.Command(agentBin, "agent", "--data-dir", agentDir, "--node-name", agentBenchNode, "--kubelet-port", "0", "--log-level", "warn")
	agentLog := &tailBuffer{max: 64 << 10}
	agentCmd.Stdout, agentCmd.Stderr = agentLog, agentLog
	if err := agentCmd.Start(); err != nil {
		return err
	}
	agentDone := make(chan struct{})
	go func() { agentCmd.Wait(); close(agentDone) }()
	defer func() {
		agentCmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-agentDone:
		case <-time.After(30 * time.Second):
			agentCmd.Process.Kill()
			<-agentDone
		}
		execrt.KillAll(filepath.Join(agentDir, "containers"))
		if err != nil {
			err = fmt.Errorf("%w\nagent output (tail):\n%s", err, agentLog.String())
		}
	}()

	cs, err := newBenchClient(srv.kubeconfig, &mediaTypes{})
	if err != nil {
		return err
	}
	progress("agent: waiting for node %s", agentBenchNode)
	if err := waitNodeReady(ctx, cs, agentBenchNode); err != nil {
		return err
	}
	lat, err := startPods(ctx, cs, cfg.pods)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	progress("agent: %d pods running; settling %v, then measuring idle for %v", cfg.pods, cfg.settle, cfg.idle)
	if err := sleepCtx(ctx, cfg.settle); err != nil {
		return err
	}
	pid := agentCmd.Process.Pid
	cpu0, t0 := procCPU(pid), time.Now()
	if err := sleepCtx(ctx, cfg.idle); err != nil {
		return err
	}
	cpuPct := 100 * float64(procCPU(pid)-cpu0) / float64(time.Since(t0))
	rss := procRSS(pid)
	anon := procMiBField(pid, "RssAnon")
	file := procMiBField(pid, "RssFile")

	fmt.Printf("\nagent benchmark: %d pods on one exec-runtime node (agent in its own process)\n", cfg.pods)
	fmt.Printf("  pod creation -> Running   p50 %v  p99 %v  max %v\n",
		percentile(lat, 0.50).Round(time.Millisecond), percentile(lat, 0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	fmt.Printf("  agent idle with %d pods   RSS %.1f MiB (anonymous %.1f, file-backed %.1f)  CPU %.2f%% of one core (over %v)\n",
		cfg.pods, rss, anon, file, cpuPct, cfg.idle)
	fmt.Printf("RESULT agent_pod_start_p99_ms=%d agent_idle_rss_mb=%.0f agent_idle_cpu_pct=%.2f\n",
		percentile(lat, 0.99).Milliseconds(), math.Ceil(rss), cpuPct)

	// Clean up through the API, so the agent stops the processes.
	zero := int64(0)
	cs.CoreV1().Pods("default").DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	return nil
}

func waitNodeReady(ctx context.Context, cs kubernetes.Interface, name string) error {
	deadline := time.Now().Add(serverTimeout)
	for time.Now().Before(deadline) {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
		} else if !apierrors.IsNotFound(err) {
			return err
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("node %s not Ready within %v", name, serverTimeout)
}

// startPods creates n pods (one at a time, as fast as the API takes them)
// and returns each one's time from the create call to the watch event
// that shows it Running.
func startPods(ctx context.Context, cs kubernetes.Interface, n int) ([]time.Duration, error) {
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var mu sync.Mutex
	created := make(map[string]time.Time, n)
	running := make(map[string]time.Time, n)
	allRunning := make(chan struct{})
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || p.Status.Phase != corev1.PodRunning {
				continue
			}
			now := time.Now()
			mu.Lock()
			if _, seen := running[p.Name]; !seen {
				running[p.Name] = now
				if len(running) == n {
					close(allRunning)
				}
			}
			mu.Unlock()
		}
	}()
	for i := range n {
		name := "agent-bench-" + strconv.Itoa(i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{NodeName: agentBenchNode, Containers: []corev1.Container{{
				Name: "c", Image: "busybox", Command: []string{"sleep", "3600"}}}},
		}
		mu.Lock()
		created[name] = time.Now()
		mu.Unlock()
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	select {
	case <-allRunning:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(2 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		return nil, fmt.Errorf("only %d of %d pods Running after 2m", len(running), n)
	}
	mu.Lock()
	defer mu.Unlock()
	out := make([]time.Duration, 0, n)
	for name, t := range created {
		out = append(out, running[name].Sub(t))
	}
	return out, nil
}

// procCPU is a process's user+system CPU time (10ms resolution).
func procCPU(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// procRSS is a process's VmRSS in MiB.
func procRSS(pid int) float64 { return procMiBField(pid, "VmRSS") }

// procMiBField is a "<n> kB" field of /proc/<pid>/status in MiB.
func procMiBField(pid int, field string) float64 {
	v := procField(fmt.Sprintf("/proc/%d/status", pid), field)
	kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64)
	if err != nil {
		return math.NaN()
	}
	return kb / 1024
}

// copyFile copies src to dst and syncs it (dirty page-cache pages of a
// fresh file could not be dropped from the agent's resident set).
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
