package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	requirelabels "github.com/tugboat-dev/tugboat/plugins/admission/require-labels/requirelabels"
	wasmrt "github.com/tugboat-dev/tugboat/runtime"
	"github.com/tugboat-dev/tugboat/sdk"
)

// pluginsConfig holds the flags of the plugins command.
type pluginsConfig struct {
	calls       int
	warmup      int
	concurrency []int
	loads       int
	instances   int
	loopInput   string
	loopRuns    int
	plugin      string
	dir         string
}

func parsePluginsFlags(args []string) (pluginsConfig, error) {
	var cfg pluginsConfig
	fs := flag.NewFlagSet("tugbench plugins", flag.ContinueOnError)
	fs.IntVar(&cfg.calls, "calls", 20000, "measured admission calls per concurrency level and path")
	fs.IntVar(&cfg.warmup, "warmup", 2000, "unmeasured admission calls before each measurement")
	conc := fs.String("concurrency", "1,16", "comma-separated concurrent request counts")
	fs.IntVar(&cfg.loads, "loads", 5, "plugin loads with a warm compilation cache (median reported)")
	fs.IntVar(&cfg.instances, "instances", 8, "instances started per round for new_instance_ms and instance_mem_kb")
	fs.StringVar(&cfg.loopInput, "loop", "100000 300", "input of the loop-heavy guest function: array length and rounds")
	fs.IntVar(&cfg.loopRuns, "loop-runs", 15, "calls of the loop-heavy function per deadline mode (median reported)")
	fs.StringVar(&cfg.plugin, "plugin", "", "require-labels .wasm; empty builds ./plugins/admission/require-labels")
	fs.StringVar(&cfg.dir, "dir", os.TempDir(), "parent directory of the temporary build and cache directories")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() != 0 {
		return cfg, fmt.Errorf("unexpected arguments %q: %w", fs.Args(), errdefs.ErrInvalid)
	}
	var err error
	if cfg.concurrency, err = positiveInts("concurrency", *conc); err != nil {
		return cfg, err
	}
	if cfg.calls < 100 || cfg.warmup < 0 || cfg.loads < 1 || cfg.instances < 1 || cfg.loopRuns < 1 {
		return cfg, fmt.Errorf("-calls >= 100, -warmup >= 0, -loads, -instances, -loop-runs >= 1: %w", errdefs.ErrInvalid)
	}
	return cfg, nil
}

// pluginsResults is everything the plugins command measured.
type pluginsResults struct {
	compileMs    float64   // Load with an empty compilation cache
	warmLoadMs   []float64 // Load with a warm one
	newInstMs    []float64 // per round: mean time to start an instance (from the snapshot)
	longInstMs   []float64 // the same without the snapshot (instantiate, _initialize, configure)
	instHeapKB   []float64 // per round: Go heap per instance (linear memory included)
	instLinearKB float64   // linear memory of one idle instance
	wasm, native []latency
	// jsonWasm and jsonNative: both paths with the JSON request layout at
	// the first concurrency level, for comparison with session 1.
	jsonWasm, jsonNative latency
	layout               int32               // the layout the module reads
	deadline             wasmrt.DeadlineCost // the loop-heavy function
	admitCost            wasmrt.DeadlineCost // require-labels' admit export alone
	runaway              []time.Duration     // time to stop an infinite loop, deadline runawayDeadline
	runawayGCs           uint32              // garbage collections during those calls
}

// latency summarizes one admission measurement.
type latency struct {
	concurrency   int
	p50, p99, max time.Duration
	perSec        float64
}

// runawayDeadline is the timeout of the runaway guest.
const runawayDeadline = 100 * time.Millisecond

