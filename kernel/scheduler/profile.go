package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

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

// PluginConfig places a plugin in a profile.
type PluginConfig struct {
	Plugin Plugin
	// Filter and Score say which entry points the profile uses.
	Filter, Score bool
	// Weight multiplies the plugin's scores; 0 means 1.
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
}

// pluginState is a plugin with the generation its instance has seen.
type pluginState struct {
	plugin Plugin
	name   string
	weight int64
	gen    uint64 // 0: send the full table
}

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
	keep     []int32
	feasible []int32
	rejected []rejection
	totals   []int64
}

// rejection is one node's reasons.
type rejection struct {
	node    int32
	reasons []string
}

// NewProfile returns the profile named name (the spec.schedulerName it
// serves). Filters run in the order given.
func NewProfile(name string, plugins []PluginConfig) (*Profile, error) {
	if name == "" {
		return nil, fmt.Errorf("profile has no name: %w", errdefs.ErrInvalid)
	}
	p := &Profile{name: name, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
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
			seen[c.Plugin] = st
			p.all = append(p.all, st)
		}
		if c.Filter {
			p.filters = append(p.filters, st)
		}
		if c.Score {
			st.weight = c.Weight
			if st.weight == 0 {
				st.weight = 1
			}
			p.scorers = append(p.scorers, st)
		}
	}
	return p, nil
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
	if err := p.encodePod(snap, pod, &res.req); err != nil {
		return res, err
	}
	want := numFeasibleToFind(n)
	if opts.AllNodes {
		want = n
	}
	start := p.next % n
	p.feasible = p.feasible[:0]
	p.rejected = p.rejected[:0]
	processed, chunk := 0, want
	for processed < n && len(p.feasible) < want {
		k := min(chunk, n-processed)
		p.cands = p.cands[:0]
		for i := range k {
			p.cands = append(p.cands, snap.order[(start+processed+i)%n])
		}
		processed += k
		for _, f := range p.filters {
			if len(p.cands) == 0 {
				break
			}
			if err := p.filter(ctx, snap, f); err != nil {
				return res, err
			}
		}
		p.feasible = append(p.feasible, p.cands...)
		found := len(p.feasible)
		if found == 0 {
			chunk = n
		} else {
			chunk = (want-found)*processed/found*5/4 + 16
		}
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
func (p *Profile) encodePod(snap *Snapshot, pod *corev1.Pod, r *requests) error {
	cp := *pod
	cp.ManagedFields = nil
	if cp.APIVersion == "" {
		cp.APIVersion, cp.Kind = "v1", "Pod"
	}
	js, err := json.Marshal(&cp)
	if err != nil {
		return fmt.Errorf("encode pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	snap.podSeq++
	b := hostapi.AppendU64(p.podPart[:0], snap.podSeq)
	b = appendResources(b, r.list)
	b = hostapi.AppendI64(b, r.nonZeroCPU)
	b = hostapi.AppendI64(b, r.nonMem)
	p.podPart = hostapi.AppendBlob(b, js)
	return nil
}

// call sends one request with the changes st has not seen, resending on
// a resync answer, and returns the response after its status byte.
func (p *Profile) call(ctx context.Context, snap *Snapshot, st *pluginState, export string, cands []int32) ([]byte, error) {
	for range 3 {
		base := st.gen
		d := snap.delta(base)
		if base == 0 || d == nil {
			base, d = 0, snap.full()
		}
		b := hostapi.AppendU64(p.buf[:0], base)
		b = hostapi.AppendU64(b, snap.gen)
		b = hostapi.AppendU32(b, d.nops)
		b = append(b, d.ops...)
		b = append(b, p.podPart...)
		b = hostapi.AppendU32(b, uint32(len(cands)))
		for _, c := range cands {
			b = hostapi.AppendU32(b, uint32(c))
		}
		if cap(b) <= 1<<20 {
			p.buf = b
		}
		out, err := st.plugin.Call(ctx, export, b)
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

// filter runs one filter over p.cands and keeps the survivors there.
func (p *Profile) filter(ctx context.Context, snap *Snapshot, st *pluginState) error {
	out, err := p.call(ctx, snap, st, hostapi.ExportFilter, p.cands)
	if err != nil {
		return err
	}
	r := hostapi.NewSchedReader(out)
	nsets := r.U32()
	if uint64(nsets) > uint64(r.Remaining()) {
		return badResponse(st, hostapi.ExportFilter)
	}
	sets := make([][]string, nsets)
	for i := range sets {
		k := int(r.U8())
		set := make([]string, k)
		for j := range set {
			set[j] = r.Str()
		}
		sets[i] = set
	}
	n := int(r.U32())
	if r.Err() != nil || (n != 0 && n != len(p.cands)) || r.Remaining() != 2*n {
		return badResponse(st, hostapi.ExportFilter)
	}
	if n == 0 {
		return nil
	}
	p.keep = p.keep[:0]
	for _, c := range p.cands {
		code := r.U16()
		if code == 0 {
			p.keep = append(p.keep, c)
			continue
		}
		if int(code) > len(sets) {
			return badResponse(st, hostapi.ExportFilter)
		}
		p.rejected = append(p.rejected, rejection{node: c, reasons: sets[code-1]})
	}
	p.cands, p.keep = p.keep, p.cands
	return nil
}

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
	for _, st := range p.scorers {
		out, err := p.call(ctx, snap, st, hostapi.ExportScore, p.feasible)
		if err != nil {
			return err
		}
		r := hostapi.NewSchedReader(out)
		if int(r.U32()) != n || r.Remaining() != 8*n {
			return badResponse(st, hostapi.ExportScore)
		}
		var per map[string]int64
		if trace {
			per = make(map[string]int64, n)
			res.PluginScores[st.name] = per
		}
		for i := range n {
			s := min(max(r.I64(), 0), hostapi.SchedMaxScore)
			p.totals[i] += s * st.weight
			if per != nil {
				per[snap.nodes[p.feasible[i]].name] = s
			}
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
