package noderesources

import (
	"errors"
	"math"
	"slices"

	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Balanced is the NodeResourcesBalancedAllocation scorer: 100 × (1 − the
// standard deviation of the requested/allocatable fractions) with the pod
// placed on the node. Settings (optional): {"resources": [{"name": "cpu",
// "weight": 1}, ...]} (weights are accepted and ignored, as in
// kube-scheduler).
type Balanced struct {
	resources []ResourceWeight
	fractions []float64
}

// NewBalanced returns the plugin with kube-scheduler's defaults (cpu,
// memory).
func NewBalanced() *Balanced { return &Balanced{resources: slices.Clone(defaultResources)} }

// BalancedManifest is the plugin's manifest.
func BalancedManifest() sdk.Manifest { return sdk.Manifest{Name: "NodeResourcesBalancedAllocation"} }

// Configure reads the settings.
func (b *Balanced) Configure(settings rawjson.Value) error {
	if settings == nil {
		return nil
	}
	if settings.Kind() != rawjson.Object {
		return errors.New("settings must be an object")
	}
	if r, ok := settings.Get("resources"); ok {
		rs, err := parseResources(r)
		if err != nil {
			return err
		}
		b.resources = rs
	}
	return nil
}

// ResourcesOnly: the plugin reads only resources.
func (b *Balanced) ResourcesOnly() bool { return true }

// SkipScore: a pod requesting none of the resources is not scored
// (kube-scheduler's PreScore skips best-effort pods).
func (b *Balanced) SkipScore(_ *sched.Snapshot, pod *sched.Pod) bool {
	for _, rw := range b.resources {
		if pod.Requests.Get(rw.Name) > 0 {
			return false
		}
	}
	return true
}

// Score rates each node.
func (b *Balanced) Score(s *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, scores []int64) error {
	if b.SkipScore(s, pod) {
		return nil
	}
	if b.isDefault() {
		scoreCPUMemory(pod, nodes, scores)
		return nil
	}
	for i, n := range nodes {
		b.fractions = b.fractions[:0]
		total := 0.0
		for _, rw := range b.resources {
			capacity := n.Allocatable.Get(rw.Name)
			if capacity == 0 {
				continue
			}
			f := float64(n.Requested.Get(rw.Name)+pod.Requests.Get(rw.Name)) / float64(capacity)
			if f > 1 { // not min: a function call in Wasm
				f = 1
			}
			total += f
			b.fractions = append(b.fractions, f)
		}
		std := 0.0
		switch k := len(b.fractions); {
		case k == 2:
			std = math.Abs((b.fractions[0] - b.fractions[1]) / 2)
		case k > 2:
			mean := total / float64(k)
			var sum float64
			for _, f := range b.fractions {
				sum += (f - mean) * (f - mean)
			}
			std = math.Sqrt(sum / float64(k))
		}
		scores[i] = int64((1 - std) * sched.MaxScore)
	}
	return nil
}

// isDefault: cpu and memory (kube-scheduler's default resources).
func (b *Balanced) isDefault() bool {
	return len(b.resources) == 2 && b.resources[0].Name == "cpu" && b.resources[1].Name == "memory"
}

// scoreCPUMemory is Score for the default resources (cpu, memory),
// unrolled: it runs for every pod on every candidate.
func scoreCPUMemory(pod *sched.Pod, nodes []*sched.Node, scores []int64) {
	pc, pm := float64(pod.Requests.MilliCPU), float64(pod.Requests.Memory)
	for i, n := range nodes {
		ac, am := n.Allocatable.MilliCPU, n.Allocatable.Memory
		switch {
		case ac != 0 && am != 0:
			// Comparisons, not min: Go's float min (NaN and signed
			// zero rules) is a function call in Wasm, per node.
			fc := (float64(n.Requested.MilliCPU) + pc) / float64(ac)
			if fc > 1 {
				fc = 1
			}
			fm := (float64(n.Requested.Memory) + pm) / float64(am)
			if fm > 1 {
				fm = 1
			}
			scores[i] = int64((1 - math.Abs((fc-fm)/2)) * sched.MaxScore)
		default:
			scores[i] = sched.MaxScore // one fraction or none: no deviation
		}
	}
}
