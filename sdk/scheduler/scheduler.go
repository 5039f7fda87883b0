// Package scheduler is the guest SDK for scheduler filter and score
// plugins.
//
// A plugin implements Filterer and/or Scorer and registers itself from
// its main package's init with Register. The SDK keeps, per instance, a
// table of every node in the cluster (Snapshot), updated from the changes
// each host call carries (hostapi's scheduler section), so a call only
// pays for what changed since the previous one. Plugins that keep their
// own indexes implement NodeWatcher, PodWatcher and Resetter and update
// them as the table changes.
//
// Calls of one instance never overlap; natively a Module is not safe for
// concurrent use (the host calls it from one goroutine).
package scheduler

import (
	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// MaxScore is the highest score (kube-scheduler's MaxNodeScore).
const MaxScore = hostapi.SchedMaxScore

// Resources are amounts of compute resources: CPU in milli-CPU, memory
// and ephemeral storage in bytes, pods as a count, and every other
// resource (extended resources like nvidia.com/gpu, hugepages-…) in
// Scalar by name.
type Resources struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	Pods             int64
	// Scalar holds the other resources; nil when there are none.
	Scalar map[string]int64
}

// Get returns the amount of the named resource ("cpu" in milli-CPU).
func (r *Resources) Get(name string) int64 {
	switch name {
	case "cpu":
		return r.MilliCPU
	case "memory":
		return r.Memory
	case "ephemeral-storage":
		return r.EphemeralStorage
	case "pods":
		return r.Pods
	}
	return r.Scalar[name]
}

// Add adds o to r.
func (r *Resources) Add(o *Resources) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
	r.EphemeralStorage += o.EphemeralStorage
	r.Pods += o.Pods
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = make(map[string]int64, len(o.Scalar))
		}
		r.Scalar[k] += v
	}
}

// Sub subtracts o from r (entries that reach zero are kept).
func (r *Resources) Sub(o *Resources) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
	r.EphemeralStorage -= o.EphemeralStorage
	r.Pods -= o.Pods
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = make(map[string]int64, len(o.Scalar))
		}
		r.Scalar[k] -= v
	}
}

// Taint is one of a node's spec.taints.
type Taint struct {
	Key, Value string
	// Effect is NoSchedule, PreferNoSchedule or NoExecute.
	Effect string
}

// Toleration is one of a pod's spec.tolerations.
type Toleration struct {
	Key string
	// Operator is "Exists" or "Equal" ("" means Equal).
	Operator string
	Value    string
	// Effect is "" (all effects) or a taint effect.
	Effect string
}

// Tolerates reports whether t tolerates taint (Kubernetes'
// Toleration.ToleratesTaint).
func (t *Toleration) Tolerates(taint *Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	if t.Key != "" && t.Key != taint.Key {
		return false
	}
	switch t.Operator {
	case "", "Equal":
		return t.Value == taint.Value
	case "Exists":
		return true
	}
	return false
}

// Image is one of a node's status.images.
type Image struct {
	Names     []string
	SizeBytes int64
}

// Node is one node of the table. The SDK owns it: plugins read it and
// may keep the pointer (it stays the same while the node exists; its
// fields change in place), but never write it.
type Node struct {
	// Index is the node's stable small index (the host's); Snapshot.Node
	// maps it back.
	Index int32
	Name  string
	// Labels are metadata.labels (never nil).
	Labels map[string]string
	// Taints are spec.taints.
	Taints []Taint
	// Unschedulable is spec.unschedulable (cordoned).
	Unschedulable bool
	// Allocatable is status.allocatable.
	Allocatable Resources
	// Requested is the sum of the requests of Pods (bound and assumed).
	Requested Resources
	// NonZeroRequested is Requested's CPU and memory with kube-scheduler's
	// defaults for containers without a request (used for scoring).
	NonZeroMilliCPU, NonZeroMemory int64
	// Images are status.images.
	Images []Image
	// Pods are the pods bound or assumed to the node, in no particular
	// order.
	Pods []*PodInfo
	// Raw is the Node JSON (a copy the table owns; replaced, never
	// modified, when the node changes). Only plugins that implement
	// RawNodes get it; for others it is nil (the table is then a few KiB
	// per node smaller).
	Raw rawjson.Value
	// Generation counts the node's changes (object or pods); a plugin may
	// cache per-node results by it.
	Generation uint64
}

