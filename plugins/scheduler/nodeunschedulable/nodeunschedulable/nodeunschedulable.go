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

// Plugin is the filter.
type Plugin struct{}

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest { return sdk.Manifest{Name: "NodeUnschedulable"} }

var unschedulableTaint = sched.Taint{Key: TaintKey, Effect: "NoSchedule"}

// Filter rejects cordoned nodes unless the pod tolerates them.
func (*Plugin) Filter(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	tolerates := false
	for i := range pod.Tolerations {
		if pod.Tolerations[i].Tolerates(&unschedulableTaint) {
			tolerates = true
			break
		}
	}
	if tolerates {
		return nil
	}
	for i, n := range nodes {
		if n.Unschedulable {
			res.Reject(i, Reason)
		}
	}
	return nil
}
