// Package nodename is the NodeName filter: a pod that names a node in
// spec.nodeName fits only there (kube-scheduler's NodeName plugin).
package nodename

import (
	"github.com/tugboat-dev/tugboat/sdk"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Reason is kube-scheduler's rejection reason.
const Reason = "node(s) didn't match the requested node name"

// Plugin is the filter.
type Plugin struct{}

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest { return sdk.Manifest{Name: "NodeName"} }

// Relevance implements sched.Relevancer: only pods naming a node.
func (*Plugin) Relevance() (filter, score sched.When) { return sched.WhenPodNodeName, sched.Always }

// SkipFilter: a pod without spec.nodeName fits everywhere.
func (*Plugin) SkipFilter(_ *sched.Snapshot, pod *sched.Pod) bool { return pod.NodeName == "" }

// Filter rejects every node but the one the pod names.
func (*Plugin) Filter(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	if pod.NodeName == "" {
		return nil
	}
	for i, n := range nodes {
		if n.Name != pod.NodeName {
			res.RejectUnresolvable(i, Reason)
		}
	}
	return nil
}