// PodInfo summarises a pod bound to a node, or assumed there by the
// scheduler while its binding is in flight (the two look the same).
type PodInfo struct {
	// ID is the host's id of the pod, unique in the table; small and
	// dense (the id of a removed pod may be reused by a later one).
	ID        uint32
	UID       string
	Namespace string
	Name      string
	Labels    map[string]string
	// Requests are the pod's effective requests (containers, init
	// containers, overhead) as kube-scheduler computes them.
	Requests Resources
	// NonZeroMilliCPU and NonZeroMemory are the requests with defaults
	// for containers without one.
	NonZeroMilliCPU, NonZeroMemory int64
	// Affinity is the pod's spec.affinity JSON when it has podAffinity or
	// podAntiAffinity, else nil.
	Affinity rawjson.Value
	// Terminating: metadata.deletionTimestamp is set.
	Terminating bool
	// Node is the node the pod is on.
	Node *Node

	slot int // position in Node.Pods
}

// Pod is the pod being scheduled, decoded once per attempt: the Filter and
// Score calls of one attempt (same Seq) share it.
type Pod struct {
	// Seq identifies the scheduling attempt.
	Seq uint64
	// Raw is the Pod JSON.
	Raw       rawjson.Value
	UID       string
	Namespace string
	Name      string
	Labels    map[string]string
	// NodeName is spec.nodeName (normally empty).
	NodeName      string
	SchedulerName string
	// NodeSelector is spec.nodeSelector (nil when absent).
	NodeSelector map[string]string
	// Affinity is spec.affinity (nil when absent).
	Affinity rawjson.Value
	// TopologySpreadConstraints is spec.topologySpreadConstraints (nil
	// when absent).
	TopologySpreadConstraints rawjson.Value
	Tolerations               []Toleration
	// Images are the images of the containers and init containers.
	Images []string
	// Requests are the effective requests (from the host).
	Requests Resources
	// NonZeroMilliCPU and NonZeroMemory: requests with scoring defaults.
	NonZeroMilliCPU, NonZeroMemory int64
	// Priority is spec.priority (0 when absent).
	Priority int32
	// HostPorts are the host ports the containers ask for.
	HostPorts []HostPort
	// State is for the plugin: anything it computes once per attempt
	// (kube-scheduler's PreFilter/PreScore state). It starts nil for
	// each attempt.
	State any
}

// HostPort is a container port with a hostPort.
type HostPort struct {
	Protocol string
	HostIP   string
	Port     int32
}

// Filterer is a filter plugin: it decides which of the candidate nodes
// can run the pod. Filter is called once per pod per candidate chunk (the
// host may call it again with more candidates for the same attempt);
// nodes that pass need nothing, rejected ones get res.Reject(i, reason).
type Filterer interface {
	Filter(s *Snapshot, pod *Pod, nodes []*Node, res *FilterResult) error
}

// Scorer is a score plugin: it fills scores[i] for nodes[i] with a value
// in 0..MaxScore (see Normalize for raw scores). The slice starts zeroed.
type Scorer interface {
	Score(s *Snapshot, pod *Pod, nodes []*Node, scores []int64) error
}

// PartScorer is implemented by a scorer that computes several
// kube-scheduler scorers in one walk over the candidates (score parts, as
// NodeResourcesFit with NodeResourcesBalancedAllocation): one module, one
// node table and one call instead of several. ScoreParts says how many
// parts the settings enabled (fixed after Configure; 1 means Score is
// used); ScoreAll fills scores[k][i] for part k and nodes[i] (zeroed, each
// part normalised like Score's). The host weighs each part with the weight
// its profile gives it.
type PartScorer interface {
	ScoreParts() int
	ScoreAll(s *Snapshot, pod *Pod, nodes []*Node, scores [][]int64) error
}