func runPlugins(args []string) error {
	cfg, err := parsePluginsFlags(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp(cfg.dir, "tugbench-plugins-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	plugin := cfg.plugin
	if plugin == "" {
		if plugin, err = buildWasm(ctx, "./plugins/admission/require-labels", filepath.Join(tmp, "require-labels.wasm")); err != nil {
			return err
		}
	}
	loop, err := buildWasm(ctx, "./runtime/testdata/guest", filepath.Join(tmp, "guest.wasm"))
	if err != nil {
		return err
	}
	printPluginsMachine(os.Stdout, cfg, plugin)
	var res pluginsResults
	steps := []func() error{
		func() error { return measureColdStart(ctx, cfg, plugin, tmp, &res) },
		func() error { return measureInstances(ctx, cfg, plugin, tmp, &res) },
		func() error { return measureAdmission(ctx, cfg, plugin, tmp, &res) },
		func() error { return measureDeadlines(ctx, cfg, plugin, loop, tmp, &res) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	printPluginsResults(os.Stdout, cfg, &res)
	fmt.Printf("load average at the end: %s\n\n", loadAverage())
	fmt.Println(formatPluginsResult(&res))
	return nil
}

// buildWasm builds the main package pkg for wasip1 as a reactor.
func buildWasm(ctx context.Context, pkg, out string) (string, error) {
	progress("plugins: building %s", pkg)
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// requireTeam are the settings of require-labels in this benchmark.
var requireTeam = []byte(`{"labels":["team"]}`)

// loadPlugin starts an engine on cacheDir and loads require-labels
// (noSnapshot: every instance starts the long way).
func loadPlugin(ctx context.Context, path, cacheDir string, pool int, noSnapshot bool) (*wasmrt.Engine, *wasmrt.Plugin, time.Duration, error) {
	e, err := wasmrt.NewEngine(ctx, wasmrt.Config{CacheDir: cacheDir})
	if err != nil {
		return nil, nil, 0, err
	}
	start := time.Now()
	p, err := e.Load(ctx, wasmrt.PluginConfig{Name: "require-labels", Path: path, Settings: requireTeam, PoolSize: pool,
		NoSnapshot: noSnapshot})
	took := time.Since(start)
	if err != nil {
		return nil, nil, 0, errors.Join(err, e.Close(ctx))
	}
	return e, p, took, nil
}

func measureColdStart(ctx context.Context, cfg pluginsConfig, plugin, tmp string, res *pluginsResults) error {
	cache := filepath.Join(tmp, "cache")
	progress("plugins: cold start, compiling with an empty cache")
	e, _, took, err := loadPlugin(ctx, plugin, cache, 1, false)
	if err != nil {
		return err
	}
	res.compileMs = msFloat(took)
	if err := e.Close(ctx); err != nil {
		return err
	}
	progress("plugins: %d loads with a warm cache", cfg.loads)
	for range cfg.loads {
		e, _, took, err := loadPlugin(ctx, plugin, cache, 1, false)
		if err != nil {
			return err
		}
		res.warmLoadMs = append(res.warmLoadMs, msFloat(took))
		if err := e.Close(ctx); err != nil {
			return err
		}
	}
	return nil
}

// measureInstances starts cfg.instances instances per round and measures
// their time and the Go heap they add (their linear memory is Go memory).
func measureInstances(ctx context.Context, cfg pluginsConfig, plugin, tmp string, res *pluginsResults) error {
	progress("plugins: starting %d instances, 3 rounds from the snapshot, 3 the long way", cfg.instances)
	for round := range 6 {
		long := round >= 3
		e, p, _, err := loadPlugin(ctx, plugin, filepath.Join(tmp, "cache"), cfg.instances+1, long)
		if err != nil {
			return err
		}
		before := heapAlloc()
		start := time.Now()
		n, err := p.Warm(ctx, cfg.instances+1)
		took := time.Since(start)
		after := heapAlloc()
		st := p.Stats()
		if err := errors.Join(err, e.Close(ctx)); err != nil {
			return err
		}
		if n != cfg.instances {
			return fmt.Errorf("warm started %d instances, want %d", n, cfg.instances)
		}
		if long {
			res.longInstMs = append(res.longInstMs, msFloat(took)/float64(n))
			continue
		}
		res.newInstMs = append(res.newInstMs, msFloat(took)/float64(n))
		res.instHeapKB = append(res.instHeapKB, float64(after-before)/float64(n)/1024)
		res.instLinearKB = float64(st.IdleMemory) / float64(st.Idle) / 1024
	}
	return nil
}

// heapAlloc returns the live Go heap after a full collection.
func heapAlloc() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// admitFunc is one way of running require-labels on a request.
type admitFunc func(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error)

func measureAdmission(ctx context.Context, cfg pluginsConfig, plugin, tmp string, res *pluginsResults) error {
	e, p, _, err := loadPlugin(ctx, plugin, filepath.Join(tmp, "cache"), 0, false)
	if err != nil {
		return err
	}
	defer e.Close(ctx)
	hook, err := wasmrt.NewAdmission(p, wasmrt.AdmissionConfig{Rules: []wasmrt.AdmissionRule{
		{Resources: []string{"deployments.apps"}, Operations: []string{"CREATE", "UPDATE"}}}})
	if err != nil {
		return err
	}
	mod, err := sdk.NewAdmission(requirelabels.New(), requirelabels.Manifest())
	if err != nil {
		return err
	}
	if err := mod.Configure(requireTeam); err != nil {
		return err
	}
	// The native path runs the same plugin layer (request encoding in the
	// layout the Wasm module reads, response decoding) around the same
	// plugin package compiled natively.
	res.layout = p.AdmitLayout()
	nativeIn := func(layout int32) admitFunc {
		return func(_ context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
			return wasmrt.AdmitWith(layout, req, func(in []byte) ([]byte, error) {
				return mod.Call(hostapi.ExportAdmit, in)
			})
		}
	}
	// wasmJSON is the Wasm path with the request forced to JSON.
	wasmJSON := func(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
		return wasmrt.AdmitWith(hostapi.AdmitLayoutJSON, req, func(in []byte) ([]byte, error) {
			return p.Call(ctx, hostapi.ExportAdmit, in)
		})
	}
	native := nativeIn(res.layout)
	paths := []struct {
		name  string
		admit admitFunc
		dst   *[]latency
	}{{"wasm", hook.Admit, &res.wasm}, {"native", native, &res.native}}
	var jsonW, jsonN []latency
	jsonPaths := []struct {
		name  string
		admit admitFunc
		dst   *[]latency
	}{{"wasm, JSON layout", wasmJSON, &jsonW}, {"native, JSON layout", nativeIn(hostapi.AdmitLayoutJSON), &jsonN}}
	for _, path := range jsonPaths {
		if err := checkVerdicts(ctx, path.name, path.admit); err != nil {
			return err
		}
	}
	for _, path := range paths {
		if err := checkVerdicts(ctx, path.name, path.admit); err != nil {
			return err
		}
	}
	req := deploymentReview(map[string]string{"app": "web", "team": "payments"})
	for _, path := range jsonPaths {
		c := cfg.concurrency[0]
		progress("plugins: %s admission, %d concurrent, %d calls", path.name, c, cfg.calls)
		lat, err := runAdmissions(ctx, path.admit, req, c, cfg.warmup, cfg.calls)
		if err != nil {
			return fmt.Errorf("%s admission: %w", path.name, err)
		}
		*path.dst = append(*path.dst, lat)
	}
	res.jsonWasm, res.jsonNative = jsonW[0], jsonN[0]
	for _, c := range cfg.concurrency {
		for _, path := range paths {
			progress("plugins: %s admission, %d concurrent, %d calls", path.name, c, cfg.calls)
			lat, err := runAdmissions(ctx, path.admit, req, c, cfg.warmup, cfg.calls)
			if err != nil {
				return fmt.Errorf("%s admission: %w", path.name, err)
			}
			*path.dst = append(*path.dst, lat)
		}
	}
	return nil
}

// checkVerdicts makes sure a path allows a labelled Deployment and denies
// an unlabelled one, so that both paths measure the same work.
func checkVerdicts(ctx context.Context, name string, admit admitFunc) error {
	for _, tc := range []struct {
		labels  map[string]string
		allowed bool
	}{{map[string]string{"team": "a"}, true}, {map[string]string{"app": "web"}, false}} {
		resp, err := admit(ctx, deploymentReview(tc.labels))
		if err != nil {
			return fmt.Errorf("%s admission: %w", name, err)
		}
		if resp.Allowed != tc.allowed {
			return fmt.Errorf("%s admission of labels %v: allowed %v, want %v (%+v)", name, tc.labels, resp.Allowed, tc.allowed, resp.Result)
		}
	}
	return nil
}

// deploymentReview is the admission request for creating a typical
// Deployment (about 2 KB of JSON).
func deploymentReview(labels map[string]string) *admissionv1.AdmissionRequest {
	container := map[string]any{
		"name": "web", "image": "registry.example.com/team/web:1.27.3",
		"ports":          []any{map[string]any{"containerPort": 8080, "name": "http"}},
		"env":            []any{map[string]any{"name": "LOG_LEVEL", "value": "info"}, map[string]any{"name": "REGION", "value": "eu-west-1"}},
		"resources":      map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}, "limits": map[string]any{"memory": "256Mi"}},
		"readinessProbe": map[string]any{"httpGet": map[string]any{"path": "/healthz", "port": 8080}, "periodSeconds": 5},
	}
	obj := map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "web", "namespace": "default", "labels": labels,
			"annotations": map[string]any{"deployment.kubernetes.io/revision": "3", "owner": "payments@example.com"}},
		"spec": map[string]any{"replicas": 3, "selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
				"spec": map[string]any{"containers": []any{container, container}}}},
	}
	raw, _ := json.Marshal(obj)
	return &admissionv1.AdmissionRequest{
		UID:       "0a7e5d9c-1111-4d4d-9e9e-000000000001",
		Kind:      metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
		Name:      "web",
		Namespace: "default",
		Operation: admissionv1.Create,
		Object:    kruntime.RawExtension{Raw: raw},
	}
}

