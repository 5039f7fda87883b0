package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	goruntime "runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Plugin is a filter and/or score plugin as the driver sees it: one
// instance (or a pool the adapter serializes) that answers hostapi's
// scheduler requests. A *runtime.Plugin (Wasm) and a natively linked
// *scheduler.Module of the SDK both satisfy it. Calls come from one
// goroutine at a time.
type Plugin interface {
	Name() string
	// Call runs export (hostapi.ExportFilter or hostapi.ExportScore) with
	// the encoded request and returns the encoded response.
	Call(ctx context.Context, export string, req []byte) ([]byte, error)
}

// Relevancer is implemented by plugins that declare when they are
// relevant (hostapi's relevance section): each result is a set of
// hostapi.SchedWhen* facts, 0 meaning always. The profile calls the
// plugin's filter (score) only for attempts where one of the facts holds;
// the changes it missed reach it with its next call. A *runtime.Plugin
// answers what its module's hostapi.ExportSchedRelevance said at load, a
// native *scheduler.Module what its plugin declares.
type Relevancer interface {
	Relevance() (filter, score uint64)
}

// PluginConfig places a plugin in a profile.
type PluginConfig struct {
	Plugin Plugin
	// Filter and Score say which entry points the profile uses.
	Filter, Score bool
	// Weight multiplies the plugin's scores; 0 means 1.
	Weight int64
	// Parts, when set, are the score parts of a module that computes
	// several scorers in one call (hostapi's score parts), in the order
	// of its vectors, each with its name (in Result.PluginScores) and
	// weight (0 means 1); Weight is then unused.
	Parts []ScorePart
}

// ScorePart is one scorer of a module with several score parts.
type ScorePart struct {
	Name   string
	Weight int64
}

// Options tune one Schedule call.
type Options struct {
	// AllNodes evaluates every node instead of stopping once enough
	// feasible nodes are found.
	AllNodes bool
	// Trace fills Result.Reasons, Scores and PluginScores, scores even a
	// single feasible node, and breaks score ties by the smallest node
	// name (deterministic, for tests).
	Trace bool
}

// Result is the outcome of one scheduling attempt.
type Result struct {
	// Node is the chosen node; "" when no node fits.
	Node string
	// NumNodes is the number of nodes in the snapshot; Evaluated how many
	// were filtered, Feasible how many passed every filter.
	NumNodes, Evaluated, Feasible int
	// Message explains why no node fits, like kube-scheduler's
	// `0/5 nodes are available: 3 Insufficient cpu, 2 node(s) didn't match
	// Pod's node affinity/selector.` (empty when Node is set).
	Message string
	// Reasons are the rejected nodes' reasons (when Node is "" or with
	// Options.Trace).
	Reasons map[string][]string
	// Scores are the weighted total scores and PluginScores each plugin's
	// scores (0..100, before weights) per node (Options.Trace only).
	Scores       map[string]int64
	PluginScores map[string]map[string]int64

	req requests
	// unresolvable are the nodes rejected for reasons preemption cannot
	// change (when Node is "").
	unresolvable map[int32]bool
}

// pluginState is a plugin with the generation its instance has seen.
type pluginState struct {
	plugin Plugin
	name   string
	// parts are the score vectors the plugin answers with (one, named
	// like the plugin, unless configured).
	parts []ScorePart
	// filterWhen and scoreWhen are the plugin's relevance (0: always).
	filterWhen, scoreWhen uint64
	snap                  *Snapshot // the snapshot gen belongs to
	gen                   uint64    // 0: send the full table
	stats                 PluginStats
	// skip: the plugin answered SchedStatusSkip to this attempt's filter.
	skip bool
	// buf, out and err serve parallel calls.
	buf []byte
	out []byte
	err error
}

