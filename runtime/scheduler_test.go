package runtime_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/hostapi"
	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
	"github.com/tugboat-dev/tugboat/kernel/scheduler/schedtest"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodename/nodename"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/noderesources/noderesources"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodeunschedulable/nodeunschedulable"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/tainttoleration/tainttoleration"
	"github.com/tugboat-dev/tugboat/runtime"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// schedPlugin is a built-in scheduler plugin of the tests, by its main
// package directory and its natively linked value.
type schedPlugin struct {
	dir    string
	weight int64
	native func() (any, sdk.Manifest)
}

var schedPlugins = []schedPlugin{
	{"nodeunschedulable", 0, func() (any, sdk.Manifest) { return nodeunschedulable.New(), nodeunschedulable.Manifest() }},
	{"nodename", 0, func() (any, sdk.Manifest) { return nodename.New(), nodename.Manifest() }},
	{"tainttoleration", 3, func() (any, sdk.Manifest) { return tainttoleration.New(), tainttoleration.Manifest() }},
	{"noderesources", 1, func() (any, sdk.Manifest) { return noderesources.NewFit(), noderesources.FitManifest() }},
	{"balancedallocation", 1, func() (any, sdk.Manifest) { return noderesources.NewBalanced(), noderesources.BalancedManifest() }},
}

// wasmSchedPlugins loads the plugins as Wasm modules on one engine.
func wasmSchedPlugins(t testing.TB, only ...string) []kscheduler.PluginConfig {
	t.Helper()
	ctx := context.Background()
	e, err := runtime.NewEngine(ctx, runtime.Config{CacheDir: runtime.SharedTestCacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(ctx) })
	var out []kscheduler.PluginConfig
	for _, sp := range schedPlugins {
		if len(only) > 0 && !contains(only, sp.dir) {
			continue
		}
		path := plugintest.BuildWasm(t, filepath.Join("..", "plugins", "scheduler", sp.dir))
		_, m := sp.native()
		p, err := e.Load(ctx, runtime.PluginConfig{Name: m.Name, Path: path, PoolSize: 1, MemoryLimit: runtime.DefaultSchedulerMemoryLimit})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := runtime.SchedulerPlugin(p, sp.weight)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cfg)
	}
	return out
}

