package noderesources_test

import (
	"reflect"
	"testing"

	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
	"github.com/tugboat-dev/tugboat/kernel/scheduler/schedtest"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/noderesources/noderesources"
	"github.com/tugboat-dev/tugboat/sdk"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// module returns the native module of p, configured with settings.
func module(t testing.TB, p any, m sdk.Manifest, settings string) *sched.Module {
	t.Helper()
	mod, err := sched.New(p, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := mod.Configure([]byte(settings)); err != nil {
		t.Fatal(err)
	}
	return mod
}

// cluster: small (1 cpu, 1Gi), big (4 cpu, 8Gi, 2 GPUs) holding a pod of
// 1 cpu / 1Gi, full (2 cpu, 2Gi, room for one pod, which it has).
func cluster(t testing.TB) *schedtest.Cluster {
	t.Helper()
	return schedtest.New().AddNodes(t, `
metadata: {name: small}
status: {allocatable: {cpu: "1", memory: 1Gi, pods: "110"}}`, `
metadata: {name: big}
status: {allocatable: {cpu: "4", memory: 8Gi, pods: "110", nvidia.com/gpu: "2"}}`, `
metadata: {name: full}
status: {allocatable: {cpu: "2", memory: 2Gi, pods: "1"}}`).AddPods(t, `
metadata: {name: a}
spec:
  nodeName: big
  containers: [{name: c, image: i, resources: {requests: {cpu: "1", memory: 1Gi}}}]`, `
metadata: {name: b}
spec:
  nodeName: full
  containers: [{name: c, image: i}]`)
}

func TestFitFilter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pod     string
		node    string
		reasons map[string][]string
		message string
	}{
		{
			name:    "best effort fits where pods are left",
			pod:     `{metadata: {name: p}, spec: {containers: [{name: c, image: i}]}}`,
			reasons: map[string][]string{"full": {"Too many pods"}},
		},
		{
			name: "cpu and memory",
			pod: `
metadata: {name: p}
spec: {containers: [{name: c, image: i, resources: {requests: {cpu: 1500m, memory: 1536Mi}}}]}`,
			reasons: map[string][]string{"small": {"Insufficient cpu", "Insufficient memory"}, "full": {"Too many pods"}},
			node:    "big",
		},
		{
			name: "gpu",
			pod: `
metadata: {name: p}
spec: {containers: [{name: c, image: i, resources: {requests: {nvidia.com/gpu: "3"}, limits: {nvidia.com/gpu: "3"}}}]}`,
			reasons: map[string][]string{
				"small": {"Insufficient nvidia.com/gpu"}, "big": {"Insufficient nvidia.com/gpu"},
				"full": {"Too many pods", "Insufficient nvidia.com/gpu"},
			},
			message: "0/3 nodes are available: 1 Too many pods, 3 Insufficient nvidia.com/gpu.",
		},
		{
			name: "init container max counts",
			pod: `
metadata: {name: p}
spec:
  initContainers: [{name: i, image: i, resources: {requests: {cpu: "3"}}}]
  containers: [{name: c, image: i, resources: {requests: {cpu: 100m}}}]`,
			reasons: map[string][]string{"small": {"Insufficient cpu"}, "full": {"Too many pods", "Insufficient cpu"}},
			node:    "big",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fit := module(t, noderesources.NewFit(), noderesources.FitManifest(), "")
			prof := schedtest.Profile(t, kscheduler.PluginConfig{Plugin: fit, Filter: true})
			res := cluster(t).Schedule(t, prof, tc.pod)
			if !reflect.DeepEqual(res.Reasons, tc.reasons) {
				t.Errorf("reasons %v, want %v", res.Reasons, tc.reasons)
			}
			if res.Message != tc.message {
				t.Errorf("message %q, want %q", res.Message, tc.message)
			}
			if tc.node != "" && res.Node != tc.node {
				t.Errorf("node %q, want %q", res.Node, tc.node)
			}
		})
	}
}