// PluginStats count one plugin's calls in a profile.
type PluginStats struct {
	Name string
	// FilterCalls and ScoreCalls count calls; Resyncs the calls that sent
	// the full table.
	FilterCalls, ScoreCalls, Resyncs int64
	// Nodes is the number of candidate nodes passed in all calls.
	Nodes int64
	// Skips counts the calls answered with "skip".
	Skips int64
	// Idle counts the calls not made because none of the facts of the
	// plugin's relevance held for the attempt.
	Idle int64
	// Bytes counts the request bytes sent.
	Bytes int64
	// FullTime is the part of Time spent in calls that sent the full
	// table.
	FullTime time.Duration
	// Time is the time spent in calls (encoding, the plugin, decoding).
	Time time.Duration
}

// podSeq numbers scheduling attempts across all profiles and snapshots, so
// a plugin instance never mistakes one pod for another.
var podSeq atomic.Uint64

// Profile is one scheduler profile (one spec.schedulerName): its filters
// in order and its weighted scorers. Not safe for concurrent use.
type Profile struct {
	name    string
	filters []*pluginState
	scorers []*pluginState
	all     []*pluginState
	rng     *rand.Rand
	next    int // rotating start of the node search

	buf      []byte
	podPart  []byte
	cands    []int32
	pos      []int32 // search position of each candidate
	keep     []int32
	keepPos  []int32
	feasible []int32
	// feasiblePos is the search position of each feasible node.
	feasiblePos []int32
	rejected    []rejection
	totals      []int64
	active      []*pluginState
	scoring     []*pluginState
	alive       []bool
	// facts are the hostapi.SchedWhen* facts of the current attempt.
	facts uint64
	// parallel is how many plugins are called at once (1: in sequence).
	parallel int
}

// rejection is one node's reasons.
type rejection struct {
	node    int32
	reasons []string
	// unresolvable: removing pods cannot make the node fit (the plugin
	// said so; preemption skips it).
	unresolvable bool
}

// reasonSet is one reason set of a filter response.
type reasonSet struct {
	reasons      []string
	unresolvable bool
}

// NewProfile returns the profile named name (the spec.schedulerName it
// serves). Filters run in the order given.
func NewProfile(name string, plugins []PluginConfig) (*Profile, error) {
	if name == "" {
		return nil, fmt.Errorf("profile has no name: %w", errdefs.ErrInvalid)
	}
	p := &Profile{name: name, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), parallel: goruntime.GOMAXPROCS(0)}
	seen := map[Plugin]*pluginState{}
	for i, c := range plugins {
		if c.Plugin == nil {
			return nil, fmt.Errorf("profile %s: plugin %d is nil: %w", name, i, errdefs.ErrInvalid)
		}
		if !c.Filter && !c.Score {
			return nil, fmt.Errorf("profile %s: plugin %s neither filters nor scores: %w", name, c.Plugin.Name(), errdefs.ErrInvalid)
		}
		if c.Weight < 0 {
			return nil, fmt.Errorf("profile %s: plugin %s has a negative weight: %w", name, c.Plugin.Name(), errdefs.ErrInvalid)
		}
		st := seen[c.Plugin]
		if st == nil {
			st = &pluginState{plugin: c.Plugin, name: c.Plugin.Name()}
			if r, ok := c.Plugin.(Relevancer); ok {
				st.filterWhen, st.scoreWhen = r.Relevance()
			}
			seen[c.Plugin] = st
			p.all = append(p.all, st)
		}
		if c.Filter {
			p.filters = append(p.filters, st)
		}
		if c.Score {
			st.parts = []ScorePart{{Name: st.name, Weight: c.Weight}}
			if len(c.Parts) > 0 {
				st.parts = slices.Clone(c.Parts)
			}
			for i := range st.parts {
				if st.parts[i].Weight < 0 {
					return nil, fmt.Errorf("profile %s: plugin %s: part %s has a negative weight: %w", name, st.name, st.parts[i].Name, errdefs.ErrInvalid)
				}
				if st.parts[i].Weight == 0 {
					st.parts[i].Weight = 1
				}
			}
			p.scorers = append(p.scorers, st)
		}
	}
	return p, nil
}

