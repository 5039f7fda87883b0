package scenario

import (
	"github.com/tugboat-dev/tugboat/plugins/scheduler/imagelocality/imagelocality"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/interpodaffinity/interpodaffinity"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodeaffinity/nodeaffinity"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodename/nodename"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/noderesources/noderesources"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodeunschedulable/nodeunschedulable"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/podtopologyspread/podtopologyspread"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/tainttoleration/tainttoleration"
	"github.com/tugboat-dev/tugboat/sdk"
)

// Builtin describes one built-in scheduler plugin: its name (the manifest
// name, as in kube-scheduler), the main package directory under
// plugins/scheduler (the .wasm name), how to make it natively, and its
// place in the default profile.
type Builtin struct {
	Name string
	Dir  string
	// New returns a fresh plugin value and its manifest.
	New func() (any, sdk.Manifest)
	// Weight is kube-scheduler's default weight (scorers).
	Weight int64
}

// Builtins lists the built-in plugins in the default profile's filter
// order (kube-scheduler's default plugin set: NodeResourcesFit scores with
// LeastAllocated).
func Builtins() []Builtin {
	return []Builtin{
		{"NodeUnschedulable", "nodeunschedulable", func() (any, sdk.Manifest) { return nodeunschedulable.New(), nodeunschedulable.Manifest() }, 0},
		{"NodeName", "nodename", func() (any, sdk.Manifest) { return nodename.New(), nodename.Manifest() }, 0},
		{"TaintToleration", "tainttoleration", func() (any, sdk.Manifest) { return tainttoleration.New(), tainttoleration.Manifest() }, 3},
		{"NodeAffinity", "nodeaffinity", func() (any, sdk.Manifest) { return nodeaffinity.New(), nodeaffinity.Manifest() }, 2},
		{"NodeResourcesFit", "noderesources", func() (any, sdk.Manifest) { return noderesources.NewFit(), noderesources.FitManifest() }, 1},
		{"PodTopologySpread", "podtopologyspread", func() (any, sdk.Manifest) { return podtopologyspread.New(), podtopologyspread.Manifest() }, 2},
		{"InterPodAffinity", "interpodaffinity", func() (any, sdk.Manifest) { return interpodaffinity.New(), interpodaffinity.Manifest() }, 2},
		{"NodeResourcesBalancedAllocation", "balancedallocation", func() (any, sdk.Manifest) { return noderesources.NewBalanced(), noderesources.BalancedManifest() }, 1},
		{"ImageLocality", "imagelocality", func() (any, sdk.Manifest) { return imagelocality.New(), imagelocality.Manifest() }, 1},
	}
}

// builtin returns the named built-in.
func builtin(name string) (Builtin, bool) {
	for _, b := range Builtins() {
		if b.Name == name {
			return b, true
		}
	}
	return Builtin{}, false
}