// nativeSchedPlugins links the same plugins natively.
func nativeSchedPlugins(t testing.TB, only ...string) []kscheduler.PluginConfig {
	t.Helper()
	var out []kscheduler.PluginConfig
	for _, sp := range schedPlugins {
		if len(only) > 0 && !contains(only, sp.dir) {
			continue
		}
		mod, err := sched.New(sp.native())
		if err != nil {
			t.Fatal(err)
		}
		kinds := mod.Manifest().Kinds
		out = append(out, kscheduler.PluginConfig{
			Plugin: mod, Weight: sp.weight,
			Filter: contains(kinds, "scheduler/filter"), Score: contains(kinds, "scheduler/score"),
		})
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// testCluster: four nodes with different room, a taint and a cordon.
func testCluster(t testing.TB) *schedtest.Cluster {
	t.Helper()
	return schedtest.New().AddNodes(t, `
metadata: {name: a, labels: {disktype: ssd}}
status: {allocatable: {cpu: "2", memory: 4Gi, pods: "10"}}`, `
metadata: {name: b}
spec: {taints: [{key: dedicated, value: gpu, effect: NoSchedule}]}
status: {allocatable: {cpu: "8", memory: 16Gi, pods: "10", nvidia.com/gpu: "2"}}`, `
metadata: {name: c}
spec: {unschedulable: true}
status: {allocatable: {cpu: "8", memory: 16Gi, pods: "10"}}`, `
metadata: {name: d}
spec: {taints: [{key: soft, effect: PreferNoSchedule}]}
status: {allocatable: {cpu: "4", memory: 8Gi, pods: "10"}}`)
}

var testPods = []string{
	`{metadata: {name: p1}, spec: {containers: [{name: c, image: i, resources: {requests: {cpu: "1", memory: 1Gi}}}]}}`,
	`
metadata: {name: gpu}
spec:
  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]
  containers: [{name: c, image: i, resources: {requests: {nvidia.com/gpu: "1"}, limits: {nvidia.com/gpu: "1"}}}]`,
	`{metadata: {name: big}, spec: {containers: [{name: c, image: i, resources: {requests: {cpu: "16"}}}]}}`,
	`
metadata: {name: ds}
spec:
  tolerations: [{operator: Exists}]
  containers: [{name: c, image: i, resources: {requests: {cpu: 500m}}}]`,
	`{metadata: {name: named}, spec: {nodeName: d, containers: [{name: c, image: i}]}}`,
}

// TestSchedulerWasmMatchesNative runs the same pods through the plugins
// as Wasm and natively, binding each scheduled pod into the snapshot so
// that later calls carry deltas, and requires identical results.
func TestSchedulerWasmMatchesNative(t *testing.T) {
	wasm := schedtest.Profile(t, wasmSchedPlugins(t)...)
	native := schedtest.Profile(t, nativeSchedPlugins(t)...)
	cw, cn := testCluster(t), testCluster(t)
	for round := range 3 {
		for i, doc := range testPods {
			rw, rn := cw.Schedule(t, wasm, doc), cn.Schedule(t, native, doc)
			if !reflect.DeepEqual(rw, rn) {
				t.Fatalf("round %d pod %d: wasm %+v\nnative %+v", round, i, rw, rn)
			}
			if rw.Node == "" {
				continue
			}
			for _, c := range []*schedtest.Cluster{cw, cn} {
				p := schedtest.ParsePod(t, doc)
				p.Name = fmt.Sprintf("%s-%d", p.Name, round)
				p.Spec.NodeName = rw.Node
				c.Snap.SetPod(p)
			}
		}
	}
	// After three rounds node a (2 cpu) is full for p1's 1 cpu.
	res := cw.Schedule(t, wasm, testPods[0])
	if got := res.Reasons["a"]; !reflect.DeepEqual(got, []string{"Insufficient cpu"}) {
		t.Errorf("node a reasons %v, want Insufficient cpu (pods bound through deltas)", got)
	}
}

func TestSchedulerMessages(t *testing.T) {
	prof := schedtest.Profile(t, wasmSchedPlugins(t)...)
	for _, tc := range []struct {
		name, pod, node, message string
	}{
		{"fits the least loaded untainted node", testPods[0], "a", ""},
		{"gpu goes to the tainted gpu node", testPods[1], "b", ""},
		{"nothing fits", testPods[2], "", "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, " +
			"1 node(s) were unschedulable, 2 Insufficient cpu."},
		// b and the cordoned c tie; the smaller name wins (Options.Trace).
		{"tolerate everything may land on the cordoned node", testPods[3], "b", ""},
		{"node name", testPods[4], "d", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := testCluster(t).Schedule(t, prof, tc.pod)
			if res.Node != tc.node || res.Message != tc.message || (tc.node != "" && len(res.Reasons) > 0 && tc.pod == testPods[3]) {
				t.Fatalf("node %q message %q, want %q %q (reasons %v, scores %v)", res.Node, res.Message, tc.node, tc.message, res.Reasons, res.Scores)
			}
		})
	}
}

// TestSchedulerSharedInstance shares one Wasm instance between two
// profiles: each profile's view of the instance's generation goes stale,
// the guest answers "resync" and the host sends what it missed.
func TestSchedulerSharedInstance(t *testing.T) {
	cfgs := wasmSchedPlugins(t, "noderesources")
	a := schedtest.Profile(t, cfgs...)
	b := schedtest.Profile(t, cfgs...)
	ref := schedtest.Profile(t, nativeSchedPlugins(t, "noderesources")...)
	c, cr := testCluster(t), testCluster(t)
	for i := range 6 {
		prof := a
		if i%2 == 1 {
			prof = b
		}
		got, want := c.Schedule(t, prof, testPods[0]), cr.Schedule(t, ref, testPods[0])
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("call %d: shared instance %+v\nnative %+v", i, got, want)
		}
		for _, cl := range []*schedtest.Cluster{c, cr} {
			cl.Snap.SetPod(&corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("x%d", i)},
				Spec: corev1.PodSpec{NodeName: got.Node, Containers: []corev1.Container{{Name: "c",
					Resources: corev1.ResourceRequirements{Requests: schedtest.Node("", "500m", "0", 0, nil).Status.Allocatable}}}},
			})
		}
	}
}