// SetParallelism sets how many plugins are called at once: filters on the
// same candidates (results combined in order, as if in sequence) and
// scorers. 1 calls them one after the other, each filter on the previous
// one's survivors. The default is GOMAXPROCS. Call it before scheduling.
func (p *Profile) SetParallelism(n int) { p.parallel = max(n, 1) }

// Stats returns the call statistics of the profile's plugins.
func (p *Profile) Stats() []PluginStats {
	out := make([]PluginStats, len(p.all))
	for i, st := range p.all {
		out[i] = st.stats
		out[i].Name = st.name
	}
	return out
}

// Name returns the profile's scheduler name.
func (p *Profile) Name() string { return p.name }

// minGen is the oldest generation any plugin of the profile has seen.
func (p *Profile) minGen() uint64 {
	m := ^uint64(0)
	for _, st := range p.all {
		m = min(m, st.gen)
	}
	return m
}

// numFeasibleToFind is kube-scheduler's adaptive percentageOfNodesToScore:
// all nodes below 100, else 50 - n/125 percent (at least 5), at least 100.
func numFeasibleToFind(n int) int {
	if n < 100 {
		return n
	}
	pct := max(50-n/125, 5)
	return max(n*pct/100, 100)
}

// Schedule picks a node for pod from snap. A plugin failure is an error
// (the attempt should be retried later); "nothing fits" is a Result with
// an empty Node and a Message.
func (p *Profile) Schedule(ctx context.Context, snap *Snapshot, pod *corev1.Pod, opts Options) (Result, error) {
	res := Result{NumNodes: snap.NumNodes(), req: podRequests(pod)}
	n := res.NumNodes
	if n == 0 {
		res.Message = "no nodes available to schedule pods"
		return res, nil
	}
	if err := p.encodePod(pod, &res.req); err != nil {
		return res, err
	}
	want := numFeasibleToFind(n)
	if opts.AllNodes {
		want = n
	}
	start := p.next % n
	p.feasible = p.feasible[:0]
	p.rejected = p.rejected[:0]
	p.facts = podFacts(pod) | snap.facts()
	for _, f := range p.filters {
		f.skip = !relevant(f.filterWhen, p.facts)
		if f.skip {
			f.stats.Idle++
		}
	}
	p.feasiblePos = p.feasiblePos[:0]
	// A little more than needed in the first chunk: one node short would
	// cost every filter a second call.
	processed, chunk := 0, want
	if want < n {
		chunk = want + want/16 + 8
	}
	for processed < n && len(p.feasible) < want {
		k := min(chunk, n-processed)
		p.cands, p.pos = p.cands[:0], p.pos[:0]
		for i := range k {
			p.cands = append(p.cands, snap.order[(start+processed+i)%n])
			p.pos = append(p.pos, int32(processed+i))
		}
		processed += k
		if err := p.filterChunk(ctx, snap); err != nil {
			return res, err
		}
		p.feasible = append(p.feasible, p.cands...)
		p.feasiblePos = append(p.feasiblePos, p.pos...)
		found := len(p.feasible)
		if found == 0 {
			chunk = n
		} else {
			chunk = (want-found)*processed/found*5/4 + 16
		}
	}
	if len(p.feasible) > want {
		// Keep the first want, like kube-scheduler's search, and resume
		// the next search right after the last one kept.
		p.feasible = p.feasible[:want]
		processed = int(p.feasiblePos[want-1]) + 1
	}
	p.next = (start + processed) % n
	res.Evaluated, res.Feasible = processed, len(p.feasible)
	if len(p.rejected) > 0 && (opts.Trace || len(p.feasible) == 0) {
		res.Reasons = make(map[string][]string, len(p.rejected))
		for _, r := range p.rejected {
			res.Reasons[snap.nodes[r.node].name] = r.reasons
		}
	}
	if len(p.feasible) == 0 {
		res.Message = fitMessage(n, p.rejected)
		for _, r := range p.rejected {
			if r.unresolvable {
				if res.unresolvable == nil {
					res.unresolvable = map[int32]bool{}
				}
				res.unresolvable[r.node] = true
			}
		}
		return res, nil
	}
	if len(p.feasible) == 1 && !opts.Trace {
		res.Node = snap.nodes[p.feasible[0]].name
		return res, nil
	}
	if err := p.score(ctx, snap, &res, opts.Trace); err != nil {
		return res, err
	}
	res.Node = snap.nodes[p.pick(snap, opts.Trace)].name
	return res, nil
}