// runAdmissions runs calls admissions from c goroutines after warmup
// unmeasured ones.
func runAdmissions(ctx context.Context, admit admitFunc, req *admissionv1.AdmissionRequest, c, warmup, calls int) (latency, error) {
	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	run := func(n int, record bool) time.Duration {
		var wg sync.WaitGroup
		start := time.Now()
		for g := range c {
			share := n / c
			if g < n%c {
				share++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				lat := make([]time.Duration, 0, share)
				for range share {
					t0 := time.Now()
					resp, err := admit(ctx, req)
					lat = append(lat, time.Since(t0))
					if err == nil && !resp.Allowed {
						err = fmt.Errorf("request denied: %+v", resp.Result)
					}
					if err != nil {
						mu.Lock()
						firstErr = cmpOr(firstErr, err)
						mu.Unlock()
						return
					}
				}
				if record {
					mu.Lock()
					all = append(all, lat...)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	run(warmup, false)
	elapsed := run(calls, true)
	if firstErr != nil {
		return latency{}, firstErr
	}
	slices.Sort(all)
	return latency{concurrency: c, p50: percentile(all, 0.5), p99: percentile(all, 0.99), max: all[len(all)-1],
		perSec: float64(len(all)) / elapsed.Seconds()}, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func measureDeadlines(ctx context.Context, cfg pluginsConfig, plugin, guest, tmp string, res *pluginsResults) error {
	progress("plugins: loop-heavy guest function (%s), %d calls per deadline mode", cfg.loopInput, cfg.loopRuns)
	cost, err := wasmrt.MeasureDeadlineCost(ctx, guest, "sum", nil, []byte(cfg.loopInput), cfg.loopRuns)
	if err != nil {
		return err
	}
	res.deadline = cost
	progress("plugins: require-labels admission in the guest alone, %d calls per deadline mode", 20*cfg.loopRuns)
	review, err := wasmrt.AppendAdmissionRequest(nil, res.layout, deploymentReview(map[string]string{"app": "web", "team": "payments"}))
	if err != nil {
		return err
	}
	if res.admitCost, err = wasmrt.MeasureDeadlineCost(ctx, plugin, hostapi.ExportAdmit, requireTeam, review, 20*cfg.loopRuns); err != nil {
		return err
	}

	progress("plugins: runaway guest with a %s deadline while another goroutine forces garbage collections", runawayDeadline)
	e, err := wasmrt.NewEngine(ctx, wasmrt.Config{CacheDir: filepath.Join(tmp, "cache")})
	if err != nil {
		return err
	}
	defer e.Close(ctx)
	p, err := e.Load(ctx, wasmrt.PluginConfig{Name: "runaway", Path: guest, Timeout: runawayDeadline, PoolSize: 1})
	if err != nil {
		return err
	}
	stopGC := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { churnGarbage(stopGC) })
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 5 {
		start := time.Now()
		_, err := p.Call(ctx, "loop", nil)
		res.runaway = append(res.runaway, time.Since(start))
		if !errors.Is(err, errdefs.ErrPluginTimeout) {
			close(stopGC)
			wg.Wait()
			return fmt.Errorf("runaway guest: %v, want a timeout", err)
		}
	}
	close(stopGC)
	wg.Wait()
	runtime.ReadMemStats(&after)
	res.runawayGCs = after.NumGC - before.NumGC
	return nil
}

// churnGarbage allocates until stop is closed, so that the Go runtime keeps
// starting garbage collections (each stops the world).
func churnGarbage(stop <-chan struct{}) {
	var sink [][]byte
	for {
		select {
		case <-stop:
			return
		default:
		}
		sink = append(sink, make([]byte, 64<<10))
		if len(sink) > 256 {
			sink = sink[:0]
		}
	}
}

func msFloat(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func usFloat(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func printPluginsMachine(w io.Writer, cfg pluginsConfig, plugin string) {
	fmt.Fprintf(w, "machine: nproc %d (GOMAXPROCS %d), cpu %s, memory %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), procField("/proc/cpuinfo", "model name"), procField("/proc/meminfo", "MemTotal"))
	fmt.Fprintf(w, "go: %s %s/%s, linux %s; wazero v1.12 compiler\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, readTrim("/proc/sys/kernel/osrelease"))
	fmt.Fprintf(w, "load average at the start: %s (other work on the machine shares its CPUs)\n", loadAverage())
	size := "?"
	if st, err := os.Stat(plugin); err == nil {
		size = strconv.FormatInt(st.Size()>>10, 10) + " KiB"
	}
	fmt.Fprintf(w, "plugin: require-labels (%s), settings %s; native path: the same package through sdk.Module.Call\n", size, requireTeam)
	fmt.Fprintf(w, "admission: a 2 KB Deployment create, plugin layer end to end (encode request in the layout the module reads, call, decode response JSON), %d calls after %d warm-up\n\n",
		cfg.calls, cfg.warmup)
}

func printPluginsResults(w io.Writer, cfg pluginsConfig, res *pluginsResults) {
	fmt.Fprintln(w, "admission latency (us)   concurrency    p50      p99      max    calls/s")
	for i := range res.wasm {
		for _, l := range []struct {
			name string
			lat  latency
		}{{"wasm (require-labels)", res.wasm[i]}, {"native (same code)", res.native[i]}} {
			fmt.Fprintf(w, "%-24s %11d %8.1f %8.1f %8.1f %10.0f\n", l.name, l.lat.concurrency,
				usFloat(l.lat.p50), usFloat(l.lat.p99), usFloat(l.lat.max), l.lat.perSec)
		}
	}
	fmt.Fprintf(w, "request layout %d (%s) above; with the JSON layout instead, at concurrency %d: wasm p50 %.1f, native p50 %.1f (ratio %.2f)\n",
		res.layout, layoutName(res.layout), res.jsonWasm.concurrency, usFloat(res.jsonWasm.p50), usFloat(res.jsonNative.p50),
		ratio(res.jsonWasm.p50, res.jsonNative.p50))
	fmt.Fprintln(w)
	fmt.Fprintf(w, "cold start: compile with an empty cache %.0f ms; load with a warm cache %s ms (median %.1f)\n",
		res.compileMs, joinFloats(res.warmLoadMs, 1), medianFloat(res.warmLoadMs))
	fmt.Fprintf(w, "new instance from the snapshot (instantiate, restore memory and globals): %s ms per instance over %d instances per round; the long way (instantiate, _initialize, configure): %s ms\n",
		joinFloats(res.newInstMs, 2), cfg.instances, joinFloats(res.longInstMs, 2))
	fmt.Fprintf(w, "memory per instance: Go heap %s KiB (linear memory %.0f KiB of it)\n", joinFloats(res.instHeapKB, 0), res.instLinearKB)
	d := res.deadline
	fmt.Fprintf(w, "loop-heavy guest function, median of %d calls: no enforcement %.1f ms, injected checks %.1f ms (%.3fx), wazero close-on-context-done %.1f ms (%.2fx)\n",
		cfg.loopRuns, msFloat(d.Plain), msFloat(d.Checked), ratio(d.Checked, d.Plain), msFloat(d.CloseOnDone), ratio(d.CloseOnDone, d.Plain))
	a := res.admitCost
	fmt.Fprintf(w, "require-labels admit export alone (guest time), median: no enforcement %.1f us, injected checks %.1f us (%.3fx), close-on-context-done %.1f us (%.2fx)\n",
		usFloat(a.Plain), usFloat(a.Checked), ratio(a.Checked, a.Plain), usFloat(a.CloseOnDone), ratio(a.CloseOnDone, a.Plain))
	var runaway []float64
	for _, r := range res.runaway {
		runaway = append(runaway, msFloat(r))
	}
	fmt.Fprintf(w, "runaway guest (infinite loop), deadline %s: stopped after %s ms, %d garbage collections meanwhile\n",
		runawayDeadline, joinFloats(runaway, 1), res.runawayGCs)
}

func layoutName(layout int32) string {
	if layout == hostapi.AdmitLayoutBinary {
		return "binary"
	}
	return "JSON"
}

func joinFloats(v []float64, prec int) string {
	s := make([]string, len(v))
	for i, f := range v {
		s[i] = strconv.FormatFloat(f, 'f', prec, 64)
	}
	return strings.Join(s, " ")
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// formatPluginsResult is the RESULT line: the worst p99 over the
// concurrency levels, the wasm/native ratio of p50s at the first level.
func formatPluginsResult(res *pluginsResults) string {
	var p99 time.Duration
	for _, l := range res.wasm {
		p99 = max(p99, l.p99)
	}
	return fmt.Sprintf("RESULT admission_p99_us=%.0f admission_wasm_vs_native=%.2f cold_start_warm_cache_ms=%.1f new_instance_ms=%.2f instance_mem_kb=%.0f deadline_overhead_ratio=%.3f",
		usFloat(p99), ratio(res.wasm[0].p50, res.native[0].p50), medianFloat(res.warmLoadMs),
		medianFloat(res.newInstMs), medianFloat(res.instHeapKB), ratio(res.deadline.Checked, res.deadline.Plain))
}
