package tainttoleration_test

import (
	"reflect"
	"testing"

	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
	"github.com/tugboat-dev/tugboat/kernel/scheduler/schedtest"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/tainttoleration/tainttoleration"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func cluster(t testing.TB) *schedtest.Cluster {
	t.Helper()
	return schedtest.New().AddNodes(t, `
metadata: {name: clean}
status: {allocatable: {cpu: "1", pods: "10"}}`, `
metadata: {name: gpu}
spec: {taints: [{key: gpu, value: "true", effect: NoSchedule}]}
status: {allocatable: {cpu: "1", pods: "10"}}`, `
metadata: {name: draining}
spec: {taints: [{key: drain, effect: NoExecute}]}
status: {allocatable: {cpu: "1", pods: "10"}}`, `
metadata: {name: soft}
spec: {taints: [{key: a, effect: PreferNoSchedule}, {key: b, effect: PreferNoSchedule}]}
status: {allocatable: {cpu: "1", pods: "10"}}`)
}

func TestTaintToleration(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pod     string
		reasons map[string][]string
		scores  map[string]int64
	}{
		{
			name: "no tolerations",
			pod:  `{metadata: {name: p}, spec: {containers: [{name: c, image: i}]}}`,
			reasons: map[string][]string{
				"gpu": {"node(s) had untolerated taint {gpu: true}"}, "draining": {"node(s) had untolerated taint {drain: }"},
			},
			scores: map[string]int64{"clean": 100, "soft": 0},
		},
		{
			name: "tolerates gpu and one soft taint",
			pod: `
metadata: {name: p}
spec:
  tolerations: [{key: gpu, operator: Equal, value: "true", effect: NoSchedule}, {key: a, operator: Exists}]
  containers: [{name: c, image: i}]`,
			reasons: map[string][]string{"draining": {"node(s) had untolerated taint {drain: }"}},
			scores:  map[string]int64{"clean": 100, "gpu": 100, "soft": 0},
		},
		{
			name:    "tolerates everything",
			pod:     `{metadata: {name: p}, spec: {tolerations: [{operator: Exists}], containers: [{name: c, image: i}]}}`,
			reasons: nil,
			scores:  map[string]int64{"clean": 100, "gpu": 100, "draining": 100, "soft": 100},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mod, err := sched.New(tainttoleration.New(), tainttoleration.Manifest())
			if err != nil {
				t.Fatal(err)
			}
			prof := schedtest.Profile(t, kscheduler.PluginConfig{Plugin: mod, Filter: true, Score: true, Weight: 3})
			res := cluster(t).Schedule(t, prof, tc.pod)
			if !reflect.DeepEqual(res.Reasons, tc.reasons) {
				t.Errorf("reasons %v, want %v", res.Reasons, tc.reasons)
			}
			if got := res.PluginScores["TaintToleration"]; !reflect.DeepEqual(got, tc.scores) {
				t.Errorf("scores %v, want %v", got, tc.scores)
			}
		})
	}
}

// TestSkips: with no tainted node the plugin is not relevant (the driver
// does not call it) and, asked anyway, skips both phases.
func TestSkips(t *testing.T) {
	p := tainttoleration.New()
	mod, err := sched.New(p, tainttoleration.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	prof := schedtest.Profile(t, kscheduler.PluginConfig{Plugin: mod, Filter: true, Score: true})
	c := schedtest.New().AddNodes(t, `{metadata: {name: a}, status: {allocatable: {pods: "10"}}}`)
	c.Schedule(t, prof, `{metadata: {name: p}, spec: {containers: [{name: c, image: i}]}}`)
	if st := prof.Stats()[0]; st.Idle != 2 || st.FilterCalls+st.ScoreCalls != 0 {
		t.Fatalf("%d calls, %d not made; want none made", st.FilterCalls+st.ScoreCalls, st.Idle)
	}
	// Warm gave the plugin the table: it has no taint to check.
	if !p.SkipFilter(mod.Snapshot(), nil) || !p.SkipScore(mod.Snapshot(), nil) {
		t.Fatal("SkipFilter or SkipScore false without tainted nodes")
	}
}
