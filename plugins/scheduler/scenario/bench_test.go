package scenario

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
	"github.com/tugboat-dev/tugboat/runtime"
)

// benchNodes is the cluster size of the scheduler benchmarks.
const benchNodes = 5000

func benchNode(i int) *corev1.Node {
	name := "node-" + strconv.Itoa(i)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelHostname: name, corev1.LabelTopologyZone: "zone" + strconv.Itoa(i%3),
		}},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("32Gi"),
			corev1.ResourcePods: resource.MustParse("110"),
		}},
	}
}

func benchPod(i int, workload string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-" + strconv.Itoa(i), Namespace: "default", UID: types.UID("uid-" + strconv.Itoa(i)),
			Labels: map[string]string{"color": "green"}},
		Spec: corev1.PodSpec{SchedulerName: kscheduler.DefaultSchedulerName, Containers: []corev1.Container{{
			Name: "pause", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("500Mi"),
			}},
		}}},
	}
	switch workload {
	case "antiaffinity":
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"color": "green"}},
				TopologyKey:   corev1.LabelHostname,
			}},
		}}
	case "nodeaffinity":
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"zone1", "zone2"},
				}},
			}}},
		}}
	case "spread":
		p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"color": "green"}},
		}}
	}
	return p
}

// BenchmarkProfile schedules pods one after another (each bound before
// the next, like the driver's assume) on 5000 nodes with the default
// profile, natively and with the Wasm modules: ns/op is the time per pod.
// Workloads: basic (no constraints), antiaffinity (required, per host),
// nodeaffinity (required zone In), spread (hard zone spread).
//
//	go test ./plugins/scheduler/scenario -run X -bench Profile -benchtime 500x
func BenchmarkProfile(b *testing.B) {
	ctx := context.Background()
	cache := filepath.Join(os.TempDir(), "tugboat-scenario-"+strconv.Itoa(os.Getuid()), "wazero-cache")
	eng, err := runtime.NewEngine(ctx, runtime.Config{CacheDir: cache})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close(ctx)
	w := &wasmPlugins{eng: eng, loaded: map[string]*runtime.Plugin{}}
	for _, workload := range []string{"basic", "antiaffinity", "nodeaffinity", "spread"} {
		for _, mode := range []string{"native", "wasm"} {
			b.Run(workload+"/"+mode, func(b *testing.B) {
				mk := native
				if mode == "wasm" {
					mk = w.make(b)
				}
				var cfgs []kscheduler.PluginConfig
				for _, bi := range Builtins() {
					if only := os.Getenv("BENCH_PLUGIN"); only != "" && only != bi.Name {
						continue
					}
					cfg, err := mk(bi, nil, bi.Weight)
					if err != nil {
						b.Fatal(err)
					}
					cfgs = append(cfgs, cfg)
				}
				prof, err := kscheduler.NewProfile(kscheduler.DefaultSchedulerName, cfgs)
				if err != nil {
					b.Fatal(err)
				}
				snap := kscheduler.NewSnapshot()
				for i := range benchNodes {
					snap.SetNode(benchNode(i))
				}
				// Warm up: the first call sends the whole table.
				if _, err := prof.Schedule(ctx, snap, benchPod(-1, workload), kscheduler.Options{}); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					p := benchPod(i, workload)
					res, err := prof.Schedule(ctx, snap, p, kscheduler.Options{})
					if err != nil {
						b.Fatal(err)
					}
					if res.Node == "" {
						b.Fatalf("pod %d: %s", i, res.Message)
					}
					p.Spec.NodeName = res.Node
					snap.SetPod(p)
				}
			})
		}
	}
}