// encodePod encodes the pod part of this attempt's requests.
func (p *Profile) encodePod(pod *corev1.Pod, r *requests) error {
	cp := *pod
	cp.ManagedFields = nil
	if cp.APIVersion == "" {
		cp.APIVersion, cp.Kind = "v1", "Pod"
	}
	js, err := json.Marshal(&cp)
	if err != nil {
		return fmt.Errorf("encode pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	p.podPart = appendPod(p.podPart[:0], podSeq.Add(1), pod, r, js)
	return nil
}

// appendPod encodes the pod part of a request (hostapi's layout).
func appendPod(b []byte, seq uint64, pod *corev1.Pod, r *requests, js []byte) []byte {
	b = hostapi.AppendU64(b, seq)
	b = appendResources(b, r.list)
	b = hostapi.AppendI64(b, r.nonZeroCPU)
	b = hostapi.AppendI64(b, r.nonMem)
	for _, s := range []string{string(pod.UID), pod.Namespace, pod.Name, pod.Spec.NodeName, pod.Spec.SchedulerName} {
		b = hostapi.AppendStr(b, s)
	}
	var prio int64
	if pod.Spec.Priority != nil {
		prio = int64(*pod.Spec.Priority)
	}
	b = hostapi.AppendI64(b, prio)
	b = appendStringMap(b, pod.Labels)
	b = appendStringMap(b, pod.Spec.NodeSelector)
	b = hostapi.AppendU16(b, uint16(len(pod.Spec.Tolerations)))
	for _, t := range pod.Spec.Tolerations {
		b = hostapi.AppendStr(b, t.Key)
		b = hostapi.AppendStr(b, string(t.Operator))
		b = hostapi.AppendStr(b, t.Value)
		b = hostapi.AppendStr(b, string(t.Effect))
	}
	n := len(pod.Spec.InitContainers) + len(pod.Spec.Containers)
	b = hostapi.AppendU16(b, uint16(n))
	var ports int
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			b = hostapi.AppendStr(b, cs[i].Image)
			for _, cp := range cs[i].Ports {
				if cp.HostPort > 0 {
					ports++
				}
			}
		}
	}
	b = hostapi.AppendU16(b, uint16(ports))
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			for _, cp := range cs[i].Ports {
				if cp.HostPort <= 0 {
					continue
				}
				proto := string(cp.Protocol)
				if proto == "" {
					proto = string(corev1.ProtocolTCP)
				}
				b = hostapi.AppendStr(b, proto)
				b = hostapi.AppendStr(b, cp.HostIP)
				b = hostapi.AppendU32(b, uint32(cp.HostPort))
			}
		}
	}
	var aff, spread []byte
	if pod.Spec.Affinity != nil {
		aff, _ = json.Marshal(pod.Spec.Affinity)
	}
	if len(pod.Spec.TopologySpreadConstraints) > 0 {
		spread, _ = json.Marshal(pod.Spec.TopologySpreadConstraints)
	}
	b = hostapi.AppendBlob(b, aff)
	b = hostapi.AppendBlob(b, spread)
	return hostapi.AppendBlob(b, js)
}

// appendStringMap appends u16 n × (str key, str value), keys sorted.
func appendStringMap(b []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = hostapi.AppendU16(b, uint16(len(keys)))
	for _, k := range keys {
		b = hostapi.AppendStr(b, k)
		b = hostapi.AppendStr(b, m[k])
	}
	return b
}