func TestFitScore(t *testing.T) {
	// A pod of 1 cpu / 1Gi. small (1 cpu, 1Gi) is then full: 0 + 0.
	// big (4 cpu, 8Gi) already holds 1 cpu, 1Gi: cpu (4-2)/4 = 50, memory
	// (8-2)/8 = 75 -> 62. full is filtered out (too many pods).
	pod := `
metadata: {name: p}
spec: {containers: [{name: c, image: i, resources: {requests: {cpu: "1", memory: 1Gi}}}]}`
	for _, tc := range []struct {
		name, settings string
		want           map[string]int64
	}{
		{"least allocated", "", map[string]int64{"small": 0, "big": 62}},
		{"most allocated", `{"scoringStrategy": {"type": "MostAllocated"}}`, map[string]int64{"small": 100, "big": 37}},
		{"cpu only, weighted", `{"scoringStrategy": {"resources": [{"name": "cpu", "weight": 3}]}}`, map[string]int64{"small": 0, "big": 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fit := module(t, noderesources.NewFit(), noderesources.FitManifest(), tc.settings)
			prof := schedtest.Profile(t, kscheduler.PluginConfig{Plugin: fit, Filter: true, Score: true})
			res := cluster(t).Schedule(t, prof, pod)
			if got := res.PluginScores["NodeResourcesFit"]; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("scores %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBalancedScore(t *testing.T) {
	// Pod 1 cpu / 1Gi. small: cpu 1/1, memory 1/1 -> std 0 -> 100.
	// big: cpu 2/4 = .5, memory 2/8 = .25 -> std .125 -> 87.
	// full: cpu 0/2, memory 0/2Gi... the pod requests 1 of 2 cpu (.5) and
	// 1Gi of 2Gi (.5) -> 100.
	pod := `
metadata: {name: p}
spec: {containers: [{name: c, image: i, resources: {requests: {cpu: "1", memory: 1Gi}}}]}`
	bal := module(t, noderesources.NewBalanced(), noderesources.BalancedManifest(), "")
	prof := schedtest.Profile(t, kscheduler.PluginConfig{Plugin: bal, Score: true})
	res := cluster(t).Schedule(t, prof, pod)
	want := map[string]int64{"small": 100, "big": 87, "full": 100}
	if got := res.PluginScores["NodeResourcesBalancedAllocation"]; !reflect.DeepEqual(got, want) {
		t.Errorf("scores %v, want %v", got, want)
	}
	// A best-effort pod: the plugin is skipped (no scores).
	res = cluster(t).Schedule(t, prof, `{metadata: {name: q}, spec: {containers: [{name: c, image: i}]}}`)
	want = map[string]int64{}
	if got := res.PluginScores["NodeResourcesBalancedAllocation"]; !reflect.DeepEqual(got, want) {
		t.Errorf("best effort scores %v, want %v", got, want)
	}
}

func TestSettings(t *testing.T) {
	for _, tc := range []struct {
		name, settings, err string
	}{
		{"bad type", `{"scoringStrategy": {"type": "Random"}}`, `scoringStrategy.type must be "LeastAllocated" or "MostAllocated"`},
		{"bad weight", `{"scoringStrategy": {"resources": [{"name": "cpu", "weight": 0}]}}`, `resources must be a list of {"name": string, "weight": 1..100}`},
		{"ignored not a list", `{"ignoredResources": "x"}`, "ignoredResources must be a list of resource names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mod, err := sched.New(noderesources.NewFit(), noderesources.FitManifest())
			if err != nil {
				t.Fatal(err)
			}
			if err := mod.Configure([]byte(tc.settings)); err == nil || err.Error() != tc.err {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestFitWithBalancedParts: the Fit module with balancedAllocation enabled
// answers two score parts that equal the two plugins run as separate
// modules, each weighed by its own weight.
func TestFitWithBalancedParts(t *testing.T) {
	pods := map[string]string{
		"1 cpu 1Gi": `
metadata: {name: p}
spec: {containers: [{name: c, image: i, resources: {requests: {cpu: "1", memory: 1Gi}}}]}`,
		"small": `
metadata: {name: p}
spec: {containers: [{name: c, image: i, resources: {requests: {cpu: 100m, memory: 100Mi}}}]}`,
		"cpu only": `
metadata: {name: p}
spec: {containers: [{name: c, image: i, resources: {requests: {cpu: 200m}}}]}`,
		"best effort": `{metadata: {name: p}, spec: {containers: [{name: c, image: i}]}}`,
	}
	for _, tc := range []struct {
		name, strategy, balanced string
	}{
		{"defaults", `{"type": "LeastAllocated"}`, `{}`},
		{"most allocated", `{"type": "MostAllocated"}`, `{}`},
		{"balanced on cpu only", `{"type": "LeastAllocated"}`, `{"resources": [{"name": "cpu"}]}`},
	} {
		for podName, pod := range pods {
			t.Run(tc.name+"/"+podName, func(t *testing.T) {
				both := module(t, noderesources.NewFit(), noderesources.FitManifest(),
					`{"scoringStrategy": `+tc.strategy+`, "balancedAllocation": `+tc.balanced+`}`)
				if got := both.ScoreParts(); got != 2 {
					t.Fatalf("ScoreParts() = %d, want 2", got)
				}
				combined := schedtest.Profile(t, kscheduler.PluginConfig{Plugin: both, Filter: true, Score: true,
					Parts: []kscheduler.ScorePart{{Name: "NodeResourcesFit", Weight: 2}, {Name: "NodeResourcesBalancedAllocation", Weight: 3}}})
				fit := module(t, noderesources.NewFit(), noderesources.FitManifest(), `{"scoringStrategy": `+tc.strategy+`}`)
				bal := module(t, noderesources.NewBalanced(), noderesources.BalancedManifest(), tc.balanced)
				separate := schedtest.Profile(t,
					kscheduler.PluginConfig{Plugin: fit, Filter: true, Score: true, Weight: 2},
					kscheduler.PluginConfig{Plugin: bal, Score: true, Weight: 3})
				got := cluster(t).Schedule(t, combined, pod)
				want := cluster(t).Schedule(t, separate, pod)
				if got.Node != want.Node || !reflect.DeepEqual(got.Scores, want.Scores) {
					t.Errorf("combined: node %q scores %v; separate: node %q scores %v", got.Node, got.Scores, want.Node, want.Scores)
				}
				if len(got.Scores) == 0 {
					t.Fatalf("no scores: %+v", got)
				}
				for _, name := range []string{"NodeResourcesFit", "NodeResourcesBalancedAllocation"} {
					g, w := got.PluginScores[name], want.PluginScores[name]
					if len(w) == 0 { // skipped when separate: zero when combined
						for n, s := range g {
							if s != 0 {
								t.Errorf("%s on %s: %d, want 0 (skipped separately)", name, n, s)
							}
						}
						continue
					}
					if !reflect.DeepEqual(g, w) {
						t.Errorf("%s: combined %v, separate %v", name, g, w)
					}
				}
			})
		}
	}
}
