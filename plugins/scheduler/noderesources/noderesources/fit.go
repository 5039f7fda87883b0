// Package noderesources holds kube-scheduler's resource plugins:
// NodeResourcesFit (a filter on requests vs allocatable for cpu, memory,
// ephemeral-storage, pods and extended resources such as nvidia.com/gpu,
// and a LeastAllocated or MostAllocated scorer) and
// NodeResourcesBalancedAllocation (a scorer favouring nodes whose resource
// fractions stay balanced).
package noderesources

import (
	"errors"
	"slices"

	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Scoring strategies of NodeResourcesFit.
const (
	LeastAllocated = "LeastAllocated"
	MostAllocated  = "MostAllocated"
)

// ResourceWeight is a resource the scorer looks at, with its weight.
type ResourceWeight struct {
	Name   string
	Weight int64
}

// defaultResources are kube-scheduler's: cpu and memory, weight 1 each.
var defaultResources = []ResourceWeight{{"cpu", 1}, {"memory", 1}}

// Fit is the NodeResourcesFit plugin. Settings (all optional), as
// kube-scheduler's NodeResourcesFitArgs:
//
//	{"scoringStrategy": {"type": "LeastAllocated", "resources": [{"name": "cpu", "weight": 1}]},
//	 "ignoredResources": ["example.com/foo"]}
type Fit struct {
	strategy  string
	resources []ResourceWeight
	ignored   map[string]bool
}

// NewFit returns the plugin with kube-scheduler's defaults.
func NewFit() *Fit {
	return &Fit{strategy: LeastAllocated, resources: slices.Clone(defaultResources)}
}

// FitManifest is the plugin's manifest.
func FitManifest() sdk.Manifest { return sdk.Manifest{Name: "NodeResourcesFit"} }

// Configure reads the settings.
func (f *Fit) Configure(settings rawjson.Value) error {
	if settings == nil {
		return nil
	}
	if settings.Kind() != rawjson.Object {
		return errors.New("settings must be an object")
	}
	if s, ok := settings.Get("scoringStrategy"); ok {
		if t, ok := s.Get("type"); ok {
			typ, _ := t.String()
			if typ != LeastAllocated && typ != MostAllocated {
				return errors.New(`scoringStrategy.type must be "LeastAllocated" or "MostAllocated"`)
			}
			f.strategy = typ
		}
		if r, ok := s.Get("resources"); ok {
			rs, err := parseResources(r)
			if err != nil {
				return err
			}
			f.resources = rs
		}
	}
	if ig, ok := settings.Get("ignoredResources"); ok {
		f.ignored = map[string]bool{}
		err := ig.EachElem(func(_ int, v rawjson.Value) bool {
			s, ok := v.String()
			if ok {
				f.ignored[s] = true
			}
			return ok
		})
		if err != nil || ig.Kind() != rawjson.Array {
			return errors.New("ignoredResources must be a list of resource names")
		}
	}
	return nil
}

// parseResources reads [{"name": "cpu", "weight": 1}, ...].
func parseResources(v rawjson.Value) ([]ResourceWeight, error) {
	var out []ResourceWeight
	bad := errors.New(`resources must be a list of {"name": string, "weight": 1..100}`)
	if v.Kind() != rawjson.Array {
		return nil, bad
	}
	var err error
	_ = v.EachElem(func(_ int, e rawjson.Value) bool {
		var rw ResourceWeight
		if n, ok := e.Get("name"); ok {
			rw.Name, _ = n.String()
		}
		rw.Weight = 1
		if w, ok := e.Get("weight"); ok {
			rw.Weight, _ = w.Int()
		}
		if rw.Name == "" || rw.Weight < 1 || rw.Weight > 100 {
			err = bad
			return false
		}
		out = append(out, rw)
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, bad
	}
	return out, nil
}

// Reasons of the filter (kube-scheduler's).
const (
	ReasonTooManyPods = "Too many pods"
	reasonPrefix      = "Insufficient "
)

// Filter rejects nodes without room for the pod's requests, with one
// reason per missing resource.
func (f *Fit) Filter(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	req := &pod.Requests
	var scalars []string
	for name, v := range req.Scalar {
		if v > 0 && !f.ignored[name] {
			scalars = append(scalars, name)
		}
	}
	slices.Sort(scalars)
	onlyPods := req.MilliCPU == 0 && req.Memory == 0 && req.EphemeralStorage == 0 && len(scalars) == 0
	var reasons []string
	for i, n := range nodes {
		alloc, used := &n.Allocatable, &n.Requested
		reasons = reasons[:0]
		if used.Pods+1 > alloc.Pods {
			reasons = append(reasons, ReasonTooManyPods)
		}
		if !onlyPods {
			if req.MilliCPU > 0 && req.MilliCPU > alloc.MilliCPU-used.MilliCPU {
				reasons = append(reasons, reasonPrefix+"cpu")
			}
			if req.Memory > 0 && req.Memory > alloc.Memory-used.Memory {
				reasons = append(reasons, reasonPrefix+"memory")
			}
			if req.EphemeralStorage > 0 && req.EphemeralStorage > alloc.EphemeralStorage-used.EphemeralStorage {
				reasons = append(reasons, reasonPrefix+"ephemeral-storage")
			}
			for _, name := range scalars {
				if req.Scalar[name] > alloc.Scalar[name]-used.Scalar[name] {
					reasons = append(reasons, reasonPrefix+name)
				}
			}
		}
		if len(reasons) > 0 {
			res.Reject(i, reasons...)
		}
	}
	return nil
}

// Score rates each node by the strategy over the configured resources.
func (f *Fit) Score(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, scores []int64) error {
	if len(f.resources) == 2 && f.resources[0].Name == "cpu" && f.resources[1].Name == "memory" && f.strategy == LeastAllocated {
		f.scoreDefault(pod, nodes, scores)
		return nil
	}
	for i, n := range nodes {
		var sum, weights int64
		for _, rw := range f.resources {
			capacity, requested := f.amounts(rw.Name, pod, n)
			if capacity == 0 {
				continue
			}
			var s int64
			if f.strategy == MostAllocated {
				s = mostRequested(requested, capacity)
			} else {
				s = leastRequested(requested, capacity)
			}
			sum += s * rw.Weight
			weights += rw.Weight
		}
		if weights > 0 {
			scores[i] = sum / weights
		}
	}
	return nil
}

// scoreDefault is Score for kube-scheduler's default (LeastAllocated on
// cpu and memory), unrolled: it runs for every pod on every candidate.
func (f *Fit) scoreDefault(pod *sched.Pod, nodes []*sched.Node, scores []int64) {
	wc, wm := f.resources[0].Weight, f.resources[1].Weight
	for i, n := range nodes {
		var sum, weights int64
		if c := n.Allocatable.MilliCPU; c != 0 {
			sum += leastRequested(n.NonZeroMilliCPU+pod.NonZeroMilliCPU, c) * wc
			weights += wc
		}
		if c := n.Allocatable.Memory; c != 0 {
			sum += leastRequested(n.NonZeroMemory+pod.NonZeroMemory, c) * wm
			weights += wm
		}
		if weights > 0 {
			scores[i] = sum / weights
		}
	}
}

// amounts returns a node's capacity and the requests with the pod placed
// there, as the scorer counts them (defaults for requests that are missing
// on cpu and memory; extended resources the pod does not ask for are
// skipped).
func (f *Fit) amounts(name string, pod *sched.Pod, n *sched.Node) (capacity, requested int64) {
	switch name {
	case "cpu":
		return n.Allocatable.MilliCPU, n.NonZeroMilliCPU + pod.NonZeroMilliCPU
	case "memory":
		return n.Allocatable.Memory, n.NonZeroMemory + pod.NonZeroMemory
	case "ephemeral-storage":
		return n.Allocatable.EphemeralStorage, n.Requested.EphemeralStorage + pod.Requests.EphemeralStorage
	}
	p := pod.Requests.Scalar[name]
	if p == 0 {
		return 0, 0
	}
	return n.Allocatable.Scalar[name], n.Requested.Scalar[name] + p
}

func leastRequested(requested, capacity int64) int64 {
	if capacity == 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * sched.MaxScore / capacity
}

func mostRequested(requested, capacity int64) int64 {
	if capacity == 0 {
		return 0
	}
	requested = min(requested, capacity)
	return requested * sched.MaxScore / capacity
}
