package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/loopback"
	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/imagelocality/imagelocality"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/interpodaffinity/interpodaffinity"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodeaffinity/nodeaffinity"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodename/nodename"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/noderesources/noderesources"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodeunschedulable/nodeunschedulable"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/podtopologyspread/podtopologyspread"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/tainttoleration/tainttoleration"
	wasmrt "github.com/tugboat-dev/tugboat/runtime"
	"github.com/tugboat-dev/tugboat/sdk"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// schedConfig holds the scheduler command's flags.
type schedConfig struct {
	nodes        int
	basicPods    int
	antiPods     int
	affinityPods int
	pluginsDir   string
	dir          string
	cpuProfile   string
	profileRun   string
	only         string
	creators     int
	without      string
	offline      bool
	parallel     int
	rounds       int
}

func parseSchedFlags(args []string) (schedConfig, error) {
	var cfg schedConfig
	fs := flag.NewFlagSet("tugbench scheduler", flag.ContinueOnError)
	fs.IntVar(&cfg.nodes, "nodes", 5000, "Node objects in every workload")
	fs.IntVar(&cfg.basicPods, "basic-pods", 10000, "pods of the basic workload")
	fs.IntVar(&cfg.antiPods, "antiaffinity-pods", 2000, "pods of the required pod anti-affinity workload")
	fs.IntVar(&cfg.affinityPods, "nodeaffinity-pods", 5000, "pods of the required node affinity workload")
	fs.StringVar(&cfg.pluginsDir, "plugins-dir", "bin/plugins", "directory of the built-in plugins' .wasm files (make plugins)")
	fs.StringVar(&cfg.dir, "dir", os.TempDir(), "parent directory of the temporary data directories")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the run named by -profile-run to this file")
	fs.StringVar(&cfg.profileRun, "profile-run", "basic/wasm", "run to profile: <workload>/<wasm|native>")
	fs.StringVar(&cfg.only, "only", "", "comma-separated runs to do (e.g. basic/wasm,basic/native); empty = all needed for RESULT")
	fs.IntVar(&cfg.creators, "creators", 32, "concurrent clients creating the nodes and pods")
	fs.BoolVar(&cfg.offline, "offline", false, "diagnostics: run the profile over a snapshot built in memory (no API server, no binding) and report CPU per pod")
	fs.IntVar(&cfg.parallel, "parallel", 0, "plugins called at once per pod (Profile.SetParallelism); 0 = the driver's default")
	fs.IntVar(&cfg.rounds, "rounds", 5, "rounds of basic/wasm and basic/native, interleaved (wasm first in odd rounds, native first in even ones); the ratio is the median of the rounds' wasm/native throughput ratios")
	fs.StringVar(&cfg.without, "without", "", "comma-separated .wasm files of built-ins to leave out (diagnostics)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() != 0 {
		return cfg, fmt.Errorf("unexpected arguments %q: %w", fs.Args(), errdefs.ErrInvalid)
	}
	if cfg.nodes < 1 || cfg.basicPods < 1 || cfg.antiPods < 1 || cfg.affinityPods < 1 || cfg.creators < 1 || cfg.rounds < 1 {
		return cfg, fmt.Errorf("-nodes, -*-pods, -creators and -rounds must be positive: %w", errdefs.ErrInvalid)
	}
	return cfg, nil
}

// builtin is one built-in scheduler plugin: its .wasm file, how the
// default profile uses it, and the same source linked natively.
type builtin struct {
	file   string
	filter bool
	weight int64 // 0: not a scorer
	native func() (any, sdk.Manifest)
	// settings configure the module; parts are its score parts (see
	// kscheduler.PluginConfig.Parts) when it hosts several scorers.
	settings string
	parts    []kscheduler.ScorePart
}

