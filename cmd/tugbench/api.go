package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// The api workload's namespaces: the first -list-pods pods go to
// listNamespace, which the LIST workloads read; pods created beyond that go
// to extraNamespace, so the big LIST returns exactly -list-pods pods.
const (
	listNamespace  = "bench"
	extraNamespace = "bench-extra"
	// podShards is the number of values of the pods' "shard" label; a
	// label-selected LIST of one shard returns 1/podShards of the pods.
	podShards = 100
	// serverTimeout bounds a server's start and its graceful stop.
	serverTimeout = time.Minute
)

// apiConfig holds the api command's flags, validated by parseAPIFlags.
type apiConfig struct {
	duration   time.Duration
	warmup     time.Duration
	clients    []int
	podSize    int
	listPods   int
	listRounds int
	starts     int
	idle       time.Duration
	tugboat    string
	dir        string
}

func parseAPIFlags(args []string) (apiConfig, error) {
	var cfg apiConfig
	fs := flag.NewFlagSet("tugbench api", flag.ContinueOnError)
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time of each create, get and label-selected list workload")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each of those workloads")
	clients := fs.String("clients", "1,32", "comma-separated concurrent client counts for the create workload")
	fs.IntVar(&cfg.podSize, "pod-size", 2048, "bytes of a created pod's JSON (labels and annotations padded)")
	fs.IntVar(&cfg.listPods, "list-pods", 10000, "pods in the namespace that the full LIST reads")
	fs.IntVar(&cfg.listRounds, "list-rounds", 5, "full LISTs timed; the median is reported")
	fs.IntVar(&cfg.starts, "starts", 3, "server starts on fresh data dirs for ready_ms and idle_rss_mb (medians)")
	fs.DurationVar(&cfg.idle, "idle", 3*time.Second, "idle time after ready before reading the server's RSS")
	fs.StringVar(&cfg.tugboat, "tugboat", "", "tugboat binary to run; empty builds ./cmd/tugboat into a temp dir")
	fs.StringVar(&cfg.dir, "dir", os.TempDir(), "parent directory of the temporary data directories")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() != 0 {
		return cfg, fmt.Errorf("unexpected arguments %q: %w", fs.Args(), errdefs.ErrInvalid)
	}
	var err error
	if cfg.clients, err = positiveInts("clients", *clients); err != nil {
		return cfg, err
	}
	switch {
	case cfg.duration <= 0 || cfg.warmup < 0 || cfg.idle < 0:
		return cfg, fmt.Errorf("-duration must be positive, -warmup and -idle not negative: %w", errdefs.ErrInvalid)
	case cfg.listPods < podShards:
		return cfg, fmt.Errorf("-list-pods %d: want at least %d: %w", cfg.listPods, podShards, errdefs.ErrInvalid)
	case cfg.listRounds < 1 || cfg.starts < 1:
		return cfg, fmt.Errorf("-list-rounds and -starts: want at least 1: %w", errdefs.ErrInvalid)
	case cfg.podSize < 1 || cfg.podSize > 1<<20:
		return cfg, fmt.Errorf("-pod-size %d: want 1 to 1048576: %w", cfg.podSize, errdefs.ErrInvalid)
	}
	return cfg, nil
}

// apiResults is everything the api command measured.
type apiResults struct {
	readyMs   []float64 // per start: exec to the first 200 from /readyz
	idleRSS   []float64 // per start: MiB, after cfg.idle of idleness
	creates   []loadResult
	topUp     time.Duration // creating the pods the creates left missing
	get       loadResult
	list100   loadResult
	list10k   []time.Duration // typed LISTs through client-go
	listRaw   []time.Duration // the same LIST read as raw bytes
	listBytes int
	rssAfter  [3]float64 // MiB after the workloads: VmRSS, RssAnon, RssFile
	hwm       float64    // MiB, peak RSS
	wire      string     // response media types seen
}

