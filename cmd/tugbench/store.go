package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

// Keys written by the create workload and by the watch workload's writer.
const (
	createPrefix = "/registry/pods/bench/"
	watchPrefix  = "/registry/pods/watch/"
)

// target is one store under test, reduced to what the workloads need.
type target interface {
	// create writes key only if it is absent and returns the revision of
	// the write once it is acknowledged (durable).
	create(ctx context.Context, key string, value []byte) (int64, error)
	// revision returns the store's current revision.
	revision(ctx context.Context) (int64, error)
	// watch starts a watch on prefix for changes after rev and returns once
	// it is registered. A goroutine calls deliver with each event's revision,
	// as soon as the event arrives, until ctx is cancelled.
	watch(ctx context.Context, prefix string, after int64, deliver func(rev int64)) (*watchHandle, error)
}

// watchHandle is a running watch: done closes when its goroutine exits, and
// err (readable after done) says why, if not because ctx was cancelled.
type watchHandle struct {
	done chan struct{}
	err  error
}

// storeConfig holds the store command's flags, validated by parseStoreFlags.
type storeConfig struct {
	duration   time.Duration
	warmup     time.Duration
	clients    []int
	watchers   int
	watchRate  int
	valueSize  int
	only       string
	cpuprofile string
	trace      string
	dir        string
	etcdInProc bool
	rounds     int
}

func parseStoreFlags(args []string) (storeConfig, error) {
	var cfg storeConfig
	fs := flag.NewFlagSet("tugbench store", flag.ContinueOnError)
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured time of each workload in each round")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds of the whole comparison, alternating which store goes first; RESULT reports the median of the rounds")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured warm-up before each workload")
	clients := fs.String("clients", "1,64", "comma-separated concurrent client counts for the create workload")
	fs.IntVar(&cfg.watchers, "watchers", 1000, "watchers on one prefix in the fan-out workload")
	fs.IntVar(&cfg.watchRate, "watch-rate", 200, "writes per second during the fan-out workload")
	fs.IntVar(&cfg.valueSize, "value-size", 2048, "bytes per value (random; at least 8)")
	fs.StringVar(&cfg.only, "only", "both", "which stores to run: tugboat, etcd or both")
	fs.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the tugboat phase to this file")
	fs.StringVar(&cfg.trace, "trace", "", "write an execution trace of the tugboat phase to this file (shows stalls a CPU profile cannot)")
	fs.StringVar(&cfg.dir, "dir", os.TempDir(), "parent directory of the per-store temporary data directories")
	fs.BoolVar(&cfg.etcdInProc, "etcd-inproc", true, "also run the create workload through an in-process etcd client (no gRPC)")
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
	case cfg.rounds < 1:
		return cfg, fmt.Errorf("-rounds %d: want at least 1: %w", cfg.rounds, errdefs.ErrInvalid)
	case cfg.duration <= 0 || cfg.warmup < 0:
		return cfg, fmt.Errorf("-duration must be positive and -warmup not negative: %w", errdefs.ErrInvalid)
	case cfg.watchers < 0:
		return cfg, fmt.Errorf("-watchers %d: %w", cfg.watchers, errdefs.ErrInvalid)
	case cfg.watchRate < 1 || cfg.watchRate > 100000:
		return cfg, fmt.Errorf("-watch-rate %d: want 1 to 100000: %w", cfg.watchRate, errdefs.ErrInvalid)
	case cfg.valueSize < 8:
		return cfg, fmt.Errorf("-value-size %d: want at least 8: %w", cfg.valueSize, errdefs.ErrInvalid)
	case cfg.only != "tugboat" && cfg.only != "etcd" && cfg.only != "both":
		return cfg, fmt.Errorf("-only %q: want tugboat, etcd or both: %w", cfg.only, errdefs.ErrInvalid)
	}
	return cfg, nil
}

// storeResults is everything measured against one store.
type storeResults struct {
	creates []createResult
	watch   *watchResult // nil when -watchers 0
}

