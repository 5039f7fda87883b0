// Package podtopologyspread is the PodTopologySpread scheduler plugin's
// policy, as in kube-scheduler, for a pod's own
// spec.topologySpreadConstraints:
//
//   - Filter (whenUnsatisfiable: DoNotSchedule): a node passes when, in its
//     domain, the matching pods plus the pod itself minus the global
//     minimum over the eligible domains stay within maxSkew (the minimum
//     counts as 0 while there are fewer eligible domains than minDomains).
//     Eligible nodes carry every constraint's topology key and, per
//     constraint, match the pod's required node affinity
//     (nodeAffinityPolicy: Honor, the default) and have no untolerated
//     NoSchedule/NoExecute taint when nodeTaintsPolicy is Honor (default
//     Ignore). Matching pods are the non-terminating pods of the pod's
//     namespace selected by labelSelector (merged with matchLabelKeys).
//   - Score (whenUnsatisfiable: ScheduleAnyway): fewer matching pods in a
//     node's domains score higher: per constraint count*ln(domains+2) +
//     maxSkew-1, then 100*(max+min-score)/max over the candidates; nodes
//     missing a key score 0.
//
// Cluster-level default constraints (PodTopologySpreadArgs; kube's
// system defaults unless configured, see Configure and defaultsFor) apply
// to controlled pods without constraints of their own. Matching pods are counted per node by cached counters kept
// current as pods come and go.
package podtopologyspread

import (
	"errors"
	"strconv"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/cluster"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Kubernetes' filter reasons.
const (
	ReasonConstraintsNotMatch = "node(s) didn't match pod topology spread constraints"
	ReasonNodeLabelNotMatch   = ReasonConstraintsNotMatch + " (missing required label)"
)

// hostnameKey is the well-known hostname label (scored per node).
const hostnameKey = "kubernetes.io/hostname"

// Constraint is a parsed v1.TopologySpreadConstraint.
type Constraint struct {
	MaxSkew     int64
	TopologyKey string
	// Hard is whenUnsatisfiable DoNotSchedule (else ScheduleAnyway).
	Hard       bool
	MinDomains int64
	Selector   selector.Selector
	// HonorAffinity is nodeAffinityPolicy Honor (the default);
	// HonorTaints is nodeTaintsPolicy Honor (default Ignore).
	HonorAffinity, HonorTaints bool

	topo    *cluster.Topology
	counter *cluster.Counter // nil: the selector counts nothing
	self    int64            // 1 if the pod matches its own selector
}

// ParseConstraints reads spec.topologySpreadConstraints; labels are the
// pod's (for matchLabelKeys).
func ParseConstraints(v rawjson.Value, labels selector.Labels) ([]Constraint, error) {
	if v.IsNull() {
		return nil, nil
	}
	var out []Constraint
	var perr error
	err := v.EachElem(func(i int, e rawjson.Value) bool {
		c, err := parseConstraint(e, labels)
		if err != nil {
			perr = errors.New("topologySpreadConstraints[" + strconv.Itoa(i) + "]: " + err.Error())
			return false
		}
		out = append(out, c)
		return true
	})
	if perr != nil {
		return nil, perr
	}
	if err != nil {
		return nil, errors.New("topologySpreadConstraints must be a list")
	}
	return out, nil
}

func parseConstraint(e rawjson.Value, labels selector.Labels) (Constraint, error) {
	c := Constraint{HonorAffinity: true}
	ms, _ := e.Get("maxSkew")
	var ok bool
	if c.MaxSkew, ok = ms.Int(); !ok || c.MaxSkew <= 0 {
		return c, errors.New("maxSkew must be a positive integer")
	}
	tk, _ := e.Get("topologyKey")
	if c.TopologyKey, _ = tk.String(); c.TopologyKey == "" {
		return c, errors.New("topologyKey must be set")
	}
	wu, _ := e.Get("whenUnsatisfiable")
	switch {
	case wu.StringEquals("DoNotSchedule"):
		c.Hard = true
	case wu.StringEquals("ScheduleAnyway"):
	default:
		return c, errors.New("whenUnsatisfiable must be DoNotSchedule or ScheduleAnyway")
	}
	if md, ok := e.Get("minDomains"); ok && !md.IsNull() {
		if c.MinDomains, ok = md.Int(); !ok || c.MinDomains <= 0 {
			return c, errors.New("minDomains must be a positive integer")
		}
	}
	ls, _ := e.Get("labelSelector")
	sel, err := selector.ParseLabelSelector(ls)
	if err != nil {
		return c, err
	}
	mk, _ := e.Get("matchLabelKeys")
	keys, err := selector.ParseStrings(mk)
	if err != nil {
		return c, errors.New("matchLabelKeys " + err.Error())
	}
	for _, k := range keys {
		if v, ok := labels.Get(k); ok {
			sel = sel.With(selector.Requirement{Key: k, Op: selector.In, Values: []string{v}})
		}
	}
	c.Selector = sel
	if ap, ok := e.Get("nodeAffinityPolicy"); ok && !ap.IsNull() {
		switch {
		case ap.StringEquals("Honor"):
		case ap.StringEquals("Ignore"):
			c.HonorAffinity = false
		default:
			return c, errors.New("nodeAffinityPolicy must be Honor or Ignore")
		}
	}
	if tp, ok := e.Get("nodeTaintsPolicy"); ok && !tp.IsNull() {
		switch {
		case tp.StringEquals("Honor"):
			c.HonorTaints = true
		case tp.StringEquals("Ignore"):
		default:
			return c, errors.New("nodeTaintsPolicy must be Honor or Ignore")
		}
	}
	c.self = 0
	if c.Selector.Matches(labels) {
		c.self = 1
	}
	return c, nil
}