// runAPI starts `tugboat server` as a child process, measures readiness
// and idle memory over several starts, then drives pods through client-go
// and prints the results.
func runAPI(args []string) (err error) {
	cfg, err := parseAPIFlags(args)
	if err != nil {
		return err
	}
	// On Ctrl-C the workloads stop, and the servers and temp dirs are still
	// removed by the deferred cleanups.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	printAPIMachine(os.Stdout, cfg)

	bin := cfg.tugboat
	if bin == "" {
		binDir, err := os.MkdirTemp(cfg.dir, "tugbench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(binDir)
		if bin, err = buildTugboat(ctx, binDir); err != nil {
			return err
		}
	}
	var res apiResults
	var srv *serverProc
	defer func() {
		if srv != nil {
			if serr := srv.stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	for i := range cfg.starts {
		progress("api: start %d of %d", i+1, cfg.starts)
		s, err := startServer(ctx, bin, cfg.dir)
		if err != nil {
			return err
		}
		srv = s
		if err := sleepCtx(ctx, cfg.idle); err != nil {
			return err
		}
		res.readyMs = append(res.readyMs, float64(s.ready)/float64(time.Millisecond))
		res.idleRSS = append(res.idleRSS, s.rssMiB())
		if i < cfg.starts-1 {
			srv = nil
			if err := s.stop(); err != nil {
				return err
			}
		}
	}
	if err := runAPIWorkloads(ctx, cfg, srv, &res); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w\nserver output (tail):\n%s", err, srv.tail.String())
	}
	res.rssAfter = [3]float64{srv.rssMiB(), srv.procMiB("RssAnon"), srv.procMiB("RssFile")}
	res.hwm = srv.procMiB("VmHWM")
	printAPIResults(os.Stdout, cfg, &res)
	fmt.Printf("load average at the end: %s\n", loadAverage())
	fmt.Println()
	fmt.Println(formatAPIResult(&res))
	return nil
}

// runAPIWorkloads runs the creates, tops the list namespace up to
// cfg.listPods pods, and times GETs and LISTs.
func runAPIWorkloads(ctx context.Context, cfg apiConfig, srv *serverProc, res *apiResults) error {
	wire := &mediaTypes{}
	cs, err := newBenchClient(srv.kubeconfig, wire)
	if err != nil {
		return err
	}
	for _, ns := range []string{listNamespace, extraNamespace} {
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	pods, err := newPodMaker(cfg.podSize, cfg.listPods)
	if err != nil {
		return err
	}
	for _, n := range cfg.clients {
		progress("api: creates with %d clients for %s after %s warm-up", n, cfg.duration, cfg.warmup)
		r, err := runLoad(ctx, srv, n, cfg.warmup, cfg.duration, func(ctx context.Context) error {
			return pods.create(ctx, cs)
		})
		if err != nil {
			return fmt.Errorf("creates with %d clients: %w", n, err)
		}
		r.name = "create pod"
		res.creates = append(res.creates, r)
	}
	if missing := cfg.listPods - int(pods.seq.Load()); missing > 0 {
		progress("api: creating %d more pods to reach %d in namespace %s", missing, cfg.listPods, listNamespace)
		start := time.Now()
		if err := topUp(ctx, cs, pods, 32); err != nil {
			return err
		}
		res.topUp = time.Since(start)
	}
	progress("api: GETs and label-selected LISTs, 1 client, %s each", cfg.duration)
	if res.get, err = runLoad(ctx, srv, 1, cfg.warmup, cfg.duration, func(ctx context.Context) error {
		_, err := cs.CoreV1().Pods(listNamespace).Get(ctx, podName(rand.IntN(cfg.listPods)), metav1.GetOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("gets: %w", err)
	}
	res.get.name = "get pod"
	if res.list100, err = runLoad(ctx, srv, 1, cfg.warmup, cfg.duration, func(ctx context.Context) error {
		return listShard(ctx, cs, cfg.listPods, rand.IntN(podShards))
	}); err != nil {
		return fmt.Errorf("label-selected lists: %w", err)
	}
	res.list100.name = fmt.Sprintf("list %d of %d pods by label", cfg.listPods/podShards, cfg.listPods)
	progress("api: %d full LISTs of %d pods", cfg.listRounds, cfg.listPods)
	if err := timeFullLists(ctx, cs, cfg, res); err != nil {
		return err
	}
	res.wire = wire.String()
	return nil
}

// buildTugboat builds cmd/tugboat into dir and returns the binary's path.
func buildTugboat(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "tugboat")
	goTool := cmp.Or(os.Getenv("GO"), "go")
	progress("api: %s build -o %s ./cmd/tugboat", goTool, bin)
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/tugboat-dev/tugboat/cmd/tugboat")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build tugboat: %w", err)
	}
	return bin, nil
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// serverProc is a running `tugboat server` child process with its own
// temp dir (data dir, config file, kubeconfig).
type serverProc struct {
	cmd        *exec.Cmd
	dir        string
	kubeconfig string
	url        string
	ready      time.Duration // exec to the first 200 from /readyz
	tail       *tailBuffer   // the last of its stdout and stderr
	exited     chan struct{}
}

// benchServerConfig is the --config file of the benchmarked server: the
// defaults, with JSON logs so the listen address can be read reliably.
const benchServerConfig = "log:\n  level: info\n  format: json\n"

// startServer runs `tugboat server` on a fresh data dir under parent with
// --listen 127.0.0.1:0, and returns once /readyz answers 200 (polled every
// 5 ms). TUGBOAT_* variables are not passed on, so only the config file and
// flags configure it.
func startServer(ctx context.Context, bin, parent string) (s *serverProc, err error) {
	dir, err := os.MkdirTemp(parent, "tugbench-api-")
	if err != nil {
		return nil, err
	}
	s = &serverProc{dir: dir, kubeconfig: filepath.Join(dir, "admin.kubeconfig"), tail: &tailBuffer{max: 64 << 10}, exited: make(chan struct{})}
	config := filepath.Join(dir, "tugboat.yaml")
	if err := os.WriteFile(config, []byte(benchServerConfig), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.cmd = exec.Command(bin, "server", "--config", config, "--data-dir", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--write-kubeconfig", s.kubeconfig)
	s.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "TUGBOAT_") })
	s.cmd.Stdout = s.tail
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	defer func() {
		if err != nil {
			s.stop()
			if ctx.Err() == nil {
				err = fmt.Errorf("%w\nserver output (tail):\n%s", err, s.tail.String())
			}
		}
	}()
	addr := make(chan string, 1)
	go s.readLogs(stderr, addr)
	select {
	case a := <-addr:
		s.url = "https://" + a
	case <-s.exited:
		return s, fmt.Errorf("tugboat server exited before serving: %v", s.cmd.ProcessState)
	case <-ctx.Done():
		return s, ctx.Err()
	case <-time.After(serverTimeout):
		return s, fmt.Errorf("tugboat server did not log its address within %v", serverTimeout)
	}
	if err := s.waitReady(ctx, start); err != nil {
		return s, err
	}
	return s, nil
}

// readLogs copies the server's JSON log lines into the tail, sends the
// address of the "serving" line on addr, and reaps the process at EOF.
func (s *serverProc) readLogs(stderr io.Reader, addr chan<- string) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		s.tail.Write(line)
		s.tail.Write([]byte{'\n'})
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "serving" && rec.Addr != "" {
			select {
			case addr <- rec.Addr:
			default:
			}
		}
	}
	io.Copy(s.tail, stderr)
	s.cmd.Wait()
	close(s.exited)
}

