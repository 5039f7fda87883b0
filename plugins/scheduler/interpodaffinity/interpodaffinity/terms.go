// Package interpodaffinity is the InterPodAffinity scheduler plugin's
// policy, as in kube-scheduler:
//
//   - Filter rejects a node when the pod's required pod affinity is not met
//     in the node's topology domain ("node(s) didn't match pod affinity
//     rules"; a pod whose terms match no existing pod but itself may go
//     anywhere the topology keys exist), when a pod matching one of its
//     required anti-affinity terms runs in the domain ("node(s) didn't
//     match pod anti-affinity rules"), or when an existing pod's required
//     anti-affinity term matches the incoming pod and that pod runs in the
//     domain ("node(s) didn't satisfy existing pods anti-affinity rules").
//   - Score adds, per topology domain, the weights of the pod's preferred
//     affinity terms (minus its preferred anti-affinity terms) for every
//     matching existing pod there, and the weights of existing pods'
//     preferred terms (and hardPodAffinityWeight for their required
//     affinity) that match the incoming pod; the totals are normalised
//     min-max to 0..100 over the candidates.
//
// Namespaces: a term without namespaces and namespaceSelector applies to
// the owning pod's namespace; namespaceSelector {} selects all. A
// non-empty namespaceSelector is matched against the namespace's
// kubernetes.io/metadata.name label only (the guest has no Namespace
// objects). matchLabelKeys and mismatchLabelKeys are merged into the label
// selector from the owning pod's labels.
//
// Instead of scanning every pod per pod, the plugin keeps incremental
// indexes: existing pods' terms grouped by identical term, with owner
// counts per topology domain, and per incoming term a cached counter of
// matching pods per domain, maintained as pods come and go.
package interpodaffinity