// FilterSkipper is implemented by filters that can tell from the pod
// alone (and their indexes) that every node passes, like kube-scheduler's
// PreFilter returning Skip: when SkipFilter returns true, Filter is not
// called for this attempt and the host stops asking. It runs before the
// candidates are looked up, so it is the cheapest answer a filter can give.
type FilterSkipper interface {
	SkipFilter(s *Snapshot, pod *Pod) bool
}

// ScoreSkipper is the same for scorers (kube-scheduler's PreScore Skip):
// when SkipScore returns true the plugin adds nothing to any node's score.
type ScoreSkipper interface {
	SkipScore(s *Snapshot, pod *Pod) bool
}

// NodeWatcher is implemented by plugins that keep indexes over nodes.
// NodeChanged runs after the table changed: old is nil for an added node,
// cur is nil for a removed one (its pods were removed first, each with
// PodWatcher.PodRemoved). For an updated object, old is a shallow copy of
// the node before the change. Pod changes do not call NodeChanged.
type NodeWatcher interface {
	NodeChanged(old, cur *Node)
}

// PodWatcher is implemented by plugins that keep indexes over bound pods.
// PodAdded runs after p joined p.Node.Pods, PodRemoved after it left
// (p.Node still names the node).
type PodWatcher interface {
	PodAdded(p *PodInfo)
	PodRemoved(p *PodInfo)
}

// RawNodes is implemented by plugins that read Node.Raw (fields the
// SDK does not decode).
type RawNodes interface {
	RawNodes() bool
}

// ResourcesOnly is implemented by plugins that read nothing but resources
// (NodeResourcesFit, BalancedAllocation): Node.Allocatable, Requested and
// NonZero*, PodInfo.Requests and NonZero*, Pod.Requests, NonZero* and
// Priority. When it returns true the SDK does not decode the rest: node
// and pod labels are empty, taints, images, names, uids, tolerations and
// the pod's JSON are absent. Decoding them cost a Wasm guest about 7 µs
// per pod in the scheduler benchmark, and the first full table less.
type ResourcesOnly interface {
	ResourcesOnly() bool
}

// Resetter is implemented by plugins that keep indexes: Reset runs before
// the SDK rebuilds the table from a full snapshot (a new instance, or
// after the host lost track); NodeChanged and PodAdded then run for every
// node and pod.
type Resetter interface {
	Reset()
}

// Configurer is implemented by plugins that take settings (the JSON from
// the config file, nil when there are none); an error stops the server
// with its message.
type Configurer = sdk.Configurer

// Normalizer is implemented by scorers whose Score returns raw scores:
// after Score the SDK rescales them with the returned normalisation.
type Normalizer interface {
	Normalization() Normalization
}

// Normalization says how the SDK rescales a scorer's raw scores.
type Normalization int

// Normalizations.
const (
	// NormalizeNone: Score returns final scores in 0..MaxScore.
	NormalizeNone Normalization = iota
	// NormalizeMax: score*MaxScore/max (kube-scheduler's
	// DefaultNormalizeScore; all 0 when max is 0).
	NormalizeMax
	// NormalizeMaxReverse: MaxScore - score*MaxScore/max (all MaxScore
	// when max is 0).
	NormalizeMaxReverse
)

// DefaultNormalize rescales scores in place like kube-scheduler's
// DefaultNormalizeScore(MaxScore, reverse, scores).
func DefaultNormalize(scores []int64, reverse bool) {
	var maxv int64
	for _, s := range scores {
		maxv = max(maxv, s)
	}
	if maxv == 0 {
		if reverse {
			for i := range scores {
				scores[i] = MaxScore
			}
		}
		return
	}
	for i, s := range scores {
		s = MaxScore * s / maxv
		if reverse {
			s = MaxScore - s
		}
		scores[i] = s
	}
}