// waitReady polls GET /readyz every 5 ms with the admin credentials until
// it answers 200, and records the time since start.
func (s *serverProc) waitReady(ctx context.Context, start time.Time) error {
	rc, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", s.kubeconfig, err)
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	hc.Timeout = 5 * time.Second
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(serverTimeout)
	for {
		resp, err := hc.Get(s.url + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.ready = time.Since(start)
				return nil
			}
		}
		select {
		case <-tick.C:
		case <-s.exited:
			return fmt.Errorf("tugboat server exited before it was ready: %v", s.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("GET /readyz not 200 within %v (last: %v)", serverTimeout, err)
		}
	}
}

// stop ends the server with SIGTERM (SIGKILL if it has not exited within
// serverTimeout) and removes its temp dir. It is safe to call more than
// once.
func (s *serverProc) stop() error {
	defer os.RemoveAll(s.dir)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return nil
	case <-time.After(serverTimeout):
		s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("tugboat server ignored SIGTERM for %v; killed", serverTimeout)
	}
}

// rssMiB returns the server's resident set size (VmRSS) in MiB.
func (s *serverProc) rssMiB() float64 { return s.procMiB("VmRSS") }

// procMiB returns a "<n> kB" field of /proc/<pid>/status in MiB, or NaN.
func (s *serverProc) procMiB(field string) float64 {
	v := procField(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid), field)
	kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64)
	if err != nil {
		return math.NaN()
	}
	return kb / 1024
}