// builtins is the default profile in filter order (cheap, selective
// filters first) with kube-scheduler's default weights.
var builtins = []builtin{
	{"nodeunschedulable.wasm", true, 0, func() (any, sdk.Manifest) { return nodeunschedulable.New(), nodeunschedulable.Manifest() }, "", nil},
	{"nodename.wasm", true, 0, func() (any, sdk.Manifest) { return nodename.New(), nodename.Manifest() }, "", nil},
	{"tainttoleration.wasm", true, 3, func() (any, sdk.Manifest) { return tainttoleration.New(), tainttoleration.Manifest() }, "", nil},
	{"nodeaffinity.wasm", true, 2, func() (any, sdk.Manifest) { return nodeaffinity.New(), nodeaffinity.Manifest() }, "", nil},
	// NodeResourcesFit hosts NodeResourcesBalancedAllocation as a second
	// score part, as the server's default profile does.
	{"noderesources.wasm", true, 1, func() (any, sdk.Manifest) { return noderesources.NewFit(), noderesources.FitManifest() },
		`{"balancedAllocation": {}}`, []kscheduler.ScorePart{{Name: "NodeResourcesFit", Weight: 1}, {Name: "NodeResourcesBalancedAllocation", Weight: 1}}},
	{"podtopologyspread.wasm", true, 2, func() (any, sdk.Manifest) { return podtopologyspread.New(), podtopologyspread.Manifest() }, "", nil},
	{"interpodaffinity.wasm", true, 2, func() (any, sdk.Manifest) { return interpodaffinity.New(), interpodaffinity.Manifest() }, "", nil},
	{"imagelocality.wasm", false, 1, func() (any, sdk.Manifest) { return imagelocality.New(), imagelocality.Manifest() }, "", nil},
}

// workload is one scheduling benchmark.
type workload struct {
	name string
	pods int
	pod  func(i int) *corev1.Pod
}

// schedRun is one measured run.
type schedRun struct {
	workload, mode string
	pods           int
	elapsed        time.Duration
	startup        time.Duration // scheduler start to Ready (caches synced, plugins warmed)
	cpu            time.Duration // CPU time of the process (all threads) during the run
	perSec         float64
}

func runScheduler(args []string) error {
	cfg, err := parseSchedFlags(args)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	for _, b := range builtins {
		if _, err := os.Stat(filepath.Join(cfg.pluginsDir, b.file)); err != nil {
			return fmt.Errorf("plugin %s missing in %s (run `make plugins`): %w", b.file, cfg.pluginsDir, errdefs.ErrNotFound)
		}
	}
	tmp, err := os.MkdirTemp(cfg.dir, "tugbench-scheduler-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	engine, err := wasmrt.NewEngine(ctx, wasmrt.Config{CacheDir: filepath.Join(tmp, "cache")})
	if err != nil {
		return err
	}
	defer engine.Close(context.WithoutCancel(ctx))

	workloads := []workload{
		{"basic", cfg.basicPods, basicPod},
		{"antiaffinity", cfg.antiPods, antiAffinityPod},
		{"nodeaffinity", cfg.affinityPods, nodeAffinityPod},
	}
	var plan []string
	for r := range cfg.rounds {
		if r%2 == 0 {
			plan = append(plan, "basic/wasm", "basic/native")
		} else {
			plan = append(plan, "basic/native", "basic/wasm")
		}
	}
	plan = append(plan, "antiaffinity/wasm", "nodeaffinity/wasm")
	if cfg.only != "" {
		plan = strings.Split(cfg.only, ",")
	}
	var runs []schedRun
	for _, name := range plan {
		wname, mode, _ := strings.Cut(strings.TrimSpace(name), "/")
		var w *workload
		for i := range workloads {
			if workloads[i].name == wname {
				w = &workloads[i]
			}
		}
		if w == nil || (mode != "wasm" && mode != "native") {
			return fmt.Errorf("-only: unknown run %q (want <basic|antiaffinity|nodeaffinity>/<wasm|native>): %w", name, errdefs.ErrInvalid)
		}
		run := runWorkload
		if cfg.offline {
			run = runOffline
		}
		r, err := run(ctx, cfg, engine, tmp, *w, mode)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", w.name, mode, err)
		}
		runs = append(runs, r)
	}
	printSchedResults(os.Stdout, cfg, runs)
	return nil
}

// signalContext ends on SIGINT.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt)
}

