package nodeunschedulable_test

import (
	"reflect"
	"testing"

	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
	"github.com/tugboat-dev/tugboat/kernel/scheduler/schedtest"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodename/nodename"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodeunschedulable/nodeunschedulable"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func TestNodeUnschedulableAndNodeName(t *testing.T) {
	unsched, err := sched.New(nodeunschedulable.New(), nodeunschedulable.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	name, err := sched.New(nodename.New(), nodename.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	prof := schedtest.Profile(t,
		kscheduler.PluginConfig{Plugin: unsched, Filter: true}, kscheduler.PluginConfig{Plugin: name, Filter: true})
	c := schedtest.New().AddNodes(t,
		`{metadata: {name: a}, status: {allocatable: {pods: "10"}}}`,
		`{metadata: {name: cordoned}, spec: {unschedulable: true}, status: {allocatable: {pods: "10"}}}`)
	for _, tc := range []struct {
		name, pod string
		reasons   map[string][]string
	}{
		{"cordoned node rejected", `{metadata: {name: p}, spec: {containers: [{name: c, image: i}]}}`,
			map[string][]string{"cordoned": {"node(s) were unschedulable"}}},
		{"daemonset-style toleration", `
metadata: {name: ds}
spec:
  tolerations: [{key: node.kubernetes.io/unschedulable, operator: Exists, effect: NoSchedule}]
  containers: [{name: c, image: i}]`, nil},
		{"node name", `{metadata: {name: n}, spec: {nodeName: a, containers: [{name: c, image: i}]}}`,
			map[string][]string{"cordoned": {"node(s) were unschedulable"}}},
		{"node name elsewhere", `
metadata: {name: n}
spec: {nodeName: cordoned, tolerations: [{operator: Exists}], containers: [{name: c, image: i}]}`,
			map[string][]string{"a": {"node(s) didn't match the requested node name"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := c.Schedule(t, prof, tc.pod)
			if !reflect.DeepEqual(res.Reasons, tc.reasons) {
				t.Fatalf("reasons %v, want %v", res.Reasons, tc.reasons)
			}
		})
	}
	// Uncordoned, the plugin has nothing left to reject and skips.
	c.AddNodes(t, `{metadata: {name: cordoned}, status: {allocatable: {pods: "10"}}}`)
	res := c.Schedule(t, prof, `{metadata: {name: p}, spec: {containers: [{name: c, image: i}]}}`)
	if res.Reasons != nil {
		t.Fatalf("after uncordon: %v", res.Reasons)
	}
}