// cpuTime returns the user+system CPU time the server has used so far, from
// /proc/<pid>/stat (10 ms resolution), or 0 if unavailable.
func (s *serverProc) cpuTime() time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0
	}
	// After the command name: field 3 is at index 0; utime and stime are
	// fields 14 and 15.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// selfCPUTime returns the CPU time this process (the clients) has used.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// newBenchClient returns an admin clientset with client-side throttling
// effectively off. All goroutines share it, and with it one HTTP/2
// connection, as a controller's goroutines do. Response media types are
// counted in wire.
func newBenchClient(kubeconfig string, wire *mediaTypes) (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	rc.QPS, rc.Burst = 10000, 10000
	rc.UserAgent = "tugbench"
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return wire.wrap(rt) })
	return kubernetes.NewForConfig(rc)
}

// mediaTypes counts the Content-Type of responses; safe for concurrent use.
type mediaTypes struct {
	mu     sync.Mutex
	counts map[string]int
}

func (m *mediaTypes) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err == nil {
			ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
			m.mu.Lock()
			if m.counts == nil {
				m.counts = map[string]int{}
			}
			m.counts[ct]++
			m.mu.Unlock()
		}
		return resp, err
	})
}

// String lists the media types seen with their counts.
func (m *mediaTypes) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var parts []string
	for t, n := range m.counts {
		parts = append(parts, fmt.Sprintf("%s (%d)", cmp.Or(t, "none"), n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// podMaker creates the benchmark's pods: pod n is named podName(n), has the
// label shard=s<n mod podShards>, and lives in listNamespace if n <
// listPods, else in extraNamespace. A padding annotation makes each pod's
// JSON size bytes.
type podMaker struct {
	template corev1.Pod
	listPods int
	seq      atomic.Int64 // pods handed out so far
}

func podName(n int) string { return fmt.Sprintf("bench-%07d", n) }

func newPodMaker(size, listPods int) (*podMaker, error) {
	m := &podMaker{listPods: listPods}
	m.template = corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      podName(0),
			Namespace: listNamespace,
			Labels:    map[string]string{"app": "tugbench", "tier": "backend", "shard": "s00"},
			Annotations: map[string]string{
				"tugbench.tugboat.dev/purpose": "api benchmark pod",
				"tugbench.tugboat.dev/padding": "",
			},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "registry.k8s.io/pause:3.10",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Env:   []corev1.EnvVar{{Name: "MODE", Value: "bench"}},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("10m"),
					corev1.ResourceMemory: resource.MustParse("16Mi"),
				}},
			}},
		},
	}
	data, err := json.Marshal(&m.template)
	if err != nil {
		return nil, err
	}
	if pad := size - len(data); pad > 0 {
		m.template.Annotations["tugbench.tugboat.dev/padding"] = strings.Repeat("x", pad)
	}
	return m, nil
}

