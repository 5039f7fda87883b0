package nodeaffinity

import (
	"errors"
	"slices"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/cluster"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Name is the plugin's name, as in kube-scheduler.
const Name = "NodeAffinity"

// Manifest returns the plugin's manifest (a filter and a scorer).
func Manifest() sdk.Manifest { return sdk.Manifest{Name: Name} }

// maxCache bounds the number of distinct selectors whose node sets are
// kept between pods.
const maxCache = 64

// Plugin is one NodeAffinity instance: its node index and the cached node
// sets of the selectors it has seen. Not safe for concurrent use (the SDK
// calls an instance from one goroutine).
type Plugin struct {
	state *cluster.State

	added     Required  // scheduler-enforced, from settings
	addedPref Preferred // scheduler-enforced preferences
	addedSet  cluster.Bits
	addedGen  uint64
	addedOK   bool

	cache    map[string]*cluster.Bits
	cacheGen uint64
	key      []byte
	scratch  cluster.Bits
	tmp      cluster.Bits
}

var (
	_ sched.Filterer      = (*Plugin)(nil)
	_ sched.Scorer        = (*Plugin)(nil)
	_ sched.FilterSkipper = (*Plugin)(nil)
	_ sched.ScoreSkipper  = (*Plugin)(nil)
	_ sched.NodeWatcher   = (*Plugin)(nil)
	_ sched.Resetter      = (*Plugin)(nil)
	_ sched.Configurer    = (*Plugin)(nil)
)

// New returns a plugin with an empty node index.
func New() *Plugin {
	return &Plugin{state: cluster.New(), cache: map[string]*cluster.Bits{}}
}

// State returns the plugin's node index (for tests).
func (p *Plugin) State() *cluster.State { return p.state }

// Reset implements sched.Resetter.
func (p *Plugin) Reset() {
	p.state = cluster.New()
	clear(p.cache)
	p.addedOK = false
}

// NodeChanged implements sched.NodeWatcher.
func (p *Plugin) NodeChanged(old, cur *sched.Node) { p.state.NodeChanged(old, cur) }

// Configure reads the settings: {"addedAffinity": <v1.NodeAffinity>}
// (optional; NodeAffinityArgs.addedAffinity), which every pod must satisfy
// in addition to its own and whose preferred terms add to every pod's.
func (p *Plugin) Configure(settings rawjson.Value) error {
	p.added, p.addedPref, p.addedOK = Required{}, Preferred{}, false
	if settings.IsNull() {
		return nil
	}
	if settings.Kind() != rawjson.Object {
		return errors.New("settings must be an object")
	}
	var bad error
	_ = settings.EachMember(func(key []byte, v rawjson.Value) bool {
		if string(key) != "addedAffinity" {
			bad = errors.New("settings: unknown key " + string(key))
			return false
		}
		if v.IsNull() {
			return true
		}
		if req, ok := v.Get("requiredDuringSchedulingIgnoredDuringExecution"); ok && !req.IsNull() {
			terms, err := parseNodeSelector(req)
			if err != nil {
				bad = errors.New("settings: addedAffinity: " + err.Error())
				return false
			}
			for _, t := range terms {
				if t.Invalid {
					bad = errors.New("settings: addedAffinity has an invalid node selector term")
					return false
				}
			}
			p.added = Required{Terms: terms, HasTerms: true}
		}
		if pref, ok := v.Get("preferredDuringSchedulingIgnoredDuringExecution"); ok {
			pp, err := ParsePreferred(pref)
			if err != nil {
				bad = errors.New("settings: addedAffinity: " + err.Error())
				return false
			}
			p.addedPref = pp
		}
		return true
	})
	return bad
}

// attempt is the per-attempt state kept in sched.Pod.State.
type attempt struct {
	set *cluster.Bits // nodes matching the pod's own requirement; nil: no requirement
}

// podNodes returns the nodes satisfying the pod's own nodeSelector and
// required affinity (nil when it has neither), computed once per attempt
// and cached across pods by the selectors' text until a node's labels
// change.
func (p *Plugin) podNodes(pod *sched.Pod) (*cluster.Bits, error) {
	if a, ok := pod.State.(*attempt); ok {
		return a.set, nil
	}
	req, hasReq := pod.Affinity.Get("nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
	hasReq = hasReq && !req.IsNull()
	if len(pod.NodeSelector) == 0 && !hasReq {
		pod.State = &attempt{}
		return nil, nil
	}
	if gen := p.state.LabelGen(); gen != p.cacheGen || len(p.cache) >= maxCache {
		clear(p.cache)
		p.cacheGen = gen
	}
	p.key = appendSelectorKey(p.key[:0], pod.NodeSelector)
	p.key = append(p.key, req...)
	set := p.cache[string(p.key)]
	if set == nil {
		r, err := ParseRequired(pod.NodeSelector, pod.Affinity)
		if err != nil {
			return nil, err
		}
		set = new(cluster.Bits)
		r.Nodes(p.state, set)
		p.cache[string(p.key)] = set
	}
	pod.State = &attempt{set: set}
	return set, nil
}

// appendSelectorKey appends a canonical text of a nodeSelector map.
func appendSelectorKey(dst []byte, m map[string]string) []byte {
	if len(m) == 1 {
		for k, v := range m {
			return append(append(append(append(dst, k...), 0), v...), 0, 0)
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = append(append(append(append(dst, k...), 0), m[k]...), 0)
	}
	return append(dst, 0)
}

// addedNodes returns the nodes satisfying the scheduler-enforced affinity.
func (p *Plugin) addedNodes() *cluster.Bits {
	if !p.addedOK || p.addedGen != p.state.LabelGen() {
		p.added.Nodes(p.state, &p.addedSet)
		p.addedGen, p.addedOK = p.state.LabelGen(), true
	}
	return &p.addedSet
}

// Relevance implements sched.Relevancer: the filter matters for pods with
// a nodeSelector or node affinity, the scorer for pods with node affinity
// (both always with scheduler-enforced affinity).
func (p *Plugin) Relevance() (filter, score sched.When) {
	filter, score = sched.WhenPodNodeSelector|sched.WhenPodNodeAffinity, sched.WhenPodNodeAffinity
	if p.added.HasTerms {
		filter = sched.Always
	}
	if len(p.addedPref.Terms) > 0 {
		score = sched.Always
	}
	return filter, score
}

// SkipFilter implements sched.FilterSkipper: without scheduler-enforced
// affinity, a pod with neither a nodeSelector nor required node affinity
// fits every node (kube-scheduler's PreFilter Skip).
func (p *Plugin) SkipFilter(_ *sched.Snapshot, pod *sched.Pod) bool {
	if p.added.HasTerms || len(pod.NodeSelector) > 0 {
		return false
	}
	req, ok := pod.Affinity.Get("nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
	return !ok || req.IsNull()
}

// SkipScore implements sched.ScoreSkipper: no preferred terms (the pod's
// or scheduler-enforced) means no score (kube-scheduler's PreScore Skip).
func (p *Plugin) SkipScore(_ *sched.Snapshot, pod *sched.Pod) bool {
	if len(p.addedPref.Terms) > 0 {
		return false
	}
	pref, ok := pod.Affinity.Get("nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution")
	return !ok || pref.IsNull()
}

// Filter implements sched.Filterer: nodes outside the scheduler-enforced
// affinity are rejected with ReasonEnforced, then nodes not matching the
// pod's nodeSelector and required affinity with ReasonPod. A pod with
// neither costs nothing per node.
func (p *Plugin) Filter(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	if p.added.HasTerms {
		added := p.addedNodes()
		for i, n := range nodes {
			if !added.Has(int(n.Index)) {
				res.RejectUnresolvable(i, ReasonEnforced)
			}
		}
	}
	set, err := p.podNodes(pod)
	if err != nil {
		res.RejectAllUnresolvable("parsing pod: " + err.Error())
		return nil
	}
	if set == nil {
		return nil
	}
	for i, n := range nodes {
		if !set.Has(int(n.Index)) && !res.Rejected(i) {
			res.RejectUnresolvable(i, ReasonPod)
		}
	}
	return nil
}

// Score implements sched.Scorer: the summed weights of the matching
// preferred terms (the pod's and the scheduler-enforced ones), normalised
// by the highest (DefaultNormalizeScore).
func (p *Plugin) Score(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, scores []int64) error {
	pref, ok := pod.Affinity.Get("nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution")
	if (!ok || pref.IsNull()) && len(p.addedPref.Terms) == 0 {
		return nil
	}
	pp, err := ParsePreferred(pref)
	if err != nil {
		return nil // a malformed preference scores nothing
	}
	if len(pp.Terms) == 0 && len(p.addedPref.Terms) == 0 {
		return nil
	}
	p.addWeights(&pp, nodes, scores)
	p.addWeights(&p.addedPref, nodes, scores)
	sched.DefaultNormalize(scores, false)
	return nil
}

// addWeights adds each term's weight to the scores of the nodes it matches.
func (p *Plugin) addWeights(pp *Preferred, nodes []*sched.Node, scores []int64) {
	for i := range pp.Terms {
		set := &p.scratch
		set.CopyFrom(p.state.Present())
		termNodes(p.state, &pp.Terms[i], set, &p.tmp)
		w := pp.Weights[i]
		for j, n := range nodes {
			if set.Has(int(n.Index)) {
				scores[j] += w
			}
		}
	}
}
