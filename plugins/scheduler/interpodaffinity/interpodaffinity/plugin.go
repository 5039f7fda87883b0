package interpodaffinity

import (
	"errors"
	"math"
	"strconv"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/cluster"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Name is the plugin's name, as in kube-scheduler.
const Name = "InterPodAffinity"

// Kubernetes' filter reasons.
const (
	ReasonAffinity         = "node(s) didn't match pod affinity rules"
	ReasonAntiAffinity     = "node(s) didn't match pod anti-affinity rules"
	ReasonExistingAntiRule = "node(s) didn't satisfy existing pods anti-affinity rules"
)

// Manifest returns the plugin's manifest (a filter and a scorer).
func Manifest() sdk.Manifest { return sdk.Manifest{Name: Name} }

// Counters of incoming terms are kept across pods; ones unused for
// counterIdle attempts are dropped once there are more than maxCounters.
const (
	maxCounters = 32
	counterIdle = 64
)

// group is one distinct term of existing pods with the number of its
// owners per topology domain (only owners on nodes with the key count).
type group struct {
	term   Term
	weight int64 // score groups: signed weight per owner
	topo   *cluster.Topology
	counts []int32
	owners int
}

func (g *group) add(node int, delta int) {
	g.owners += delta
	d := g.topo.Domain(node)
	if d < 0 {
		return
	}
	for int(d) >= len(g.counts) {
		g.counts = append(g.counts, 0)
	}
	g.counts[d] += int32(delta)
}

func (g *group) at(node int) int32 {
	d := g.topo.Domain(node)
	if d < 0 || int(d) >= len(g.counts) {
		return 0
	}
	return g.counts[d]
}

// Plugin is one InterPodAffinity instance. Not safe for concurrent use.
type Plugin struct {
	state *cluster.State

	hardWeight     int64 // hardPodAffinityWeight
	ignoreExisting bool  // ignorePreferredTermsOfExistingPods

	anti     map[string]*group // existing pods' required anti-affinity terms
	scoring  map[string]*group // existing pods' terms that score the incoming pod
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
	_ sched.Configurer    = (*Plugin)(nil)
)

// New returns a plugin with kube-scheduler's defaults
// (hardPodAffinityWeight 1).
func New() *Plugin {
	p := &Plugin{hardWeight: 1}
	p.Reset()
	return p
}

// Reset implements sched.Resetter.
func (p *Plugin) Reset() {
	p.state = cluster.New()
	p.anti = map[string]*group{}
	p.scoring = map[string]*group{}
	p.counters = map[string]*cluster.Counter{}
	p.state.Watch(p)
}

// State returns the plugin's table (for tests).
func (p *Plugin) State() *cluster.State { return p.state }

// Configure reads the settings (InterPodAffinityArgs):
// {"hardPodAffinityWeight": 0..100, "ignorePreferredTermsOfExistingPods": bool}.
func (p *Plugin) Configure(settings rawjson.Value) error {
	p.hardWeight, p.ignoreExisting = 1, false
	if settings.IsNull() {
		return nil
	}
	if settings.Kind() != rawjson.Object {
		return errors.New("settings must be an object")
	}
	var bad error
	_ = settings.EachMember(func(key []byte, v rawjson.Value) bool {
		switch string(key) {
		case "hardPodAffinityWeight":
			w, ok := v.Int()
			if !ok || w < 0 || w > 100 {
				bad = errors.New("settings: hardPodAffinityWeight must be an integer in 0..100")
				return false
			}
			p.hardWeight = w
		case "ignorePreferredTermsOfExistingPods":
			b, ok := v.Bool()
			if !ok {
				bad = errors.New("settings: ignorePreferredTermsOfExistingPods must be a boolean")
				return false
			}
			p.ignoreExisting = b
		default:
			bad = errors.New("settings: unknown key " + string(key))
			return false
		}
		return true
	})
	return bad
}

// NodeChanged implements sched.NodeWatcher.
func (p *Plugin) NodeChanged(old, cur *sched.Node) { p.state.NodeChanged(old, cur) }

// PodAdded implements sched.PodWatcher.
func (p *Plugin) PodAdded(pi *sched.PodInfo) {
	cp := cluster.NewPod(pi)
	if len(pi.Affinity) > 0 {
		// A pod whose terms do not parse was admitted by the API server
		// anyway; it cannot constrain others.
		if a, err := ParseAffinity(pi.Affinity, cp.Namespace, cp.Labels); err == nil && a != nil {
			cp.Ext = a
		}
	}
	p.state.AddPod(int(pi.Node.Index), cp)
}

// PodRemoved implements sched.PodWatcher.
func (p *Plugin) PodRemoved(pi *sched.PodInfo) { p.state.RemovePod(pi.ID) }

// Group kinds, part of a group's key.
const (
	kindAnti = 'a'
	kindHard = 'h'
	kindPref = 'p'
	kindNeg  = 'n'
)

// PodChanged implements cluster.Watcher: it keeps the groups of existing
// pods' terms current.
func (p *Plugin) PodChanged(cp *cluster.Pod, delta int) {
	a, _ := cp.Ext.(*Affinity)
	if a == nil {
		return
	}
	node := cp.Node()
	for i := range a.RequiredAnti {
		p.groupAdd(p.anti, kindAnti, &a.RequiredAnti[i], 0, node, delta)
	}
	for i := range a.RequiredAffinity {
		p.groupAdd(p.scoring, kindHard, &a.RequiredAffinity[i], 0, node, delta)
	}
	for i := range a.PreferredAffinity {
		t := &a.PreferredAffinity[i]
		p.groupAdd(p.scoring, kindPref, t, t.Weight, node, delta)
	}
	for i := range a.PreferredAnti {
		t := &a.PreferredAnti[i]
		p.groupAdd(p.scoring, kindNeg, t, -t.Weight, node, delta)
	}
}

func (p *Plugin) groupAdd(m map[string]*group, kind byte, t *Term, weight int64, node, delta int) {
	p.keyBuf = append(p.keyBuf[:0], kind)
	p.keyBuf = strconv.AppendInt(p.keyBuf, weight, 10)
	p.keyBuf = append(p.keyBuf, '|')
	p.keyBuf = append(p.keyBuf, t.key...)
	g := m[string(p.keyBuf)]
	if g == nil {
		if delta < 0 {
			return
		}
		g = &group{term: *t, weight: weight, topo: p.state.Topology(t.TopologyKey)}
		m[string(p.keyBuf)] = g
	}
	g.add(node, delta)
	if g.owners <= 0 {
		delete(m, string(p.keyBuf))
	}
}

// counter returns the cached counter of the pods matching all of terms
// (one topology per term), building it on first use.
func (p *Plugin) counter(terms []Term) *cluster.Counter {
	p.keyBuf = p.keyBuf[:0]
	for i := range terms {
		p.keyBuf = append(p.keyBuf, terms[i].key...)
		p.keyBuf = append(p.keyBuf, '&')
	}
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
	topos := make([]*cluster.Topology, len(terms))
	var scan []string
	for i := range terms {
		topos[i] = p.state.Topology(terms[i].TopologyKey)
	}
	if len(terms) == 1 {
		scan = terms[0].scanNamespaces()
	}
	own := append([]Term(nil), terms...)
	c := cluster.NewCounter(p.state, podMatchesAll(own), topos, scan)
	c.LastUse = p.attempts
	p.counters[key] = c
	return c
}

// attempt is the per-attempt state kept in sched.Pod.State.
type attempt struct {
	aff    *Affinity
	labels selector.Labels
	err    error

	filterReady bool
	affinity    *cluster.Counter // pods matching all required affinity terms
	affTopos    []*cluster.Topology
	selfOK      bool // no pod matches them, but the pod itself does
	anti        []*cluster.Counter
	antiTopos   []*cluster.Topology
	blocking    []*group // existing anti-affinity groups matching the pod
}

func (p *Plugin) attempt(pod *sched.Pod) *attempt {
	if a, ok := pod.State.(*attempt); ok {
		return a
	}
	p.attempts++
	a := &attempt{labels: selector.MakeLabels(pod.Labels)}
	if len(pod.Affinity) > 0 {
		a.aff, a.err = ParseAffinity(pod.Affinity, pod.Namespace, a.labels)
	}
	pod.State = a
	return a
}

// prepareFilter computes the kube-scheduler PreFilter state.
func (p *Plugin) prepareFilter(pod *sched.Pod, a *attempt) {
	a.filterReady = true
	for _, g := range p.anti {
		if g.term.Matches(pod.Namespace, a.labels) {
			a.blocking = append(a.blocking, g)
		}
	}
	if a.aff == nil {
		return
	}
	if terms := a.aff.RequiredAffinity; len(terms) > 0 {
		a.affinity = p.counter(terms)
		keyed := 0
		for k := range terms {
			keyed += a.affinity.Keyed(k)
			a.affTopos = append(a.affTopos, p.state.Topology(terms[k].TopologyKey))
		}
		a.selfOK = keyed == 0 && matchesAll(terms, pod.Namespace, a.labels)
	}
	for i := range a.aff.RequiredAnti {
		a.anti = append(a.anti, p.counter(a.aff.RequiredAnti[i:i+1]))
		a.antiTopos = append(a.antiTopos, p.state.Topology(a.aff.RequiredAnti[i].TopologyKey))
	}
}

// Relevance implements sched.Relevancer: without pod (anti-)affinity on
// the pod or on any bound pod there is nothing to check or score.
func (p *Plugin) Relevance() (filter, score sched.When) {
	w := sched.WhenPodPodAffinity | sched.WhenBoundPodAffinity
	return w, w
}

// SkipFilter implements sched.FilterSkipper: the pod has no required
// affinity or anti-affinity and no existing pod's required anti-affinity
// selects it, so every node passes. A pod whose terms do not parse is not
// skipped (Filter rejects it everywhere).
func (p *Plugin) SkipFilter(_ *sched.Snapshot, pod *sched.Pod) bool {
	if len(pod.Affinity) == 0 && len(p.anti) == 0 {
		return true
	}
	a := p.attempt(pod)
	if a.err != nil || a.aff.HasRequired() {
		return false
	}
	if !a.filterReady {
		p.prepareFilter(pod, a)
	}
	return len(a.blocking) == 0
}

// SkipScore implements sched.ScoreSkipper: the pod has no preferred terms
// and no existing pod's term scores it, so every node scores the same.
func (p *Plugin) SkipScore(_ *sched.Snapshot, pod *sched.Pod) bool {
	if len(pod.Affinity) == 0 && len(p.scoring) == 0 {
		return true
	}
	a := p.attempt(pod)
	if a.err != nil {
		return true // Filter rejected every node
	}
	if a.aff != nil && len(a.aff.PreferredAffinity)+len(a.aff.PreferredAnti) > 0 {
		return false
	}
	for key, g := range p.scoring {
		weight := g.weight
		switch key[0] {
		case kindHard:
			weight = p.hardWeight
		case kindPref, kindNeg:
			if p.ignoreExisting {
				continue
			}
		}
		if weight != 0 && g.term.Matches(pod.Namespace, a.labels) {
			return false
		}
	}
	return true
}

// Filter implements sched.Filterer.
func (p *Plugin) Filter(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	a := p.attempt(pod)
	if a.err != nil {
		// Like kube-scheduler's PreFilter: the pod cannot go anywhere.
		res.RejectAllUnresolvable("parsing pod: " + a.err.Error())
		return nil
	}
	if !a.filterReady {
		p.prepareFilter(pod, a)
	}
	if !a.aff.HasRequired() && len(a.blocking) == 0 {
		return nil
	}
	for i, n := range nodes {
		switch reason := check(a, int(n.Index)); reason {
		case "":
		case ReasonAffinity:
			// kube: UnschedulableAndUnresolvable (evicting pods
			// cannot bring the pods it needs).
			res.RejectUnresolvable(i, reason)
		default:
			res.Reject(i, reason)
		}
	}
	return nil
}

// check returns the reason node idx fails, or "".
func check(a *attempt, idx int) string {
	if a.affinity != nil {
		exist := true
		for k, topo := range a.affTopos {
			d := topo.Domain(idx)
			if d < 0 {
				return ReasonAffinity
			}
			if a.affinity.InDomain(k, d) <= 0 {
				exist = false
			}
		}
		if !exist && !a.selfOK {
			return ReasonAffinity
		}
	}
	for k, c := range a.anti {
		d := a.antiTopos[k].Domain(idx)
		if d >= 0 && c.InDomain(0, d) > 0 {
			return ReasonAntiAffinity
		}
	}
	for _, g := range a.blocking {
		if g.at(idx) > 0 {
			return ReasonExistingAntiRule
		}
	}
	return ""
}

// Score implements sched.Scorer: weighted per-domain sums, normalised
// min-max over the candidates.
func (p *Plugin) Score(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, scores []int64) error {
	a := p.attempt(pod)
	if a.err != nil {
		return nil // Filter rejected every node
	}
	any := false
	if a.aff != nil {
		for _, list := range [...]struct {
			terms []Term
			sign  int64
		}{{a.aff.PreferredAffinity, 1}, {a.aff.PreferredAnti, -1}} {
			for i := range list.terms {
				t := &list.terms[i]
				if t.Weight == 0 {
					continue
				}
				c := p.counter(list.terms[i : i+1])
				if c.Keyed(0) == 0 {
					continue
				}
				topo := p.state.Topology(t.TopologyKey)
				w := list.sign * t.Weight
				for j, n := range nodes {
					if d := topo.Domain(int(n.Index)); d >= 0 {
						scores[j] += w * int64(c.InDomain(0, d))
					}
				}
				any = true
			}
		}
	}
	for key, g := range p.scoring {
		weight := g.weight
		switch key[0] {
		case kindHard:
			weight = p.hardWeight
		case kindPref, kindNeg:
			if p.ignoreExisting {
				continue
			}
		}
		if weight == 0 || !g.term.Matches(pod.Namespace, a.labels) {
			continue
		}
		for j, n := range nodes {
			scores[j] += weight * int64(g.at(int(n.Index)))
		}
		any = true
	}
	if !any {
		return nil
	}
	normalizeMinMax(scores)
	return nil
}

// normalizeMinMax rescales scores to 0..MaxScore by (s-min)/(max-min), all
// 0 when they are equal (InterPodAffinity's NormalizeScore).
func normalizeMinMax(scores []int64) {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, s := range scores {
		lo, hi = min(lo, s), max(hi, s)
	}
	diff := hi - lo
	for i, s := range scores {
		if diff > 0 {
			scores[i] = int64(float64(sched.MaxScore) * (float64(s-lo) / float64(diff)))
		} else {
			scores[i] = 0
		}
	}
}