// create creates the next pod.
func (m *podMaker) create(ctx context.Context, cs kubernetes.Interface) error {
	n := int(m.seq.Add(1) - 1)
	pod := m.template // the maps and slices are shared read-only
	pod.Name = podName(n)
	if n >= m.listPods {
		pod.Namespace = extraNamespace
	}
	pod.Labels = map[string]string{"app": "tugbench", "tier": "backend", "shard": fmt.Sprintf("s%02d", n%podShards)}
	if _, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, &pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// topUp creates pods with n clients until listNamespace holds m.listPods.
func topUp(ctx context.Context, cs kubernetes.Interface, m *podMaker, n int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil && m.seq.Load() < int64(m.listPods) {
				if err := m.create(ctx, cs); err != nil {
					cancel(err)
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// listShard lists one shard's pods by label selector and checks the count.
func listShard(ctx context.Context, cs kubernetes.Interface, listPods, shard int) error {
	sel := fmt.Sprintf("shard=s%02d", shard)
	list, err := cs.CoreV1().Pods(listNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return fmt.Errorf("list %s: %w", sel, err)
	}
	want := listPods / podShards
	if shard < listPods%podShards {
		want++
	}
	if len(list.Items) != want {
		return fmt.Errorf("list %s: %d pods, want %d", sel, len(list.Items), want)
	}
	return nil
}

// timeFullLists times cfg.listRounds LISTs of listNamespace (no limit)
// through the typed client, then as many reading the raw response only.
func timeFullLists(ctx context.Context, cs *kubernetes.Clientset, cfg apiConfig, res *apiResults) error {
	for range cfg.listRounds {
		start := time.Now()
		list, err := cs.CoreV1().Pods(listNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list all pods: %w", err)
		}
		res.list10k = append(res.list10k, time.Since(start))
		if len(list.Items) != cfg.listPods {
			return fmt.Errorf("list all pods: %d pods, want %d", len(list.Items), cfg.listPods)
		}
	}
	for range cfg.listRounds {
		start := time.Now()
		raw, err := cs.CoreV1().RESTClient().Get().Namespace(listNamespace).Resource("pods").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("list all pods (raw): %w", err)
		}
		res.listRaw = append(res.listRaw, time.Since(start))
		res.listBytes = len(raw)
	}
	slices.Sort(res.list10k)
	slices.Sort(res.listRaw)
	return nil
}

// loadResult is one closed-loop workload: n clients issuing one operation
// back to back.
type loadResult struct {
	name       string
	clients    int
	elapsed    time.Duration   // from the end of the warm-up to the last measured op's end
	lat        []time.Duration // every measured op's latency, sorted
	ops        int             // all ops, warm-up included
	serverCPU  time.Duration   // server CPU over all ops
	clientsCPU time.Duration   // this process's CPU over all ops
}

func (r loadResult) opsPerSec() float64 { return float64(len(r.lat)) / r.elapsed.Seconds() }

// cpuPerOp returns d divided by the op count, in ms.
func (r loadResult) cpuPerOp(d time.Duration) string {
	if r.ops == 0 || d == 0 {
		return "-"
	}
	return ms(d / time.Duration(r.ops))
}

// runLoad has n clients call op back to back for warmup + duration; ops
// that start after the warm-up are measured. Any error aborts the run.
func runLoad(ctx context.Context, srv *serverProc, n int, warmup, duration time.Duration, op func(context.Context) error) (loadResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cpu0, self0 := srv.cpuTime(), selfCPUTime()
	begin := time.Now()
	measureFrom := begin.Add(warmup)
	end := measureFrom.Add(duration)
	samples := make([][]time.Duration, n)
	var ops atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				start := time.Now()
				if !start.Before(end) {
					break
				}
				err := op(ctx)
				d := time.Since(start)
				if err != nil {
					cancel(err)
					return
				}
				ops.Add(1)
				if !start.Before(measureFrom) {
					lat = append(lat, d)
				}
			}
			samples[i] = lat
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return loadResult{}, err
	}
	r := loadResult{clients: n, elapsed: time.Since(measureFrom), lat: slices.Concat(samples...), ops: int(ops.Load()),
		serverCPU: srv.cpuTime() - cpu0, clientsCPU: selfCPUTime() - self0}
	slices.Sort(r.lat)
	return r, nil
}

// printAPIMachine prints what the numbers depend on.
func printAPIMachine(w io.Writer, cfg apiConfig) {
	fmt.Fprintf(w, "machine: nproc %d, cpu %s, memory %s\n",
		runtime.NumCPU(), procField("/proc/cpuinfo", "model name"), procField("/proc/meminfo", "MemTotal"))
	fmt.Fprintf(w, "go: %s %s/%s, linux %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, readTrim("/proc/sys/kernel/osrelease"))
	fmt.Fprintf(w, "load average at the start: %s (other work on the machine shares its CPUs)\n", loadAverage())
	fmt.Fprintf(w, "server: tugboat server built from this tree, TLS with the admin client certificate, fresh data dirs under %s (%s)\n",
		cfg.dir, fsType(cfg.dir))
	fmt.Fprintf(w, "clients: client-go typed clientset (QPS/Burst 10000), N goroutines sharing it (one HTTP/2 connection), on the same machine\n")
	fmt.Fprintf(w, "workload: %d-byte pod JSON, %s measured after %s warm-up, create clients %v, full LIST of %d pods\n\n",
		cfg.podSize, cfg.duration, cfg.warmup, cfg.clients, cfg.listPods)
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// printAPIResults prints the tables.
func printAPIResults(w io.Writer, cfg apiConfig, res *apiResults) {
	fmt.Fprintf(w, "server start on a fresh data dir (%d starts; idle RSS after %s idle)\n", len(res.readyMs), cfg.idle)
	fmt.Fprintf(w, "%-14s", "start")
	for i := range res.readyMs {
		fmt.Fprintf(w, " %8s", "#"+strconv.Itoa(i+1))
	}
	fmt.Fprintf(w, " %8s\n", "median")
	for _, row := range []struct {
		name string
		v    []float64
	}{{"ready ms", res.readyMs}, {"idle RSS MiB", res.idleRSS}} {
		fmt.Fprintf(w, "%-14s", row.name)
		for _, v := range row.v {
			fmt.Fprintf(w, " %8.1f", v)
		}
		fmt.Fprintf(w, " %8.1f\n", medianFloat(row.v))
	}

	fmt.Fprintf(w, "\nrequests (closed loop; CPU columns: ms of CPU per request, server process and benchmark clients)\n")
	fmt.Fprintf(w, "%-32s %7s %9s %8s %8s %8s %8s %11s %11s\n", "operation", "clients", "ops/s", "p50 ms", "p99 ms", "p999 ms", "max ms", "server CPU", "client CPU")
	for _, r := range append(slices.Clone(res.creates), res.get, res.list100) {
		fmt.Fprintf(w, "%-32s %7d %9.1f %8s %8s %8s %8s %11s %11s\n", r.name, r.clients, r.opsPerSec(),
			ms(percentile(r.lat, 0.50)), ms(percentile(r.lat, 0.99)), ms(percentile(r.lat, 0.999)), ms(percentile(r.lat, 1)),
			r.cpuPerOp(r.serverCPU), r.cpuPerOp(r.clientsCPU))
	}
	if res.topUp > 0 {
		fmt.Fprintf(w, "(topping %s up to %d pods took %s)\n", listNamespace, cfg.listPods, res.topUp.Round(time.Millisecond))
	}

	fmt.Fprintf(w, "\nfull LIST of %d pods, no limit, 1 client (%d rounds)\n", cfg.listPods, len(res.list10k))
	fmt.Fprintf(w, "%-36s %8s %8s %8s\n", "client", "min ms", "med ms", "max ms")
	fmt.Fprintf(w, "%-36s %8s %8s %8s\n", "typed (client-go decodes a PodList)",
		ms(res.list10k[0]), ms(percentile(res.list10k, 0.5)), ms(res.list10k[len(res.list10k)-1]))
	fmt.Fprintf(w, "%-36s %8s %8s %8s\n", fmt.Sprintf("raw JSON bytes (%.1f MB, no decode)", float64(res.listBytes)/1e6),
		ms(res.listRaw[0]), ms(percentile(res.listRaw, 0.5)), ms(res.listRaw[len(res.listRaw)-1]))

	fmt.Fprintf(w, "\nresponse media types: %s\n", res.wire)
	fmt.Fprintf(w, "server RSS after the workloads: %.1f MiB (anonymous %.1f, file-backed %.1f; peak %.1f)\n",
		res.rssAfter[0], res.rssAfter[1], res.rssAfter[2], res.hwm)
}

// formatAPIResult prints the RESULT line; a value this run could
// not measure (e.g. -clients without 32) is NaN.
func formatAPIResult(res *apiResults) string {
	creates := math.NaN()
	for _, r := range res.creates {
		if r.clients == 32 {
			creates = r.opsPerSec()
		}
	}
	msf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	f := func(x float64, prec int) string { return strconv.FormatFloat(x, 'f', prec, 64) }
	return fmt.Sprintf("RESULT api_creates_per_s_c32=%s api_p99_ms_c1=%s list_10k_ms=%s ready_ms=%s idle_rss_mb=%s",
		f(creates, 1), f(msf(percentile(res.get.lat, 0.99)), 2), f(msf(percentile(res.list10k, 0.5)), 1),
		f(medianFloat(res.readyMs), 1), f(medianFloat(res.idleRSS), 1))
}

// medianFloat returns the median of v (the mean of the middle two for an
// even count), or NaN for none.
func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
