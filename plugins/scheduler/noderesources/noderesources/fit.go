// Package noderesources holds kube-scheduler's resource plugins:
// NodeResourcesFit (a filter on requests vs allocatable for cpu, memory,
// ephemeral-storage, pods and extended resources such as nvidia.com/gpu,
// and a LeastAllocated or MostAllocated scorer) and
// NodeResourcesBalancedAllocation (a scorer favouring nodes whose resource
// fractions stay balanced).
package noderesources

import (
	"errors"
	"math"
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
//
// With "balancedAllocation": <NodeResourcesBalancedAllocation settings, or
// {}>, the module also scores as NodeResourcesBalancedAllocation, as a
// second score part (sched.PartScorer): one table and one walk over the
// candidates for both scorers.
type Fit struct {
	strategy  string
	resources []ResourceWeight
	ignored   map[string]bool
	balanced  *Balanced

	// free is a lower bound of every node's free cpu, memory,
	// ephemeral storage and pod slots, kept by the table hooks: a pod
	// within it fits everywhere, and SkipFilter spares the walk over the
	// candidates (most pods of a cluster with room). Freed room only
	// marks it loose; it is recomputed, at most every rescanEvery
	// filter attempts, when a pod exceeds it.
	free              freeBound
	loose             bool
	attempts, scanned int
}

// freeBound is the smallest free amount of each resource over all nodes.
type freeBound struct{ cpu, mem, eph, pods int64 }

// rescanEvery bounds how often a loose bound is recomputed (a walk over
// every node).
const rescanEvery = 64

func unbounded() freeBound {
	return freeBound{math.MaxInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64}
}

// lower takes node n's free amounts into the bound.
func (b *freeBound) lower(n *sched.Node) {
	b.cpu = min(b.cpu, n.Allocatable.MilliCPU-n.Requested.MilliCPU)
	b.mem = min(b.mem, n.Allocatable.Memory-n.Requested.Memory)
	b.eph = min(b.eph, n.Allocatable.EphemeralStorage-n.Requested.EphemeralStorage)
	b.pods = min(b.pods, n.Allocatable.Pods-n.Requested.Pods)
}

// fits reports whether a pod requesting req (no extended resources) fits
// within the bound.
func (b *freeBound) fits(req *sched.Resources) bool {
	return b.pods >= 1 && req.MilliCPU <= b.cpu && req.Memory <= b.mem && req.EphemeralStorage <= b.eph
}

// ResourcesOnly: Fit (and BalancedAllocation in it) reads only resources.
func (f *Fit) ResourcesOnly() bool { return true }

// Reset starts the bound over (a full table follows).
func (f *Fit) Reset() { f.free, f.loose = unbounded(), false }

// NodeChanged keeps the bound: a new or changed node lowers it; a change
// that may free room (or a removal) loosens it.
func (f *Fit) NodeChanged(old, cur *sched.Node) {
	if cur != nil {
		f.free.lower(cur)
	}
	if old != nil {
		f.loose = true
	}
}

// PodAdded lowers the bound by the pod's node.
func (f *Fit) PodAdded(p *sched.PodInfo) { f.free.lower(p.Node) }

// PodRemoved loosens the bound.
func (f *Fit) PodRemoved(*sched.PodInfo) { f.loose = true }

// SkipFilter: a pod without extended resources that fits within the free
// bound passes on every node.
func (f *Fit) SkipFilter(s *sched.Snapshot, pod *sched.Pod) bool {
	req := &pod.Requests
	for name, v := range req.Scalar {
		if v > 0 && !f.ignored[name] {
			return false
		}
	}
	if f.free.fits(req) {
		return true
	}
	f.attempts++
	if !f.loose || f.attempts-f.scanned < rescanEvery {
		return false
	}
	f.scanned, f.loose = f.attempts, false
	f.free = unbounded()
	for _, n := range s.Nodes() {
		if n != nil {
			f.free.lower(n)
		}
	}
	return f.free.fits(req)
}

// NewFit returns the plugin with kube-scheduler's defaults.
func NewFit() *Fit {
	return &Fit{strategy: LeastAllocated, resources: slices.Clone(defaultResources), free: unbounded()}
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
	if b, ok := settings.Get("balancedAllocation"); ok && !b.IsNull() {
		f.balanced = NewBalanced()
		if err := f.balanced.Configure(b); err != nil {
			return errors.New("balancedAllocation: " + err.Error())
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
	if f.isDefault() {
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

// ScoreParts is 2 when the settings enabled balancedAllocation: the
// NodeResourcesFit score, then the NodeResourcesBalancedAllocation one.
func (f *Fit) ScoreParts() int {
	if f.balanced != nil {
		return 2
	}
	return 1
}

// ScoreAll fills the score parts, in one loop for the defaults of both.
func (f *Fit) ScoreAll(s *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, scores [][]int64) error {
	b := f.balanced
	if b == nil || len(scores) < 2 {
		return f.Score(s, pod, nodes, scores[0])
	}
	if f.isDefault() && b.isDefault() && !b.SkipScore(s, pod) {
		scoreDefaultBoth(f.resources[0].Weight, f.resources[1].Weight, pod, nodes, scores[0], scores[1])
		return nil
	}
	if err := f.Score(s, pod, nodes, scores[0]); err != nil {
		return err
	}
	return b.Score(s, pod, nodes, scores[1])
}

// isDefault: LeastAllocated over cpu and memory.
func (f *Fit) isDefault() bool {
	return len(f.resources) == 2 && f.resources[0].Name == "cpu" && f.resources[1].Name == "memory" && f.strategy == LeastAllocated
}

// scoreDefaultBoth is scoreDefault and scoreCPUMemory in one walk.
func scoreDefaultBoth(wc, wm int64, pod *sched.Pod, nodes []*sched.Node, fit, bal []int64) {
	pc, pm := float64(pod.Requests.MilliCPU), float64(pod.Requests.Memory)
	_ = bal[len(nodes)-1]
	_ = fit[len(nodes)-1]
	for i, n := range nodes {
		var sum, weights int64
		ac, am := n.Allocatable.MilliCPU, n.Allocatable.Memory
		if ac != 0 {
			sum += leastRequested(n.NonZeroMilliCPU+pod.NonZeroMilliCPU, ac) * wc
			weights += wc
		}
		if am != 0 {
			sum += leastRequested(n.NonZeroMemory+pod.NonZeroMemory, am) * wm
			weights += wm
		}
		if weights > 0 {
			fit[i] = sum / weights
		}
		if ac != 0 && am != 0 {
			// Comparisons, not min: Go's float min is a call in Wasm.
			fc := (float64(n.Requested.MilliCPU) + pc) / float64(ac)
			if fc > 1 {
				fc = 1
			}
			fm := (float64(n.Requested.Memory) + pm) / float64(am)
			if fm > 1 {
				fm = 1
			}
			bal[i] = int64((1 - math.Abs((fc-fm)/2)) * sched.MaxScore)
		} else {
			bal[i] = sched.MaxScore
		}
	}
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
