// Package tainttoleration is the TaintToleration filter and scorer
// (kube-scheduler's TaintToleration plugin): a node's NoSchedule and
// NoExecute taints must all be tolerated by the pod; among the nodes left,
// those with fewer untolerated PreferNoSchedule taints score higher.
package tainttoleration

import (
	"github.com/tugboat-dev/tugboat/sdk"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Plugin is the filter and scorer. It counts the nodes with hard
// (NoSchedule, NoExecute) and soft (PreferNoSchedule) taints so that it
// can skip pods when there are none.
type Plugin struct{ hard, soft int }

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest { return sdk.Manifest{Name: "TaintToleration"} }

// Reason is kube-scheduler's rejection reason for taint t.
func Reason(t *sched.Taint) string {
	return "node(s) had untolerated taint {" + t.Key + ": " + t.Value + "}"
}

// tolerated reports whether one of tols tolerates t.
func tolerated(t *sched.Taint, tols []sched.Toleration) bool {
	for i := range tols {
		if tols[i].Tolerates(t) {
			return true
		}
	}
	return false
}

// Reset forgets the counts before a full table.
func (p *Plugin) Reset() { p.hard, p.soft = 0, 0 }

// NodeChanged keeps the counts.
func (p *Plugin) NodeChanged(old, cur *sched.Node) {
	if old != nil {
		h, s := kinds(old)
		p.hard -= h
		p.soft -= s
	}
	if cur != nil {
		h, s := kinds(cur)
		p.hard += h
		p.soft += s
	}
}

// kinds reports (as 0 or 1) whether n has hard and soft taints.
func kinds(n *sched.Node) (hard, soft int) {
	for _, t := range n.Taints {
		switch t.Effect {
		case "NoSchedule", "NoExecute":
			hard = 1
		case "PreferNoSchedule":
			soft = 1
		}
	}
	return hard, soft
}

// Relevance implements sched.Relevancer: only while some node has taints.
func (p *Plugin) Relevance() (filter, score sched.When) {
	return sched.WhenNodeTaints, sched.WhenNodeTaints
}

// SkipFilter: no node has a hard taint.
func (p *Plugin) SkipFilter(*sched.Snapshot, *sched.Pod) bool { return p.hard == 0 }

// SkipScore: no node has a soft taint, so every node would score the
// same.
func (p *Plugin) SkipScore(*sched.Snapshot, *sched.Pod) bool { return p.soft == 0 }

// Filter rejects nodes with a NoSchedule or NoExecute taint the pod does
// not tolerate, naming the first such taint.
func (p *Plugin) Filter(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	for i, n := range nodes {
		for j := range n.Taints {
			t := &n.Taints[j]
			if t.Effect != "NoSchedule" && t.Effect != "NoExecute" {
				continue
			}
			if !tolerated(t, pod.Tolerations) {
				res.RejectUnresolvable(i, Reason(t))
				break
			}
		}
	}
	return nil
}

// Score counts the PreferNoSchedule taints the pod does not tolerate; the
// SDK turns the counts into scores (fewer is better).
func (p *Plugin) Score(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, scores []int64) error {
	var prefer []sched.Toleration
	for _, t := range pod.Tolerations {
		if t.Effect == "" || t.Effect == "PreferNoSchedule" {
			prefer = append(prefer, t)
		}
	}
	for i, n := range nodes {
		var c int64
		for j := range n.Taints {
			t := &n.Taints[j]
			if t.Effect == "PreferNoSchedule" && !tolerated(t, prefer) {
				c++
			}
		}
		scores[i] = c
	}
	return nil
}

// Normalization reverses the counts: 0 untolerated taints scores 100.
func (*Plugin) Normalization() sched.Normalization { return sched.NormalizeMaxReverse }
