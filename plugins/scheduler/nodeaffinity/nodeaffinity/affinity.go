// Package nodeaffinity is the NodeAffinity scheduler plugin's policy, as in
// kube-scheduler: the filter admits a node only if it matches the pod's
// spec.nodeSelector (every key=value) and one of the
// requiredDuringSchedulingIgnoredDuringExecution node selector terms (each
// term ANDs its matchExpressions — In, NotIn, Exists, DoesNotExist, Gt, Lt —
// and its matchFields on metadata.name; an empty term matches nothing); the
// scorer sums the weights of the matching preferred terms and normalises to
// 0..100 (DefaultNormalizeScore). Settings may add a scheduler-enforced
// affinity for every pod (addedAffinity, like NodeAffinityArgs).
//
// Matching runs over a label index (key=value -> nodes) into node bitsets,
// cached per distinct selector until some node's labels change, so a pod
// costs a few bitset operations plus one bit test per candidate node rather
// than a label scan per node.
package nodeaffinity

import (
	"errors"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/cluster"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Kubernetes' filter reasons.
const (
	ReasonPod      = "node(s) didn't match Pod's node affinity/selector"
	ReasonEnforced = "node(s) didn't match scheduler-enforced node affinity"
)

// fieldName is the only node field a matchFields requirement can read.
const fieldName = "metadata.name"

// Term is one node selector term: its label requirements and its field
// requirements, ANDed. An invalid term (a parse error) matches nothing, as
// in k8s.io/component-helpers' LazyErrorNodeSelector.
type Term struct {
	Reqs    []selector.Requirement
	Fields  []selector.Requirement // In / NotIn with one value
	Invalid bool
}

// empty reports whether t has no requirements (such a term matches nothing).
func (t *Term) empty() bool { return len(t.Reqs) == 0 && len(t.Fields) == 0 }

// Matches evaluates t on one node directly (without the index).
func (t *Term) Matches(name string, labels selector.Labels) bool {
	if t.Invalid || t.empty() {
		return false
	}
	for i := range t.Reqs {
		if !t.Reqs[i].Matches(labels) {
			return false
		}
	}
	for i := range t.Fields {
		f := &t.Fields[i]
		v := ""
		if f.Key == fieldName {
			v = name
		}
		if !f.MatchesValue(v, true) {
			return false
		}
	}
	return true
}

// parseTerm reads a v1.NodeSelectorTerm.
func parseTerm(v rawjson.Value) Term {
	var t Term
	if me, ok := v.Get("matchExpressions"); ok && !me.IsNull() {
		reqs, err := selector.ParseNodeSelectorRequirements(me)
		if err != nil {
			return Term{Invalid: true}
		}
		t.Reqs = reqs
	}
	if mf, ok := v.Get("matchFields"); ok && !mf.IsNull() {
		err := mf.EachElem(func(_ int, e rawjson.Value) bool {
			r, err := selector.ParseRequirement(e, true)
			if err != nil || (r.Op != selector.In && r.Op != selector.NotIn) || len(r.Values) != 1 {
				t.Invalid = true
				return false
			}
			t.Fields = append(t.Fields, r)
			return true
		})
		if err != nil {
			t.Invalid = true
		}
	}
	return t
}

// Required is a pod's hard node constraint: spec.nodeSelector and the
// required node affinity terms (ORed).
type Required struct {
	// Selector holds nodeSelector as In requirements (nil: none).
	Selector []selector.Requirement
	// Terms are the required affinity's terms; HasTerms tells an absent
	// requiredDuringScheduling (no constraint) from one whose terms are all
	// empty (matches nothing).
	Terms    []Term
	HasTerms bool
}

// None reports whether r constrains nothing.
func (r *Required) None() bool { return len(r.Selector) == 0 && !r.HasTerms }

// ParseRequired reads a pod's spec.nodeSelector and the
// requiredDuringSchedulingIgnoredDuringExecution of spec.affinity (the
// whole affinity object; nil when absent).
func ParseRequired(nodeSelector map[string]string, affinity rawjson.Value) (Required, error) {
	var r Required
	for _, kv := range selector.MakeLabels(nodeSelector) {
		r.Selector = append(r.Selector, selector.Requirement{Key: kv.Key, Op: selector.In, Values: []string{kv.Value}})
	}
	if req, ok := affinity.Get("nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"); ok && !req.IsNull() {
		var err error
		r.Terms, err = parseNodeSelector(req)
		if err != nil {
			return r, err
		}
		r.HasTerms = true
	}
	return r, nil
}

// parseNodeSelector reads a v1.NodeSelector's terms.
func parseNodeSelector(v rawjson.Value) ([]Term, error) {
	terms, ok := v.Get("nodeSelectorTerms")
	if !ok || terms.IsNull() {
		return nil, nil
	}
	var out []Term
	if err := terms.EachElem(func(_ int, e rawjson.Value) bool {
		out = append(out, parseTerm(e))
		return true
	}); err != nil {
		return nil, errors.New("nodeSelectorTerms must be a list")
	}
	return out, nil
}

// Matches evaluates r on one node directly (without the index).
func (r *Required) Matches(name string, labels selector.Labels) bool {
	for i := range r.Selector {
		if !r.Selector[i].Matches(labels) {
			return false
		}
	}
	if !r.HasTerms {
		return true
	}
	for i := range r.Terms {
		if r.Terms[i].Matches(name, labels) {
			return true
		}
	}
	return false
}

// Nodes sets dst to the present nodes of s that satisfy r.
func (r *Required) Nodes(s *cluster.State, dst *cluster.Bits) {
	dst.CopyFrom(s.Present())
	var tmp cluster.Bits
	for i := range r.Selector {
		andReq(s, dst, &r.Selector[i], &tmp)
	}
	if !r.HasTerms {
		return
	}
	var any, term cluster.Bits
	for i := range r.Terms {
		t := &r.Terms[i]
		if t.Invalid || t.empty() {
			continue
		}
		term.CopyFrom(*dst)
		termNodes(s, t, &term, &tmp)
		any.Or(term)
	}
	dst.And(any)
}

// termNodes narrows dst to the nodes matching t.
func termNodes(s *cluster.State, t *Term, dst, tmp *cluster.Bits) {
	for i := range t.Reqs {
		andReq(s, dst, &t.Reqs[i], tmp)
	}
	for i := range t.Fields {
		f := &t.Fields[i]
		tmp.Reset()
		if f.Key == fieldName {
			if n, ok := s.NodeByName(f.Values[0]); ok {
				tmp.Set(n)
			}
		} else if f.Values[0] == "" {
			// Nodes have no other fields: every node reads "".
			tmp.CopyFrom(s.Present())
		}
		if f.Op == selector.In {
			dst.And(*tmp)
		} else {
			dst.AndNot(*tmp)
		}
	}
}

// andReq narrows dst to the nodes satisfying r, using tmp as scratch.
func andReq(s *cluster.State, dst *cluster.Bits, r *selector.Requirement, tmp *cluster.Bits) {
	tmp.Reset()
	switch r.Op {
	case selector.In, selector.NotIn:
		for _, v := range r.Values {
			s.WithValue(tmp, r.Key, v)
		}
	case selector.Exists, selector.DoesNotExist:
		s.WithKey(tmp, r.Key)
	case selector.Gt, selector.Lt:
		s.EachValue(r.Key, func(v string, nodes []int32) {
			if r.MatchesValue(v, true) {
				for _, n := range nodes {
					tmp.Set(int(n))
				}
			}
		})
	}
	switch r.Op {
	case selector.NotIn, selector.DoesNotExist:
		dst.AndNot(*tmp)
	default:
		dst.And(*tmp)
	}
}

// Preferred is a list of weighted node selector terms.
type Preferred struct {
	Terms   []Term
	Weights []int64
}

// ParsePreferred reads a []v1.PreferredSchedulingTerm. Terms with weight 0
// or no requirements are dropped, as kube-scheduler does; so are invalid
// ones (kube-scheduler fails the pod's scoring instead).
func ParsePreferred(v rawjson.Value) (Preferred, error) {
	var p Preferred
	if v.IsNull() {
		return p, nil
	}
	err := v.EachElem(func(_ int, e rawjson.Value) bool {
		wv, _ := e.Get("weight")
		w, _ := wv.Int()
		pref, _ := e.Get("preference")
		t := parseTerm(pref)
		if w == 0 || t.Invalid || t.empty() {
			return true
		}
		p.Terms = append(p.Terms, t)
		p.Weights = append(p.Weights, w)
		return true
	})
	if err != nil {
		return Preferred{}, errors.New("preferredDuringSchedulingIgnoredDuringExecution must be a list")
	}
	return p, nil
}

// Score returns the sum of the weights of the terms node matches.
func (p *Preferred) Score(name string, labels selector.Labels) int64 {
	var sum int64
	for i := range p.Terms {
		if p.Terms[i].Matches(name, labels) {
			sum += p.Weights[i]
		}
	}
	return sum
}