// runWorkload measures one workload in one mode on a fresh store.
func runWorkload(ctx context.Context, cfg schedConfig, engine *wasmrt.Engine, tmp string, w workload, mode string) (schedRun, error) {
	run := schedRun{workload: w.name, mode: mode, pods: w.pods}
	dir, err := os.MkdirTemp(tmp, "store-")
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(dir)
	st, err := tbadger.Open(tbadger.Options{Dir: dir})
	if err != nil {
		return run, err
	}
	defer st.Close()
	api, err := apiserver.New(apiserver.Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return run, err
	}
	defer api.Close()
	rc := loopback.Config(api.Handler(), apiserver.User{Name: "system:admin", Groups: []string{"system:masters"}})
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return run, err
	}
	progress("scheduler: %s/%s: creating %d nodes and %d pods", w.name, mode, cfg.nodes, w.pods)
	if err := createAll(ctx, cfg.creators, cfg.nodes, func(ctx context.Context, i int) error {
		_, err := client.CoreV1().Nodes().Create(ctx, benchNode(i), metav1.CreateOptions{})
		return err
	}); err != nil {
		return run, fmt.Errorf("create nodes: %w", err)
	}
	if err := createAll(ctx, cfg.creators, w.pods, func(ctx context.Context, i int) error {
		_, err := client.CoreV1().Pods("default").Create(ctx, w.pod(i), metav1.CreateOptions{})
		return err
	}); err != nil {
		return run, fmt.Errorf("create pods: %w", err)
	}
	prof, closePlugins, err := benchProfile(ctx, engine, mode, cfg.pluginsDir, strings.Split(cfg.without, ","), cfg.parallel)
	if err != nil {
		return run, err
	}
	defer closePlugins()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := kscheduler.New(kscheduler.Config{Client: rc, Profiles: []*kscheduler.Profile{prof}, Logger: logger})
	if err != nil {
		return run, err
	}
	profiling := cfg.cpuProfile != "" && cfg.profileRun == w.name+"/"+mode
	if profiling {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return run, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return run, err
		}
	}
	runtime.GC()
	progress("scheduler: %s/%s: scheduling", w.name, mode)
	cpu0 := processCPU()
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Run(sctx) }()
	var ready time.Time
	go func() {
		select {
		case <-s.Ready():
		case <-sctx.Done():
		}
	}()
	var runErr error
	last := int64(-1)
	lastChange := time.Now()
	for runErr == nil {
		n := s.Bound()
		if n >= int64(w.pods) {
			break
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > 60*time.Second {
			runErr = fmt.Errorf("stalled at %d of %d pods bound: %w", n, w.pods, errdefs.ErrTooSlow)
		}
		if ready.IsZero() {
			select {
			case <-s.Ready():
				ready = time.Now()
			default:
			}
		}
		select {
		case err := <-done:
			runErr = fmt.Errorf("scheduler stopped: %v", err)
		case <-time.After(2 * time.Millisecond):
		}
	}
	run.elapsed = time.Since(start)
	run.startup = ready.Sub(start)
	run.cpu = processCPU() - cpu0
	if profiling {
		pprof.StopCPUProfile()
	}
	cancel()
	<-done
	if runErr != nil {
		return run, runErr
	}
	run.perSec = float64(w.pods) / run.elapsed.Seconds()
	progress("scheduler: %s/%s: %d pods in %v (startup %v, CPU %v = %v/pod): %.0f pods/s", w.name, mode, w.pods,
		run.elapsed.Round(time.Millisecond), run.startup.Round(time.Millisecond), run.cpu.Round(time.Millisecond),
		(run.cpu / time.Duration(w.pods)).Round(time.Microsecond), run.perSec)
	printStats(prof)
	return run, nil
}