// benchPod is tugbench's basic pod.
const benchPod = `
metadata: {name: pod-1, namespace: default, labels: {app: bench}, uid: 0d4bd0a4-1c5b-4a4e-9d70-3d2b8a6f5c11}
spec:
  schedulerName: default-scheduler
  restartPolicy: Always
  terminationGracePeriodSeconds: 30
  dnsPolicy: ClusterFirst
  containers:
  - name: pause
    image: registry.k8s.io/pause:3.10
    imagePullPolicy: IfNotPresent
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
    resources: {requests: {cpu: 100m, memory: 500Mi}}
  tolerations:
  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
status: {phase: Pending, qosClass: Burstable}`

// BenchmarkSchedule measures one scheduling attempt over 5000 nodes
// (early stop after 500 feasible) with the plugins as Wasm and natively.
func BenchmarkSchedule(b *testing.B) {
	for _, mode := range []string{"wasm", "native"} {
		for _, sp := range schedPlugins {
			b.Run(mode+"/"+sp.dir, func(b *testing.B) {
				var cfgs []kscheduler.PluginConfig
				if mode == "wasm" {
					cfgs = wasmSchedPlugins(b, sp.dir)
				} else {
					cfgs = nativeSchedPlugins(b, sp.dir)
				}
				prof := schedtest.Profile(b, cfgs...)
				c := schedtest.New()
				for i := range benchNodes() {
					c.Snap.SetNode(schedtest.Node(fmt.Sprintf("n%d", i), "4", "32Gi", 0, map[string]string{"zone": "z1"}))
				}
				pod := schedtest.ParsePod(b, benchPod)
				ctx := context.Background()
				if _, err := prof.Schedule(ctx, c.Snap, pod, kscheduler.Options{}); err != nil {
					b.Fatal(err)
				}
				if os.Getenv("SCHED_BENCH_NOISE") != "" {
					stop := make(chan struct{})
					defer close(stop)
					for range 4 {
						go func() {
							var sink [][]byte
							for {
								select {
								case <-stop:
									return
								default:
								}
								sink = append(sink, make([]byte, 4096))
								if len(sink) > 1000 {
									sink = nil
									time.Sleep(50 * time.Microsecond)
								}
							}
						}()
					}
				}
				i := 0
				for b.Loop() {
					res, err := prof.Schedule(ctx, c.Snap, pod, kscheduler.Options{})
					if err != nil {
						b.Fatal(err)
					}
					// Bind it, so that the next call carries a delta.
					if os.Getenv("SCHED_BENCH_NOBIND") != "" {
						continue
					}
					i++
					bound := pod.DeepCopy()
					bound.Name = "bound-" + strconv.Itoa(i)
					bound.Spec.NodeName = res.Node
					c.Snap.SetPod(bound)
				}
				for _, st := range prof.Stats() {
					calls := st.FilterCalls + st.ScoreCalls
					b.ReportMetric(float64(st.Bytes)/float64(calls), "B/call")
				}
			})
		}
	}
}

func benchNodes() int {
	if n, err := strconv.Atoi(os.Getenv("SCHED_BENCH_NODES")); err == nil {
		return n
	}
	return 5000
}

// TestSchedulerRelevance: a Wasm plugin's relevance (read at load from
// the module's export) is what the same plugin declares natively, and
// the runtime honours it through kscheduler.Relevancer.
func TestSchedulerRelevance(t *testing.T) {
	wasm := wasmSchedPlugins(t)
	native := nativeSchedPlugins(t)
	for i, cfg := range wasm {
		w, ok := cfg.Plugin.(kscheduler.Relevancer)
		if !ok {
			t.Fatalf("%s: *runtime.Plugin is not a Relevancer", cfg.Plugin.Name())
		}
		n := native[i].Plugin.(*sched.Module)
		wf, ws := w.Relevance()
		nf, ns := n.Relevance()
		if wf != nf || ws != ns {
			t.Errorf("%s: relevance as Wasm %#x/%#x, native %#x/%#x", cfg.Plugin.Name(), wf, ws, nf, ns)
		}
	}
	// nodename is relevant only for pods naming a node.
	if f, _ := wasm[1].Plugin.(kscheduler.Relevancer).Relevance(); f != hostapi.SchedWhenPodNodeName {
		t.Errorf("nodename filter relevance %#x, want SchedWhenPodNodeName", f)
	}
}
