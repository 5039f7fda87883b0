// Package tainttoleration is the TaintToleration filter and scorer
// (kube-scheduler's TaintToleration plugin): a node's NoSchedule and
// NoExecute taints must all be tolerated by the pod; among the nodes left,
// those with fewer untolerated PreferNoSchedule taints score higher.
package tainttoleration

import (
	"github.com/tugboat-dev/tugboat/sdk"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Plugin is the filter and scorer.
type Plugin struct{}

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

// Filter rejects nodes with a NoSchedule or NoExecute taint the pod does
// not tolerate, naming the first such taint.
func (*Plugin) Filter(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	for i, n := range nodes {
		for j := range n.Taints {
			t := &n.Taints[j]
			if t.Effect != "NoSchedule" && t.Effect != "NoExecute" {
				continue
			}
			if !tolerated(t, pod.Tolerations) {
				res.Reject(i, Reason(t))
				break
			}
		}
	}
	return nil
}

// Score counts the PreferNoSchedule taints the pod does not tolerate; the
// SDK turns the counts into scores (fewer is better).
func (*Plugin) Score(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, scores []int64) error {
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