// runOffline schedules the workload's pods against an in-memory snapshot
// (assuming each on its node), measuring only the driver's decisions and
// the plugins.
func runOffline(ctx context.Context, cfg schedConfig, engine *wasmrt.Engine, _ string, w workload, mode string) (schedRun, error) {
	run := schedRun{workload: w.name, mode: mode, pods: w.pods}
	prof, closePlugins, err := benchProfile(ctx, engine, mode, cfg.pluginsDir, strings.Split(cfg.without, ","), cfg.parallel)
	if err != nil {
		return run, err
	}
	defer closePlugins()
	snap := kscheduler.NewSnapshot()
	for i := range cfg.nodes {
		snap.SetNode(benchNode(i))
	}
	if err := prof.Warm(ctx, snap); err != nil {
		return run, err
	}
	runtime.GC()
	if cfg.cpuProfile != "" && cfg.profileRun == w.name+"/"+mode {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return run, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return run, err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0, start := processCPU(), time.Now()
	for i := range w.pods {
		pod := w.pod(i)
		pod.UID = types.UID("uid-" + strconv.Itoa(i))
		pod.Spec.SchedulerName = kscheduler.DefaultSchedulerName
		res, err := prof.Schedule(ctx, snap, pod, kscheduler.Options{})
		if err != nil {
			return run, err
		}
		if res.Node == "" {
			return run, fmt.Errorf("pod %d: %s", i, res.Message)
		}
		pod.Spec.NodeName = res.Node
		snap.SetPod(pod)
	}
	run.elapsed, run.cpu = time.Since(start), processCPU()-cpu0
	run.perSec = float64(w.pods) / run.elapsed.Seconds()
	progress("scheduler: %s/%s offline: %d pods in %v (CPU %v/pod): %.0f pods/s", w.name, mode, w.pods,
		run.elapsed.Round(time.Millisecond), (run.cpu / time.Duration(w.pods)).Round(time.Microsecond), run.perSec)
	printStats(prof)
	return run, nil
}

// printStats prints the profile's per-plugin call statistics.
func printStats(prof *kscheduler.Profile) {
	for _, ps := range prof.Stats() {
		calls := ps.FilterCalls + ps.ScoreCalls
		progress("scheduler:   %-32s %6d filter + %6d score calls (%6d skip), %4d full (%5.2f s), %6.1f nodes/call, %6.1f us/call after",
			ps.Name, ps.FilterCalls, ps.ScoreCalls, ps.Skips, ps.Resyncs, ps.FullTime.Seconds(), float64(ps.Nodes)/float64(max(calls, 1)),
			float64((ps.Time-ps.FullTime).Microseconds())/float64(max(calls-ps.Resyncs, 1)))
	}
}

// benchProfile builds the default profile from the built-ins, as Wasm
// modules or linked natively.
func benchProfile(ctx context.Context, engine *wasmrt.Engine, mode, dir string, without []string, parallel int) (*kscheduler.Profile, func(), error) {
	var cfgs []kscheduler.PluginConfig
	var loaded []*wasmrt.Plugin
	closeAll := func() {
		for _, p := range loaded {
			_ = p.Close(context.WithoutCancel(ctx))
		}
	}
	for _, b := range builtins {
		if slices.Contains(without, b.file) {
			continue
		}
		var pc kscheduler.PluginConfig
		if mode == "wasm" {
			var settings []byte
			if b.settings != "" {
				settings = []byte(b.settings)
			}
			p, err := engine.Load(ctx, wasmrt.PluginConfig{
				Name: strings.TrimSuffix(b.file, ".wasm"), Path: filepath.Join(dir, b.file), Settings: settings,
				PoolSize: 1, MemoryLimit: wasmrt.DefaultSchedulerMemoryLimit, Timeout: 10 * time.Second,
			})
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			loaded = append(loaded, p)
			if pc, err = wasmrt.SchedulerPlugin(p, b.weight); err != nil {
				closeAll()
				return nil, nil, err
			}
		} else {
			mod, err := sched.New(b.native())
			if err != nil {
				return nil, nil, err
			}
			var settings []byte
			if b.settings != "" {
				settings = []byte(b.settings)
			}
			if err := mod.Configure(settings); err != nil {
				return nil, nil, err
			}
			m := mod.Manifest()
			pc = kscheduler.PluginConfig{Plugin: mod, Weight: b.weight}
			for _, k := range m.Kinds {
				pc.Filter = pc.Filter || k == hostapi.KindFilter
				pc.Score = pc.Score || k == hostapi.KindScore
			}
		}
		pc.Filter = pc.Filter && b.filter
		pc.Score = pc.Score && b.weight > 0
		pc.Parts = b.parts
		cfgs = append(cfgs, pc)
	}
	prof, err := kscheduler.NewProfile(kscheduler.DefaultSchedulerName, cfgs)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	if parallel > 0 {
		prof.SetParallelism(parallel)
	}
	return prof, closeAll, nil
}

// processCPU returns the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// createAll runs create(i) for i in [0, n) from workers goroutines.
func createAll(ctx context.Context, workers, n int, create func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := create(ctx, i); err != nil {
					mu.Lock()
					first = errors.Join(first, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// benchNode is node i: 4 CPUs, 32 GiB, 110 pods (scheduler_perf's
// node-default), in zone1.
func benchNode(i int) *corev1.Node {
	name := "sim-" + strconv.Itoa(i)
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelHostname: name, corev1.LabelTopologyZone: "zone1", corev1.LabelOSStable: "linux",
		}},
		Status: corev1.NodeStatus{
			Capacity: alloc, Allocatable: alloc,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

// basicPod is scheduler_perf's pod-default: 100m CPU, 500Mi.
func basicPod(i int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-" + strconv.Itoa(i), Namespace: "default", Labels: map[string]string{"app": "bench"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "pause", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("500Mi"),
			}},
		}}},
	}
}