// runStore runs the create and watch workloads against Tugboat's Badger
// store and an embedded etcd, one after the other, and prints the results.
func runStore(args []string) error {
	cfg, err := parseStoreFlags(args)
	if err != nil {
		return err
	}
	// On Ctrl-C the workloads stop and the temp dirs are still removed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	printMachine(os.Stdout, cfg)

	values := make([][]byte, 256)
	for i := range values {
		values[i] = make([]byte, cfg.valueSize)
		rand.Read(values[i])
	}
	// Background load on a shared machine drifts; alternating which store
	// goes first and taking the median of the rounds keeps the drift from
	// favouring either side.
	var rounds [][4]float64
	for round := 1; round <= cfg.rounds; round++ {
		var tug, etc *storeResults
		runTug := func() error {
			if cfg.only == "etcd" {
				return nil
			}
			tug, err = benchTugboat(ctx, cfg, values)
			runtime.GC()
			return err
		}
		runEtcd := func() error {
			if cfg.only == "tugboat" {
				return nil
			}
			etc, err = benchEtcd(ctx, cfg, values)
			runtime.GC()
			return err
		}
		first, second := runTug, runEtcd
		if round%2 == 0 {
			first, second = runEtcd, runTug
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
		fmt.Printf("\n== round %d of %d\n", round, cfg.rounds)
		printResults(os.Stdout, cfg, tug, etc)
		rounds = append(rounds, resultValues(tug, etc))
	}
	fmt.Println()
	fmt.Println(formatResult(medians(rounds)))
	return nil
}

// medians returns the per-field median over rounds (NaN fields sort last).
func medians(rounds [][4]float64) [4]float64 {
	var out [4]float64
	for f := range out {
		col := make([]float64, len(rounds))
		for i, r := range rounds {
			col[i] = r[f]
		}
		slices.SortFunc(col, func(a, b float64) int {
			switch {
			case math.IsNaN(a) && math.IsNaN(b):
				return 0
			case math.IsNaN(a):
				return 1
			case math.IsNaN(b):
				return -1
			}
			return cmp.Compare(a, b)
		})
		out[f] = col[len(col)/2]
	}
	return out
}

// benchTugboat runs the workloads against a fresh durable Badger store,
// under the CPU profiler if -cpuprofile is set.
func benchTugboat(ctx context.Context, cfg storeConfig, values [][]byte) (res *storeResults, err error) {
	dir, err := os.MkdirTemp(cfg.dir, "tugbench-tugboat-")
	if err != nil {
		return nil, fmt.Errorf("make data dir: %w", err)
	}
	defer os.RemoveAll(dir)
	if cfg.cpuprofile != "" {
		stop, perr := startCPUProfile(cfg.cpuprofile)
		if perr != nil {
			return nil, perr
		}
		defer func() {
			if perr := stop(); perr != nil && err == nil {
				err = perr
			}
		}()
	}
	if cfg.trace != "" {
		stop, terr := startTrace(cfg.trace)
		if terr != nil {
			return nil, terr
		}
		defer func() {
			if terr := stop(); terr != nil && err == nil {
				err = terr
			}
		}()
	}
	s, err := tbadger.Open(tbadger.Options{Dir: dir})
	if err != nil {
		return nil, fmt.Errorf("open badger store: %w", err)
	}
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close badger store: %w", cerr)
		}
	}()
	return runWorkloads(ctx, cfg, values, "tugboat", "embedded", tugboatTarget{s}, nil)
}

// startTrace records an execution trace into path until stop is called.
func startTrace(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create trace: %w", err)
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start trace: %w", err)
	}
	return func() error {
		trace.Stop()
		if err := f.Close(); err != nil {
			return fmt.Errorf("write trace: %w", err)
		}
		return nil
	}, nil
}

// startCPUProfile profiles this process into path until stop is called.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("write cpu profile: %w", err)
		}
		return nil
	}, nil
}

// benchEtcd runs the workloads against a fresh embedded etcd through a
// loopback gRPC client, and the creates also through an in-process client.
func benchEtcd(ctx context.Context, cfg storeConfig, values [][]byte) (*storeResults, error) {
	dir, err := os.MkdirTemp(cfg.dir, "tugbench-etcd-")
	if err != nil {
		return nil, fmt.Errorf("make data dir: %w", err)
	}
	defer os.RemoveAll(dir)
	srv, err := startEtcd(dir)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	cli, err := srv.grpcClient()
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	var inproc target
	if cfg.etcdInProc {
		c := srv.inProcClient()
		defer c.Close()
		inproc = etcdTarget{c}
	}
	return runWorkloads(ctx, cfg, values, "etcd", "grpc", etcdTarget{cli}, inproc)
}

