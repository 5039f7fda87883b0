// Package nodeunschedulable is the NodeUnschedulable filter: cordoned
// nodes (spec.unschedulable) take only pods that tolerate the
// node.kubernetes.io/unschedulable:NoSchedule taint, as DaemonSet pods do
// (kube-scheduler's NodeUnschedulable plugin).
package nodeunschedulable

import (
	"github.com/tugboat-dev/tugboat/sdk"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Reason is kube-scheduler's rejection reason.
const Reason = "node(s) were unschedulable"

// TaintKey is the taint a pod must tolerate to land on a cordoned node.
const TaintKey = "node.kubernetes.io/unschedulable"

// Plugin is the filter. It counts the cordoned nodes so that it can skip
// pods when there are none.
type Plugin struct{ cordoned int }

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest { return sdk.Manifest{Name: "NodeUnschedulable"} }

var unschedulableTaint = sched.Taint{Key: TaintKey, Effect: "NoSchedule"}

// Reset forgets the count before a full table.
func (p *Plugin) Reset() { p.cordoned = 0 }

// NodeChanged keeps the count of cordoned nodes.
func (p *Plugin) NodeChanged(old, cur *sched.Node) {
	if old != nil && old.Unschedulable {
		p.cordoned--
	}
	if cur != nil && cur.Unschedulable {
		p.cordoned++
	}
}

// Relevance implements sched.Relevancer: only while a node is cordoned.
func (p *Plugin) Relevance() (filter, score sched.When) {
	return sched.WhenNodeUnschedulable, sched.Always
}

// SkipFilter: nothing is cordoned, or the pod tolerates cordons.
func (p *Plugin) SkipFilter(_ *sched.Snapshot, pod *sched.Pod) bool {
	if p.cordoned == 0 {
		return true
	}
	for i := range pod.Tolerations {
		if pod.Tolerations[i].Tolerates(&unschedulableTaint) {
			return true
		}
	}
	return false
}

// Filter rejects cordoned nodes unless the pod tolerates them.
func (p *Plugin) Filter(s *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	if p.SkipFilter(s, pod) {
		return nil
	}
	for i, n := range nodes {
		if n.Unschedulable {
			res.RejectUnresolvable(i, Reason)
		}
	}
	return nil
}