import (
	"errors"
	"slices"
	"strconv"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/cluster"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// nsNameLabel is the label every namespace carries with its name.
const nsNameLabel = "kubernetes.io/metadata.name"

// Term is a parsed v1.PodAffinityTerm (with its weight when preferred).
type Term struct {
	// Namespaces the term applies to by name.
	Namespaces []string
	// NSSelector selects further namespaces (Nothing when absent).
	NSSelector  selector.Selector
	Selector    selector.Selector
	TopologyKey string
	Weight      int64
	key         string
}

// Key is a canonical text of the term (without its weight): equal terms
// have equal keys.
func (t *Term) Key() string { return t.key }

// MatchesNamespace reports whether the term applies to pods of ns.
func (t *Term) MatchesNamespace(ns string) bool {
	if slices.Contains(t.Namespaces, ns) {
		return true
	}
	if t.NSSelector.Nothing {
		return false
	}
	if t.NSSelector.Empty() {
		return true
	}
	return t.NSSelector.Matches(selector.Labels{{Key: nsNameLabel, Value: ns}})
}

// Matches reports whether pod (namespace ns, labels l) matches the term.
func (t *Term) Matches(ns string, l selector.Labels) bool {
	return t.MatchesNamespace(ns) && t.Selector.Matches(l)
}

// scanNamespaces returns the namespaces whose pods may match (nil: any).
func (t *Term) scanNamespaces() []string {
	if t.NSSelector.Nothing {
		return t.Namespaces
	}
	return nil
}

// Affinity holds a pod's parsed pod (anti-)affinity terms.
type Affinity struct {
	RequiredAffinity, RequiredAnti   []Term
	PreferredAffinity, PreferredAnti []Term
}

// Empty reports whether there are no terms at all.
func (a *Affinity) Empty() bool {
	return a == nil || len(a.RequiredAffinity)+len(a.RequiredAnti)+len(a.PreferredAffinity)+len(a.PreferredAnti) == 0
}

// HasRequired reports whether the pod has required terms.
func (a *Affinity) HasRequired() bool {
	return a != nil && len(a.RequiredAffinity)+len(a.RequiredAnti) > 0
}

// ParseAffinity reads the podAffinity and podAntiAffinity of a pod's
// spec.affinity (nil: none); ns and labels are the owning pod's.
func ParseAffinity(aff rawjson.Value, ns string, labels selector.Labels) (*Affinity, error) {
	if aff.IsNull() {
		return nil, nil
	}
	var a Affinity
	var err error
	if pa, ok := aff.Get("podAffinity"); ok && !pa.IsNull() {
		if a.RequiredAffinity, err = parseTerms(pa, "requiredDuringSchedulingIgnoredDuringExecution", false, ns, labels); err != nil {
			return nil, errors.New("podAffinity: " + err.Error())
		}
		if a.PreferredAffinity, err = parseTerms(pa, "preferredDuringSchedulingIgnoredDuringExecution", true, ns, labels); err != nil {
			return nil, errors.New("podAffinity: " + err.Error())
		}
	}
	if pa, ok := aff.Get("podAntiAffinity"); ok && !pa.IsNull() {
		if a.RequiredAnti, err = parseTerms(pa, "requiredDuringSchedulingIgnoredDuringExecution", false, ns, labels); err != nil {
			return nil, errors.New("podAntiAffinity: " + err.Error())
		}
		if a.PreferredAnti, err = parseTerms(pa, "preferredDuringSchedulingIgnoredDuringExecution", true, ns, labels); err != nil {
			return nil, errors.New("podAntiAffinity: " + err.Error())
		}
	}
	if a.Empty() {
		return nil, nil
	}
	return &a, nil
}

func parseTerms(v rawjson.Value, field string, weighted bool, ns string, labels selector.Labels) ([]Term, error) {
	list, ok := v.Get(field)
	if !ok || list.IsNull() {
		return nil, nil
	}
	var terms []Term
	var perr error
	err := list.EachElem(func(i int, e rawjson.Value) bool {
		var w int64
		if weighted {
			wv, _ := e.Get("weight")
			w, _ = wv.Int()
			e, _ = e.Get("podAffinityTerm")
		}
		t, err := parseTerm(e, ns, labels)
		if err != nil {
			perr = errors.New(field + "[" + strconv.Itoa(i) + "]: " + err.Error())
			return false
		}
		t.Weight = w
		terms = append(terms, t)
		return true
	})
	if perr != nil {
		return nil, perr
	}
	if err != nil {
		return nil, errors.New(field + " must be a list")
	}
	return terms, nil
}

func parseTerm(e rawjson.Value, ns string, labels selector.Labels) (Term, error) {
	var t Term
	if e.Kind() != rawjson.Object {
		return t, errors.New("term must be an object")
	}
	tk, _ := e.Get("topologyKey")
	t.TopologyKey, _ = tk.String()
	if t.TopologyKey == "" {
		return t, errors.New("topologyKey must be set")
	}
	ls, _ := e.Get("labelSelector")
	sel, err := selector.ParseLabelSelector(ls)
	if err != nil {
		return t, err
	}
	for _, f := range [...]struct {
		name string
		op   selector.Op
	}{{"matchLabelKeys", selector.In}, {"mismatchLabelKeys", selector.NotIn}} {
		fv, _ := e.Get(f.name)
		keys, err := selector.ParseStrings(fv)
		if err != nil {
			return t, errors.New(f.name + " " + err.Error())
		}
		for _, k := range keys {
			if v, ok := labels.Get(k); ok {
				sel = sel.With(selector.Requirement{Key: k, Op: f.op, Values: []string{v}})
			}
		}
	}
	t.Selector = sel
	nv, _ := e.Get("namespaces")
	if t.Namespaces, err = selector.ParseStrings(nv); err != nil {
		return t, errors.New("namespaces " + err.Error())
	}
	t.NSSelector = selector.NothingSelector
	if nsv, ok := e.Get("namespaceSelector"); ok && !nsv.IsNull() {
		if t.NSSelector, err = selector.ParseLabelSelector(nsv); err != nil {
			return t, errors.New("namespaceSelector: " + err.Error())
		}
	}
	if len(t.Namespaces) == 0 && t.NSSelector.Nothing {
		t.Namespaces = []string{ns}
	}
	slices.Sort(t.Namespaces)
	t.Namespaces = slices.Compact(t.Namespaces)
	t.key = termKey(&t)
	return t, nil
}

func termKey(t *Term) string {
	b := make([]byte, 0, 64)
	b = strconv.AppendInt(b, int64(len(t.TopologyKey)), 10)
	b = append(b, ':')
	b = append(b, t.TopologyKey...)
	b = t.Selector.AppendKey(b)
	b = t.NSSelector.AppendKey(b)
	for _, ns := range t.Namespaces {
		b = strconv.AppendInt(b, int64(len(ns)), 10)
		b = append(b, ':')
		b = append(b, ns...)
	}
	return string(b)
}

// matchesAll reports whether the pod matches every term (false for none).
func matchesAll(terms []Term, ns string, l selector.Labels) bool {
	if len(terms) == 0 {
		return false
	}
	for i := range terms {
		if !terms[i].Matches(ns, l) {
			return false
		}
	}
	return true
}

// podMatches adapts a term list to a cluster.Pod predicate.
func podMatchesAll(terms []Term) func(*cluster.Pod) bool {
	return func(p *cluster.Pod) bool { return matchesAll(terms, p.Namespace, p.Labels) }
}