// runWorkloads runs the creates for every client count (also through
// inproc, if not nil, labelled "inproc") and then the watch fan-out.
func runWorkloads(ctx context.Context, cfg storeConfig, values [][]byte, name, client string, t, inproc target) (*storeResults, error) {
	res := &storeResults{}
	var seq atomic.Int64 // key numbers, unique within the store
	for _, n := range cfg.clients {
		progress("%s: creates, %d client(s) over %s", name, n, client)
		r, err := runCreates(ctx, t, &seq, values, n, cfg.warmup, cfg.duration)
		if err != nil {
			return nil, err
		}
		r.store, r.client = name, client
		res.creates = append(res.creates, r)
	}
	if inproc != nil {
		for _, n := range cfg.clients {
			progress("%s: creates, %d client(s) in-process", name, n)
			r, err := runCreates(ctx, inproc, &seq, values, n, cfg.warmup, cfg.duration)
			if err != nil {
				return nil, err
			}
			r.store, r.client = name, "inproc"
			res.creates = append(res.creates, r)
		}
	}
	if cfg.watchers > 0 {
		progress("%s: watch fan-out, %d watchers, %d writes/s over %s", name, cfg.watchers, cfg.watchRate, client)
		w, err := runWatch(ctx, t, cfg, values)
		if err != nil {
			return nil, err
		}
		w.store, w.client = name, client
		res.watch = &w
	}
	return res, nil
}

// tugboatTarget runs the workloads against a store.Store in this process.
type tugboatTarget struct {
	s store.Store
}

var _ target = tugboatTarget{}

func (t tugboatTarget) create(ctx context.Context, key string, value []byte) (int64, error) {
	kv, err := t.s.Create(ctx, key, value, store.WriteOptions{})
	if err != nil {
		return 0, err
	}
	return kv.ModRevision, nil
}

func (t tugboatTarget) revision(context.Context) (int64, error) {
	return t.s.Revision(), nil
}

func (t tugboatTarget) watch(ctx context.Context, prefix string, after int64, deliver func(rev int64)) (*watchHandle, error) {
	w, err := t.s.Watch(ctx, prefix, after)
	if err != nil {
		return nil, err
	}
	h := &watchHandle{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		defer w.Stop()
		for ev := range w.Events() {
			if ev.Type != store.Bookmark {
				deliver(ev.Revision)
			}
		}
		if err := w.Err(); err != nil {
			h.err = fmt.Errorf("watch %s: %w", prefix, err)
		}
	}()
	return h, nil
}

// createResult is one run of the create workload.
type createResult struct {
	store, client string
	clients       int
	elapsed       time.Duration   // from the end of the warm-up to the last measured op's end
	lat           []time.Duration // every measured op's latency, sorted
}

func (r createResult) opsPerSec() float64 {
	return float64(len(r.lat)) / r.elapsed.Seconds()
}

// runCreates has n clients create distinct keys back to back for warmup +
// duration; ops that start after the warm-up are measured. Any error aborts
// the run: a benchmark with failed writes measures nothing useful.
func runCreates(ctx context.Context, t target, seq *atomic.Int64, values [][]byte, n int, warmup, duration time.Duration) (createResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	begin := time.Now()
	measureFrom := begin.Add(warmup)
	end := measureFrom.Add(duration)
	samples := make([][]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				start := time.Now()
				if !start.Before(end) {
					break
				}
				k := seq.Add(1)
				_, err := t.create(ctx, createPrefix+strconv.FormatInt(k, 10), values[k%int64(len(values))])
				d := time.Since(start)
				if err != nil {
					cancel(err)
					return
				}
				if !start.Before(measureFrom) {
					lat = append(lat, d)
				}
			}
			samples[i] = lat
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return createResult{}, fmt.Errorf("creates with %d clients: %w", n, err)
	}
	r := createResult{clients: n, elapsed: time.Since(measureFrom), lat: slices.Concat(samples...)}
	slices.Sort(r.lat)
	return r, nil
}