// antiAffinityPod repels every other pod of the workload from its node
// (scheduler_perf's pod-with-pod-anti-affinity).
func antiAffinityPod(i int) *corev1.Pod {
	p := basicPod(i)
	p.Labels = map[string]string{"color": "green"}
	p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"color": "green"}},
			TopologyKey:   corev1.LabelHostname,
		}},
	}}
	return p
}

// nodeAffinityPod requires zone1 or zone2 (scheduler_perf's
// pod-with-node-affinity).
func nodeAffinityPod(i int) *corev1.Pod {
	p := basicPod(i)
	p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"zone1", "zone2"},
			}},
		}}},
	}}
	return p
}

func printSchedResults(w io.Writer, cfg schedConfig, runs []schedRun) {
	fmt.Fprintf(w, "machine: nproc %d (GOMAXPROCS %d), %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Fprintf(w, "setup: in-process API server on Badger, %d nodes, pods created before the scheduler starts;\n", cfg.nodes)
	fmt.Fprintf(w, "       time = scheduler start (incl. its initial LIST) to the last binding written; %d built-in plugins\n\n", len(builtins))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tplugins\tpods\tseconds\tstartup s\tCPU ms/pod\tpods/s")
	rates := map[string][]float64{}
	cpus := map[string][]float64{}
	for _, r := range runs {
		cpu := float64(r.cpu.Microseconds()) / 1000 / float64(r.pods)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t%.0f\n", r.workload, r.mode, r.pods, r.elapsed.Seconds(),
			r.startup.Seconds(), cpu, r.perSec)
		rates[r.workload+"/"+r.mode] = append(rates[r.workload+"/"+r.mode], r.perSec)
		cpus[r.workload+"/"+r.mode] = append(cpus[r.workload+"/"+r.mode], cpu)
	}
	tw.Flush()
	rate := map[string]float64{}
	for k, v := range rates {
		rate[k] = median(v)
	}
	// The ratio: per round, the wasm run's throughput over the native
	// run's next to it (the load changes less within a round than
	// across the whole benchmark), then the median over the rounds.
	wr, nr := rates["basic/wasm"], rates["basic/native"]
	var pairs []float64
	for i := range min(len(wr), len(nr)) {
		if nr[i] > 0 {
			pairs = append(pairs, wr[i]/nr[i])
		}
	}
	ratio := median(pairs)
	if len(pairs) > 1 {
		strs := make([]string, len(pairs))
		for i, p := range pairs {
			strs[i] = strconv.FormatFloat(p, 'f', 2, 64)
		}
		fmt.Fprintf(w, "\nbasic: wasm/native throughput per round (interleaved) %s: median %.2f;\n", strings.Join(strs, " "), ratio)
		fmt.Fprintf(w, "basic: median throughput %.0f pods/s wasm, %.0f native (ratio of medians %.2f);\n",
			rate["basic/wasm"], rate["basic/native"], rate["basic/wasm"]/max(rate["basic/native"], 1))
	}
	if cw, cn := median(cpus["basic/wasm"]), median(cpus["basic/native"]); cw > 0 && cn > 0 {
		fmt.Fprintf(w, "basic: median CPU per pod (whole process) %.3f ms wasm vs %.3f ms native: CPU-time throughput ratio %.2f\n", cw, cn, cn/cw)
	}
	fmt.Fprintf(w, "\nRESULT sched_basic_pods_per_s=%.0f sched_antiaffinity_pods_per_s=%.0f sched_nodeaffinity_pods_per_s=%.0f sched_wasm_vs_native=%.2f\n",
		rate["basic/wasm"], rate["antiaffinity/wasm"], rate["nodeaffinity/wasm"], ratio)
}

// median returns the median of v (0 for none).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