// Warm sends the full table of snap to every plugin of the profile that
// has not seen it and may be called for the next pod, with an empty pod
// and no candidates, so that the first pods do not pay for it. A plugin
// whose relevance names only facts that do not hold now (none of the
// cluster's, or only the pod's) is left for its first call to load, as it
// may never be called. Plugins are warmed in parallel (up to GOMAXPROCS
// at once); a plugin that fails is reported and will get the table with
// its next call.
func (p *Profile) Warm(ctx context.Context, snap *Snapshot) error {
	d := snap.full()
	b := hostapi.AppendU64(nil, 0)
	b = hostapi.AppendU64(b, snap.gen)
	b = hostapi.AppendU32(b, d.nops)
	b = append(b, d.ops...)
	b = appendPod(b, podSeq.Add(1), &corev1.Pod{}, &requests{}, []byte("{}"))
	req := hostapi.AppendU32(b, 0)
	sem := make(chan struct{}, goruntime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	errs := make([]error, len(p.all))
	facts := snap.facts()
	for i, st := range p.all {
		if st.snap == snap && st.gen != 0 || !p.mayCall(st, facts) {
			continue
		}
		export := hostapi.ExportFilter
		if !slices.Contains(p.filters, st) {
			export = hostapi.ExportScore
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			t0 := time.Now()
			out, err := st.plugin.Call(ctx, export, req)
			st.stats.FullTime += time.Since(t0)
			st.stats.Time += time.Since(t0)
			st.stats.Resyncs++
			switch {
			case err != nil:
				errs[i] = err
			case len(out) > 0 && (out[0] == hostapi.SchedStatusOK || out[0] == hostapi.SchedStatusSkip):
				st.snap, st.gen = snap, snap.gen
			default:
				errs[i] = badResponse(st, export)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// call sends one request with the changes st has not seen, resending on
// a resync answer, and returns the response after its status byte.
func (p *Profile) call(ctx context.Context, snap *Snapshot, st *pluginState, export string, cands []int32, buf *[]byte) ([]byte, error) {
	if st.snap != snap {
		st.snap, st.gen = snap, 0
	}
	for range 3 {
		base := st.gen
		d := snap.delta(base)
		if base == 0 || d == nil {
			base, d = 0, snap.full()
		}
		b := hostapi.AppendU64((*buf)[:0], base)
		b = hostapi.AppendU64(b, snap.gen)
		b = hostapi.AppendU32(b, d.nops)
		b = append(b, d.ops...)
		b = append(b, p.podPart...)
		b = hostapi.AppendU32(b, uint32(len(cands)))
		for _, c := range cands {
			b = hostapi.AppendU32(b, uint32(c))
		}
		if cap(b) <= 1<<20 {
			*buf = b
		}
		t0 := time.Now()
		// Without cancellation: the plugin's own deadline bounds the
		// call, and a context that can end costs every call a
		// registration (measurable at 18 calls per pod).
		out, err := st.plugin.Call(context.WithoutCancel(ctx), export, b)
		took := time.Since(t0)
		st.stats.Time += took
		if base == 0 {
			st.stats.FullTime += took
		}
		st.stats.Nodes += int64(len(cands))
		st.stats.Bytes += int64(len(b))
		if export == hostapi.ExportFilter {
			st.stats.FilterCalls++
		} else {
			st.stats.ScoreCalls++
		}
		if base == 0 {
			st.stats.Resyncs++
		}
		if err != nil {
			st.gen = 0 // the instance may be new
			return nil, err
		}
		if len(out) == 0 {
			st.gen = 0
			return nil, fmt.Errorf("plugin %s: %s: empty response: %w", st.name, export, errdefs.ErrInvalid)
		}
		switch out[0] {
		case hostapi.SchedStatusOK:
			st.gen = snap.gen
			return out[1:], nil
		case hostapi.SchedStatusSkip:
			st.gen = snap.gen
			st.stats.Skips++
			return nil, errSkip
		case hostapi.SchedStatusResync:
			r := hostapi.NewSchedReader(out[1:])
			st.gen = r.U64()
			if r.Err() != nil || st.gen > snap.gen {
				st.gen = 0
			}
		case hostapi.SchedStatusError:
			st.gen = snap.gen
			r := hostapi.NewSchedReader(out[1:])
			msg := r.Blob()
			return nil, fmt.Errorf("plugin %s: %s: %s: %w", st.name, export, msg, errdefs.ErrPluginTrap)
		default:
			st.gen = 0
			return nil, fmt.Errorf("plugin %s: %s: unknown status %d: %w", st.name, export, out[0], errdefs.ErrInvalid)
		}
	}
	return nil, fmt.Errorf("plugin %s: %s: keeps asking for a resync: %w", st.name, export, errdefs.ErrInvalid)
}

// filterChunk runs the filters over p.cands and keeps the survivors
// there: one after the other, each on the previous one's survivors, or,
// with parallelism, all at once on the whole chunk, combined in order (a
// node's reasons are those of the first filter rejecting it, as in
// sequence).
func (p *Profile) filterChunk(ctx context.Context, snap *Snapshot) error {
	active := p.active[:0]
	for _, f := range p.filters {
		if !f.skip {
			active = append(active, f)
		}
	}
	p.active = active
	if p.parallel <= 1 || len(active) <= 1 {
		for _, f := range active {
			if len(p.cands) == 0 {
				break
			}
			if err := p.filter(ctx, snap, f); err != nil {
				return err
			}
		}
		return nil
	}
	p.fanOut(ctx, snap, hostapi.ExportFilter, active, p.cands)
	n := len(p.cands)
	if cap(p.alive) < n {
		p.alive = make([]bool, n)
	}
	alive := p.alive[:n]
	for i := range alive {
		alive[i] = true
	}
	for _, st := range active {
		if st.err == errSkip {
			st.skip = true
			continue
		}
		if st.err != nil {
			return st.err
		}
		sets, codes, err := parseFilter(st, st.out, n)
		if err != nil {
			return err
		}
		if codes == nil {
			continue
		}
		for i, c := range p.cands {
			if code := codes.at(i); code != 0 && alive[i] {
				alive[i] = false
				set := sets[code-1]
				p.rejected = append(p.rejected, rejection{node: c, reasons: set.reasons, unresolvable: set.unresolvable})
			}
		}
	}
	p.keep, p.keepPos = p.keep[:0], p.keepPos[:0]
	for i, c := range p.cands {
		if alive[i] {
			p.keep = append(p.keep, c)
			p.keepPos = append(p.keepPos, p.pos[i])
		}
	}
	p.cands, p.keep = p.keep, p.cands
	p.pos, p.keepPos = p.keepPos, p.pos
	return nil
}

// fanOut calls export on every plugin of sts with cands, p.parallel at a
// time, leaving each answer in st.out and st.err.
func (p *Profile) fanOut(ctx context.Context, snap *Snapshot, export string, sts []*pluginState, cands []int32) {
	sem := make(chan struct{}, p.parallel)
	var wg sync.WaitGroup
	for _, st := range sts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			st.out, st.err = p.call(ctx, snap, st, export, cands, &st.buf)
		}()
	}
	wg.Wait()
}

// filter runs one filter over p.cands and keeps the survivors there.
func (p *Profile) filter(ctx context.Context, snap *Snapshot, st *pluginState) error {
	out, err := p.call(ctx, snap, st, hostapi.ExportFilter, p.cands, &p.buf)
	if err == errSkip {
		st.skip = true
		return nil
	}
	if err != nil {
		return err
	}
	sets, codes, err := parseFilter(st, out, len(p.cands))
	if err != nil || codes == nil {
		return err
	}
	p.keep, p.keepPos = p.keep[:0], p.keepPos[:0]
	for i, c := range p.cands {
		code := codes.at(i)
		if code == 0 {
			p.keep = append(p.keep, c)
			p.keepPos = append(p.keepPos, p.pos[i])
			continue
		}
		set := sets[code-1]
		p.rejected = append(p.rejected, rejection{node: c, reasons: set.reasons, unresolvable: set.unresolvable})
	}
	p.cands, p.keep = p.keep, p.cands
	p.pos, p.keepPos = p.keepPos, p.pos
	return nil
}

// codes are a filter response's u16 codes, little-endian.
type codes []byte

func (c codes) at(i int) uint16 { return uint16(c[2*i]) | uint16(c[2*i+1])<<8 }

// parseFilter splits a filter response into its reason sets and codes
// (nil codes: every candidate passes), checking every code.
func parseFilter(st *pluginState, out []byte, ncands int) ([]reasonSet, codes, error) {
	r := hostapi.NewSchedReader(out)
	nsets := r.U32()
	if uint64(nsets) > uint64(r.Remaining()) {
		return nil, nil, badResponse(st, hostapi.ExportFilter)
	}
	sets := make([]reasonSet, nsets)
	for i := range sets {
		count := r.U8()
		set := make([]string, count&^hostapi.SchedReasonsUnresolvable)
		for j := range set {
			set[j] = r.Str()
		}
		sets[i] = reasonSet{reasons: set, unresolvable: count&hostapi.SchedReasonsUnresolvable != 0}
	}
	n := int(r.U32())
	if r.Err() != nil || (n != 0 && n != ncands) || r.Remaining() != 2*n {
		return nil, nil, badResponse(st, hostapi.ExportFilter)
	}
	if n == 0 {
		return sets, nil, nil
	}
	c := codes(r.Rest())
	for i := range n {
		if int(c.at(i)) > len(sets) {
			return nil, nil, badResponse(st, hostapi.ExportFilter)
		}
	}
	return sets, c, nil
}

// errSkip: the plugin answered SchedStatusSkip.
var errSkip = errors.New("skip")

func badResponse(st *pluginState, export string) error {
	return fmt.Errorf("plugin %s: %s: malformed response: %w", st.name, export, errdefs.ErrInvalid)
}

// score runs the scorers over p.feasible and leaves the weighted totals in
// p.totals.
func (p *Profile) score(ctx context.Context, snap *Snapshot, res *Result, trace bool) error {
	n := len(p.feasible)
	if cap(p.totals) < n {
		p.totals = make([]int64, n)
	}
	p.totals = p.totals[:n]
	clear(p.totals)
	if trace {
		res.PluginScores = map[string]map[string]int64{}
	}
	p.scoring = p.scoring[:0]
	for _, st := range p.scorers {
		if relevant(st.scoreWhen, p.facts) {
			p.scoring = append(p.scoring, st)
			continue
		}
		st.stats.Idle++
		if trace {
			for _, part := range st.parts {
				res.PluginScores[part.Name] = map[string]int64{}
			}
		}
	}
	parallel := p.parallel > 1 && len(p.scoring) > 1
	if parallel {
		p.fanOut(ctx, snap, hostapi.ExportScore, p.scoring, p.feasible)
	}
	for _, st := range p.scoring {
		var out []byte
		var err error
		if parallel {
			out, err = st.out, st.err
		} else {
			out, err = p.call(ctx, snap, st, hostapi.ExportScore, p.feasible, &p.buf)
		}
		if err == errSkip {
			if trace {
				for _, part := range st.parts {
					res.PluginScores[part.Name] = map[string]int64{}
				}
			}
			continue
		}
		if err != nil {
			return err
		}
		r := hostapi.NewSchedReader(out)
		for _, part := range st.parts {
			k := int(r.U32())
			if r.Err() != nil || (k != n && k != 0) || r.Remaining() < 8*k {
				return badResponse(st, hostapi.ExportScore)
			}
			var per map[string]int64
			if trace {
				per = make(map[string]int64, n)
				res.PluginScores[part.Name] = per
			}
			if k == 0 && per == nil {
				continue
			}
			for i := range n {
				var s int64
				if k != 0 {
					s = min(max(r.I64(), 0), hostapi.SchedMaxScore)
				}
				p.totals[i] += s * part.Weight
				if per != nil {
					per[snap.nodes[p.feasible[i]].name] = s
				}
			}
		}
		if r.Remaining() != 0 {
			return badResponse(st, hostapi.ExportScore)
		}
	}
	if trace {
		res.Scores = make(map[string]int64, n)
		for i, idx := range p.feasible {
			res.Scores[snap.nodes[idx].name] = p.totals[i]
		}
	}
	return nil
}

// pick returns the feasible node with the highest total, ties broken at
// random (reservoir sampling, like kube-scheduler) or, deterministic, by
// the smallest name.
func (p *Profile) pick(snap *Snapshot, deterministic bool) int32 {
	best, bestScore, ties := p.feasible[0], p.totals[0], 1
	for i := 1; i < len(p.feasible); i++ {
		idx, s := p.feasible[i], p.totals[i]
		switch {
		case s > bestScore:
			best, bestScore, ties = idx, s, 1
		case s == bestScore:
			ties++
			if deterministic {
				if snap.nodes[idx].name < snap.nodes[best].name {
					best = idx
				}
			} else if p.rng.IntN(ties) == 0 {
				best = idx
			}
		}
	}
	return best
}

// fitMessage formats kube-scheduler's FitError message: each reason
// counted over the rejected nodes, "<count> <reason>" strings sorted.
func fitMessage(numNodes int, rejected []rejection) string {
	counts := map[string]int{}
	for _, r := range rejected {
		for _, reason := range r.reasons {
			counts[reason]++
		}
	}
	hist := make([]string, 0, len(counts))
	for reason, c := range counts {
		hist = append(hist, strconv.Itoa(c)+" "+reason)
	}
	sort.Strings(hist)
	msg := "0/" + strconv.Itoa(numNodes) + " nodes are available"
	if len(hist) == 0 {
		return msg + "."
	}
	return msg + ": " + strings.Join(hist, ", ") + "."
}

// mayCall reports whether st may be called for a pod while the cluster
// has facts: it is used for something whose relevance is always, or names
// a cluster fact that holds.
func (p *Profile) mayCall(st *pluginState, facts uint64) bool {
	return slices.Contains(p.filters, st) && relevant(st.filterWhen, facts) ||
		slices.Contains(p.scorers, st) && relevant(st.scoreWhen, facts)
}

// relevant reports whether a plugin with relevance when must be called
// for an attempt with facts: always for 0 or a fact this host does not
// know, else when one of the facts holds.
func relevant(when, facts uint64) bool {
	return when == 0 || when&^hostapi.SchedWhenKnown != 0 || when&facts != 0
}

// podFacts returns the hostapi.SchedWhenPod* facts of pod.
func podFacts(pod *corev1.Pod) uint64 {
	var f uint64
	spec := &pod.Spec
	if spec.NodeName != "" {
		f |= hostapi.SchedWhenPodNodeName
	}
	if len(spec.NodeSelector) > 0 {
		f |= hostapi.SchedWhenPodNodeSelector
	}
	if a := spec.Affinity; a != nil {
		if a.NodeAffinity != nil {
			f |= hostapi.SchedWhenPodNodeAffinity
		}
		if a.PodAffinity != nil || a.PodAntiAffinity != nil {
			f |= hostapi.SchedWhenPodPodAffinity
		}
	}
	if len(spec.TopologySpreadConstraints) > 0 {
		f |= hostapi.SchedWhenPodSpread
	}
	if len(spec.Tolerations) > 0 {
		f |= hostapi.SchedWhenPodTolerations
	}
	if metav1.GetControllerOfNoCopy(pod) != nil {
		f |= hostapi.SchedWhenPodControlled
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			for _, port := range cs[i].Ports {
				if port.HostPort > 0 {
					f |= hostapi.SchedWhenPodHostPorts
				}
			}
		}
	}
	return f
}