// watchResult is one run of the watch fan-out workload.
type watchResult struct {
	store, client string
	watchers      int
	writes        int             // measured writes
	writesPerSec  float64         // achieved rate of measured writes
	deliveries    int             // (watcher, measured write) deliveries received
	missed        int             // expected deliveries never received
	disorder      int             // deliveries not in strictly increasing revision order
	early         int             // deliveries received before the write was acknowledged
	drain         time.Duration   // from the last ack until every watcher had it
	ackLat        []time.Duration // delivery - ack of the write, sorted
	startLat      []time.Duration // delivery - start of the write, sorted
	watchErrs     int
	firstErr      error
}

// deliveryLog records one watcher's deliveries into preallocated slices;
// only its own goroutine appends, last is read by the waiting writer.
type deliveryLog struct {
	rev  []int64
	at   []time.Duration // since the run's base time (monotonic)
	last atomic.Int64
}

// runWatch starts cfg.watchers watches on one prefix, then writes
// cfg.watchRate creates per second for warmup + duration and measures, for
// every (watcher, measured write), the time from the write's ack (the
// moment create returned, keyed by revision) to its delivery.
func runWatch(ctx context.Context, t target, cfg storeConfig, values [][]byte) (watchResult, error) {
	res := watchResult{watchers: cfg.watchers}
	base := time.Now()
	rev0, err := t.revision(ctx)
	if err != nil {
		return res, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	expect := int(float64(cfg.watchRate)*(cfg.warmup+cfg.duration).Seconds()*1.1) + 16
	logs := make([]*deliveryLog, cfg.watchers)
	handles := make([]*watchHandle, cfg.watchers)
	for i := range logs {
		l := &deliveryLog{rev: make([]int64, 0, expect), at: make([]time.Duration, 0, expect)}
		logs[i] = l
		h, err := t.watch(wctx, watchPrefix, rev0, func(rev int64) {
			l.at = append(l.at, time.Since(base))
			l.rev = append(l.rev, rev)
			l.last.Store(rev)
		})
		if err != nil {
			return res, fmt.Errorf("start watcher %d: %w", i, err)
		}
		handles[i] = h
	}

	acks, starts, lastRev, err := paceWrites(ctx, t, cfg, values, base)
	if err != nil {
		return res, err
	}
	lastAck := time.Now()
	res.writes = len(acks)
	res.writesPerSec = float64(len(acks)) / cfg.duration.Seconds()

	waitDelivered(logs, handles, lastRev, time.Now().Add(max(10*time.Second, cfg.duration)))
	res.drain = time.Since(lastAck)
	cancel()
	stopDeadline := time.After(30 * time.Second)
	for _, h := range handles {
		select {
		case <-h.done:
		case <-stopDeadline:
			return res, fmt.Errorf("watchers did not stop 30s after cancellation: %w", errdefs.ErrUnavailable)
		}
		if h.err != nil {
			res.watchErrs++
			if res.firstErr == nil {
				res.firstErr = h.err
			}
		}
	}
	res.tally(logs, acks, starts)
	return res, nil
}

// waitDelivered returns once every watcher still running has received
// lastRev, or at deadline.
func waitDelivered(logs []*deliveryLog, handles []*watchHandle, lastRev int64, deadline time.Time) {
	for {
		pending := 0
		for i, l := range logs {
			select {
			case <-handles[i].done:
				continue
			default:
			}
			if l.last.Load() < lastRev {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// tally turns the watchers' logs into sorted latencies of the measured
// writes (acks and starts hold exactly those) and counts anomalies.
func (res *watchResult) tally(logs []*deliveryLog, acks, starts map[int64]time.Duration) {
	total := 0
	for _, l := range logs {
		total += len(l.rev)
	}
	res.ackLat = make([]time.Duration, 0, total)
	res.startLat = make([]time.Duration, 0, total)
	for _, l := range logs {
		var prev int64
		for i, rev := range l.rev {
			if rev <= prev {
				res.disorder++
			}
			prev = rev
			ack, ok := acks[rev]
			if !ok {
				continue // a warm-up write
			}
			d := l.at[i] - ack
			if d < 0 {
				res.early++
			}
			res.ackLat = append(res.ackLat, d)
			res.startLat = append(res.startLat, l.at[i]-starts[rev])
		}
	}
	res.deliveries = len(res.ackLat)
	res.missed = res.writes*len(logs) - res.deliveries
	slices.Sort(res.ackLat)
	slices.Sort(res.startLat)
}

// paceWrites creates one key per tick of a cfg.watchRate ticker for warmup +
// duration. Each value carries its start time (UnixNano, big-endian) in its
// first 8 bytes. It returns, for each write after the warm-up, its ack and
// start times (since base) keyed by revision, and the last revision written.
func paceWrites(ctx context.Context, t target, cfg storeConfig, values [][]byte, base time.Time) (acks, starts map[int64]time.Duration, lastRev int64, err error) {
	n := int(float64(cfg.watchRate)*cfg.duration.Seconds()) + 16
	acks = make(map[int64]time.Duration, n)
	starts = make(map[int64]time.Duration, n)
	ticker := time.NewTicker(time.Second / time.Duration(cfg.watchRate))
	defer ticker.Stop()
	measureFrom := time.Now().Add(cfg.warmup)
	end := measureFrom.Add(cfg.duration)
	for i := 0; ; i++ {
		var tick time.Time
		select {
		case tick = <-ticker.C:
		case <-ctx.Done():
			return nil, nil, 0, ctx.Err()
		}
		if !tick.Before(end) {
			break
		}
		value := make([]byte, cfg.valueSize)
		copy(value, values[i%len(values)])
		start := time.Now()
		binary.BigEndian.PutUint64(value, uint64(start.UnixNano()))
		rev, err := t.create(ctx, watchPrefix+strconv.Itoa(i), value)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("paced write %d: %w", i, err)
		}
		ack := time.Since(base)
		lastRev = rev
		if !tick.Before(measureFrom) {
			acks[rev] = ack
			starts[rev] = start.Sub(base)
		}
	}
	return acks, starts, lastRev, nil
}

// percentile returns the nearest-rank p-quantile (0 < p <= 1) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tugbench: "+format+"\n", args...)
}

// printMachine prints what the numbers depend on: CPUs, CPU model, memory,
// Go version and the file system that absorbs the fsyncs.
func printMachine(w io.Writer, cfg storeConfig) {
	fmt.Fprintf(w, "machine: nproc %d (GOMAXPROCS %d), cpu %s, memory %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), procField("/proc/cpuinfo", "model name"), procField("/proc/meminfo", "MemTotal"))
	fmt.Fprintf(w, "go: %s %s/%s, linux %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, readTrim("/proc/sys/kernel/osrelease"))
	fmt.Fprintf(w, "data: temp dirs under %s (%s; 4 KiB write+fsync %s), fsync on for both stores\n", cfg.dir, fsType(cfg.dir), fsyncCost(cfg.dir))
	fmt.Fprintf(w, "workload: %d-byte random values, %s measured after %s warm-up, clients %v, %d watchers at %d writes/s\n\n",
		cfg.valueSize, cfg.duration, cfg.warmup, cfg.clients, cfg.watchers, cfg.watchRate)
}

// fsyncCost times 100 appends of 4 KiB, each followed by fsync, in a file
// under dir: the floor of a durable write's latency on this disk.
func fsyncCost(dir string) string {
	f, err := os.CreateTemp(dir, "tugbench-fsync-")
	if err != nil {
		return "unknown"
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	lat := make([]time.Duration, 0, 100)
	for range 100 {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			return "unknown"
		}
		if err := f.Sync(); err != nil {
			return "unknown"
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return "p50 " + ms(percentile(lat, 0.5)) + " ms, p99 " + ms(percentile(lat, 0.99)) + " ms"
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "unknown".
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "unknown"
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// fsType returns the type of the file system holding dir, from the longest
// matching mount point in /proc/self/mountinfo, or "unknown".
func fsType(dir string) string {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "unknown"
	}
	dir, _ = filepath.Abs(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	best, typ := -1, "unknown"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(postFields) < 1 {
			continue
		}
		mp := fields[4]
		under := dir == mp || mp == "/" || strings.HasPrefix(dir, mp+"/")
		if under && len(mp) > best {
			best, typ = len(mp), postFields[0]
		}
	}
	return typ
}

// printResults prints the tables and, last, the RESULT line.
func printResults(w io.Writer, cfg storeConfig, tug, etc *storeResults) {
	fmt.Fprintf(w, "creates (%d-byte values, durable)\n", cfg.valueSize)
	fmt.Fprintf(w, "%-8s %-9s %7s %9s %8s %8s %8s %8s\n", "store", "client", "clients", "ops/s", "p50 ms", "p99 ms", "p999 ms", "max ms")
	for _, res := range []*storeResults{tug, etc} {
		if res == nil {
			continue
		}
		for _, r := range res.creates {
			fmt.Fprintf(w, "%-8s %-9s %7d %9.1f %8s %8s %8s %8s\n", r.store, r.client, r.clients, r.opsPerSec(),
				ms(percentile(r.lat, 0.50)), ms(percentile(r.lat, 0.99)), ms(percentile(r.lat, 0.999)), ms(percentile(r.lat, 1)))
		}
	}
	if cfg.watchers > 0 {
		fmt.Fprintf(w, "\nwatch fan-out (%d watchers on one prefix; ack = create returned, start = create called)\n", cfg.watchers)
		fmt.Fprintf(w, "%-8s %-9s %8s %11s %7s %11s %11s %13s %13s %9s\n", "store", "client", "writes/s", "deliveries", "missed",
			"ack p50 ms", "ack p99 ms", "start p50 ms", "start p99 ms", "drain ms")
		for _, res := range []*storeResults{tug, etc} {
			if res == nil || res.watch == nil {
				continue
			}
			r := res.watch
			fmt.Fprintf(w, "%-8s %-9s %8.1f %11d %7d %11s %11s %13s %13s %9s\n", r.store, r.client, r.writesPerSec, r.deliveries, r.missed,
				ms(percentile(r.ackLat, 0.50)), ms(percentile(r.ackLat, 0.99)),
				ms(percentile(r.startLat, 0.50)), ms(percentile(r.startLat, 0.99)), ms(r.drain))
			if r.early > 0 {
				fmt.Fprintf(w, "  %s: %d deliveries arrived before the writer saw the ack (negative ack latency)\n", r.store, r.early)
			}
			if r.disorder > 0 {
				fmt.Fprintf(w, "  %s: %d deliveries out of revision order or duplicated\n", r.store, r.disorder)
			}
			if r.watchErrs > 0 {
				fmt.Fprintf(w, "  %s: %d watchers ended with an error, first: %v\n", r.store, r.watchErrs, r.firstErr)
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "round: "+formatResult(resultValues(tug, etc)))
}

// formatResult prints the RESULT line.
func formatResult(v [4]float64) string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
	return fmt.Sprintf("RESULT store_writes_c64_ratio=%s store_p99_c1_ratio=%s store_p99_c64_ratio=%s watch_p99_ms=%s",
		f(v[0]), f(v[1]), f(v[2]), f(v[3]))
}

// resultValues compares Tugboat with etcd over gRPC: writes/s ratio at 64
// clients, p99 ratios at 1 and 64 clients, and Tugboat's watch p99 in ms.
// A value that cannot be computed from this run is NaN.
func resultValues(tug, etc *storeResults) [4]float64 {
	find := func(res *storeResults, clients int) (createResult, bool) {
		if res == nil {
			return createResult{}, false
		}
		for _, r := range res.creates {
			if r.clients == clients && r.client != "inproc" && len(r.lat) > 0 {
				return r, true
			}
		}
		return createResult{}, false
	}
	ratio := func(clients int, f func(createResult) float64) float64 {
		a, okA := find(tug, clients)
		b, okB := find(etc, clients)
		if !okA || !okB || f(b) == 0 {
			return math.NaN()
		}
		return f(a) / f(b)
	}
	p99 := func(r createResult) float64 { return float64(percentile(r.lat, 0.99)) }
	watch := math.NaN()
	if tug != nil && tug.watch != nil && len(tug.watch.ackLat) > 0 {
		watch = float64(percentile(tug.watch.ackLat, 0.99)) / float64(time.Millisecond)
	}
	return [4]float64{ratio(64, createResult.opsPerSec), ratio(1, p99), ratio(64, p99), watch}
}
