package podtopologyspread

import (
	"math"
	"math/bits"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/cluster"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodeaffinity/nodeaffinity"
	"github.com/tugboat-dev/tugboat/sdk"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Name is the plugin's name, as in kube-scheduler.
const Name = "PodTopologySpread"

// Manifest returns the plugin's manifest (a filter and a scorer).
func Manifest() sdk.Manifest { return sdk.Manifest{Name: Name} }

const (
	maxCounters = 32
	counterIdle = 64
)

// Plugin is one PodTopologySpread instance. Not safe for concurrent use.
type Plugin struct {
	// defaults are the cluster-level default constraints (settings);
	// system: they are the system defaults.
	defaults []DefaultConstraint
	system   bool
	state    *cluster.State
	counters map[string]*cluster.Counter
	attempts uint64
	keyBuf   []byte
}

var (
	_ sched.Filterer      = (*Plugin)(nil)
	_ sched.Scorer        = (*Plugin)(nil)
	_ sched.FilterSkipper = (*Plugin)(nil)
	_ sched.ScoreSkipper  = (*Plugin)(nil)
	_ sched.NodeWatcher   = (*Plugin)(nil)
	_ sched.PodWatcher    = (*Plugin)(nil)
	_ sched.Resetter      = (*Plugin)(nil)
)

// New returns a plugin with an empty table.
func New() *Plugin {
	p := &Plugin{defaults: SystemDefaults, system: true}
	p.Reset()
	return p
}

// Reset implements sched.Resetter.
func (p *Plugin) Reset() {
	p.state = cluster.New()
	p.counters = map[string]*cluster.Counter{}
}

// NodeChanged implements sched.NodeWatcher.
func (p *Plugin) NodeChanged(old, cur *sched.Node) { p.state.NodeChanged(old, cur) }

// PodAdded implements sched.PodWatcher.
func (p *Plugin) PodAdded(pi *sched.PodInfo) { p.state.AddPod(int(pi.Node.Index), cluster.NewPod(pi)) }

// PodRemoved implements sched.PodWatcher.
func (p *Plugin) PodRemoved(pi *sched.PodInfo) { p.state.RemovePod(pi.ID) }

// counter returns the cached counter of the non-terminating pods of ns
// that sel selects, per node and per domain of topo.
func (p *Plugin) counter(ns string, sel *selector.Selector, topo *cluster.Topology) *cluster.Counter {
	p.keyBuf = append(append(p.keyBuf[:0], ns...), 0)
	p.keyBuf = append(append(p.keyBuf, topo.Key...), 0)
	p.keyBuf = sel.AppendKey(p.keyBuf)
	if c := p.counters[string(p.keyBuf)]; c != nil {
		c.LastUse = p.attempts
		return c
	}
	key := string(p.keyBuf)
	if len(p.counters) >= maxCounters {
		for k, c := range p.counters {
			if p.attempts-c.LastUse > counterIdle {
				c.Close(p.state)
				delete(p.counters, k)
			}
		}
	}
	s := *sel
	match := func(cp *cluster.Pod) bool {
		return cp.Namespace == ns && !cp.Terminating && s.Matches(cp.Labels)
	}
	c := cluster.NewCounter(p.state, match, []*cluster.Topology{topo}, []string{ns})
	c.LastUse = p.attempts
	p.counters[key] = c
	return c
}

// attempt is the per-attempt state kept in sched.Pod.State.
type attempt struct {
	// systemDefaulted: the constraints are the system defaults, and (as
	// in kube-scheduler) a node missing one of their keys is still
	// scored by the others.
	systemDefaulted bool
	err             error
	constraints     []Constraint
	hard, soft      []*Constraint

	affinity    *cluster.Bits // nodes matching the pod's required node affinity
	tainted     cluster.Bits  // nodes with an untolerated NoSchedule/NoExecute taint
	taintsReady bool

	filterReady bool
	counts      [][]int64 // per hard constraint, per domain
	minMatch    []int64
}

func (p *Plugin) attempt(s *sched.Snapshot, pod *sched.Pod) *attempt {
	if a, ok := pod.State.(*attempt); ok {
		return a
	}
	p.attempts++
	a := &attempt{}
	pod.State = a
	constraints := pod.TopologySpreadConstraints
	if len(constraints) == 0 {
		if constraints = p.defaultsFor(pod); constraints == nil {
			return a
		}
		a.systemDefaulted = p.system
	}
	labels := selector.MakeLabels(pod.Labels)
	a.constraints, a.err = ParseConstraints(constraints, labels)
	if a.err != nil {
		return a
	}
	needAffinity := false
	for i := range a.constraints {
		c := &a.constraints[i]
		c.topo = p.state.Topology(c.TopologyKey)
		// An empty selector counts no pods (kube's countPodsMatchSelector).
		if !c.Selector.Nothing && !c.Selector.Empty() {
			c.counter = p.counter(pod.Namespace, &c.Selector, c.topo)
		}
		if c.Hard {
			a.hard = append(a.hard, c)
		} else {
			a.soft = append(a.soft, c)
		}
		needAffinity = needAffinity || c.HonorAffinity
	}
	if needAffinity {
		req, err := nodeaffinity.ParseRequired(pod.NodeSelector, pod.Affinity)
		if err != nil {
			a.err = err
			return a
		}
		if !req.None() {
			a.affinity = new(cluster.Bits)
			req.Nodes(p.state, a.affinity)
		}
	}
	return a
}

// taints computes the nodes whose taints the pod does not tolerate.
func (a *attempt) taints(s *sched.Snapshot, pod *sched.Pod) *cluster.Bits {
	if a.taintsReady {
		return &a.tainted
	}
	a.taintsReady = true
	for _, n := range s.Nodes() {
		if n == nil {
			continue
		}
		for i := range n.Taints {
			t := &n.Taints[i]
			if t.Effect != "NoSchedule" && t.Effect != "NoExecute" {
				continue
			}
			tolerated := false
			for j := range pod.Tolerations {
				if pod.Tolerations[j].Tolerates(t) {
					tolerated = true
					break
				}
			}
			if !tolerated {
				a.tainted.Set(int(n.Index))
				break
			}
		}
	}
	return &a.tainted
}

// withKeys sets dst to the present nodes carrying the topology key of
// every constraint in cs.
func (p *Plugin) withKeys(dst *cluster.Bits, cs []*Constraint) {
	dst.CopyFrom(p.state.Present())
	var tmp cluster.Bits
	for _, c := range cs {
		tmp.Reset()
		p.state.WithKey(&tmp, c.TopologyKey)
		dst.And(tmp)
	}
}

// eligible narrows dst (nodes with all keys) to the nodes that count for
// c under its node inclusion policies.
func (a *attempt) eligible(s *sched.Snapshot, pod *sched.Pod, c *Constraint, dst *cluster.Bits) {
	if c.HonorAffinity && a.affinity != nil {
		dst.And(*a.affinity)
	}
	if c.HonorTaints {
		dst.AndNot(*a.taints(s, pod))
	}
}

// restricted reports whether c counts fewer nodes than those with its key.
func (a *attempt) restricted(c *Constraint) bool {
	return c.HonorAffinity && a.affinity != nil || c.HonorTaints
}

// hasKeys reports whether node i carries the topology key of every
// constraint in cs.
func hasKeys(cs []*Constraint, i int) bool {
	for _, c := range cs {
		if c.topo.Domain(i) < 0 {
			return false
		}
	}
	return true
}

// domainCounts adds to counts (indexed by domain) the matching pods of the
// nodes in set, and marks their domains in live (when not nil).
func domainCounts(c *Constraint, set cluster.Bits, counts []int64, live []bool) {
	dom := c.topo.Domains()
	var per []int32
	if c.counter != nil {
		per = c.counter.PerNode()
	}
	for wi, w := range set {
		for w != 0 {
			i := wi<<6 + bits.TrailingZeros64(w)
			w &= w - 1
			d := dom[i]
			if live != nil {
				live[d] = true
			}
			if i < len(per) {
				counts[d] += int64(per[i])
			}
		}
	}
}

// prepareFilter computes the matching pods per domain of every hard
// constraint over the eligible nodes, and the global minimums.
func (p *Plugin) prepareFilter(s *sched.Snapshot, pod *sched.Pod, a *attempt) {
	a.filterReady = true
	a.counts = make([][]int64, len(a.hard))
	a.minMatch = make([]int64, len(a.hard))
	var base, set cluster.Bits
	if len(a.hard) > 1 {
		p.withKeys(&base, a.hard)
	}
	for k, c := range a.hard {
		n := c.topo.NumDomains()
		counts := make([]int64, n)
		live := make([]bool, n)
		if len(a.hard) == 1 && !a.restricted(c) {
			// Every node with the key counts: the counter's per-domain
			// totals are the answer.
			for d := range n {
				live[d] = c.topo.NodesIn(int32(d)) > 0
				if c.counter != nil {
					counts[d] = int64(c.counter.InDomain(0, int32(d)))
				}
			}
		} else {
			if len(a.hard) == 1 {
				p.withKeys(&set, a.hard)
			} else {
				set.CopyFrom(base)
			}
			a.eligible(s, pod, c, &set)
			domainCounts(c, set, counts, live)
		}
		lo, domains := int64(math.MaxInt32), int64(0)
		for d, ok := range live {
			if ok {
				domains++
				lo = min(lo, counts[d])
			}
		}
		if domains < c.MinDomains {
			lo = 0
		}
		a.counts[k], a.minMatch[k] = counts, lo
	}
}

// Relevance implements sched.Relevancer: pods with constraints, and
// controlled pods while default constraints are configured (for the
// filter only if one of them is DoNotSchedule).
func (p *Plugin) Relevance() (filter, score sched.When) {
	filter, score = sched.WhenPodSpread, sched.WhenPodSpread
	if len(p.defaults) > 0 {
		score |= sched.WhenPodControlled
		if p.hardDefaults() {
			filter |= sched.WhenPodControlled
		}
	}
	return filter, score
}

// SkipFilter implements sched.FilterSkipper: a pod without hard
// constraints (DoNotSchedule) fits every node as far as spreading goes.
// A pod whose constraints do not parse is not skipped (Filter rejects it
// everywhere). Default constraints count as the pod's own.
func (p *Plugin) SkipFilter(s *sched.Snapshot, pod *sched.Pod) bool {
	if len(pod.TopologySpreadConstraints) == 0 && !p.hardDefaults() {
		return true
	}
	a := p.attempt(s, pod)
	return a.err == nil && len(a.hard) == 0
}

// SkipScore implements sched.ScoreSkipper: no soft constraints
// (ScheduleAnyway), no score.
func (p *Plugin) SkipScore(s *sched.Snapshot, pod *sched.Pod) bool {
	if len(pod.TopologySpreadConstraints) == 0 && len(p.defaults) == 0 {
		return true
	}
	a := p.attempt(s, pod)
	return a.err != nil || len(a.soft) == 0
}

// Filter implements sched.Filterer.
func (p *Plugin) Filter(s *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	a := p.attempt(s, pod)
	if a.err != nil {
		// Like kube-scheduler's PreFilter: the pod cannot go anywhere.
		res.RejectAllUnresolvable("parsing pod: " + a.err.Error())
		return nil
	}
	if len(a.hard) == 0 {
		return nil
	}
	if !a.filterReady {
		p.prepareFilter(s, pod, a)
	}
	for i, n := range nodes {
		idx := int(n.Index)
		for k, c := range a.hard {
			d := c.topo.Domain(idx)
			if d < 0 {
				res.RejectUnresolvable(i, ReasonNodeLabelNotMatch)
				break
			}
			var match int64
			if int(d) < len(a.counts[k]) {
				match = a.counts[k][d]
			}
			if match+c.self-a.minMatch[k] > c.MaxSkew {
				res.Reject(i, ReasonConstraintsNotMatch)
				break
			}
		}
	}
	return nil
}

// Score implements sched.Scorer.
func (p *Plugin) Score(s *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, scores []int64) error {
	a := p.attempt(s, pod)
	if a.err != nil {
		return nil // Filter rejected every node
	}
	if len(a.soft) == 0 {
		return nil
	}
	ignored := make([]bool, len(nodes))
	kept := 0
	for j, n := range nodes {
		ignored[j] = !a.systemDefaulted && !hasKeys(a.soft, int(n.Index))
		if !ignored[j] {
			kept++
		}
	}
	raw := make([]float64, len(nodes))
	for _, c := range a.soft {
		inCand := make([]bool, c.topo.NumDomains())
		size := 0
		for j, n := range nodes {
			if ignored[j] {
				continue
			}
			if d := c.topo.Domain(int(n.Index)); d >= 0 && !inCand[d] {
				inCand[d] = true
				size++
			}
		}
		perNode := c.TopologyKey == hostnameKey
		if perNode {
			size = kept
		}
		weight := math.Log(float64(size + 2))
		var counts []int64
		if !perNode && c.counter != nil {
			counts = make([]int64, c.topo.NumDomains())
			var set cluster.Bits
			if a.systemDefaulted {
				p.withKeys(&set, []*Constraint{c})
			} else {
				p.withKeys(&set, a.soft)
			}
			a.eligible(s, pod, c, &set)
			domainCounts(c, set, counts, nil)
			for d := range counts {
				if !inCand[d] {
					counts[d] = 0
				}
			}
		}
		for j, n := range nodes {
			if ignored[j] || c.topo.Domain(int(n.Index)) < 0 {
				continue
			}
			var cnt int64
			switch {
			case c.counter == nil:
			case perNode:
				cnt = int64(c.counter.OnNode(int(n.Index)))
			default:
				cnt = counts[c.topo.Domain(int(n.Index))]
			}
			raw[j] += float64(cnt)*weight + float64(c.MaxSkew-1)
		}
	}
	lo, hi := int64(math.MaxInt64), int64(0)
	for j := range nodes {
		if ignored[j] {
			continue
		}
		scores[j] = int64(math.Round(raw[j]))
		lo, hi = min(lo, scores[j]), max(hi, scores[j])
	}
	for j := range nodes {
		switch {
		case ignored[j]:
			scores[j] = 0
		case hi == 0:
			scores[j] = sched.MaxScore
		default:
			scores[j] = sched.MaxScore * (hi + lo - scores[j]) / hi
		}
	}
	return nil
}
