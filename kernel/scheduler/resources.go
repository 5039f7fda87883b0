package scheduler

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// requests are a pod's effective resource requests as kube-scheduler
// counts them: max(sum of containers + restartable init containers, each
// init container) + overhead, with "pods" set to 1, plus the CPU and
// memory requests with kube-scheduler's defaults for containers without
// one (used for scoring).
type requests struct {
	list               []resourceEntry // sorted by name
	nonZeroCPU, nonMem int64
}

// resourceEntry is one resource amount (milli-units for cpu).
type resourceEntry struct {
	name  string
	value int64
}

// resourceValue returns q in the unit the wire uses for name.
func resourceValue(name corev1.ResourceName, q resource.Quantity) int64 {
	if name == corev1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// vec is a small resource vector keyed by name.
type vec map[corev1.ResourceName]int64

func (v vec) add(l corev1.ResourceList) {
	for n, q := range l {
		v[n] += resourceValue(n, q)
	}
}

func (v vec) addVec(o vec) {
	for n, x := range o {
		v[n] += x
	}
}

func (v vec) maxVec(o vec) {
	for n, x := range o {
		if x > v[n] {
			v[n] = x
		}
	}
}

// containerNonZero returns a container's CPU and memory requests with the
// scoring defaults.
func containerNonZero(l corev1.ResourceList) (cpu, mem int64) {
	cpu, mem = hostapi.SchedDefaultMilliCPU, hostapi.SchedDefaultMemory
	if q, ok := l[corev1.ResourceCPU]; ok {
		cpu = q.MilliValue()
	}
	if q, ok := l[corev1.ResourceMemory]; ok {
		mem = q.Value()
	}
	return cpu, mem
}

// podRequests computes a pod's requests.
func podRequests(pod *corev1.Pod) requests {
	reqs := vec{}
	var nzCPU, nzMem int64
	for i := range pod.Spec.Containers {
		reqs.add(pod.Spec.Containers[i].Resources.Requests)
		c, m := containerNonZero(pod.Spec.Containers[i].Resources.Requests)
		nzCPU += c
		nzMem += m
	}
	sidecars, initMax := vec{}, vec{}
	var sideCPU, sideMem, initCPU, initMem int64
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cr := vec{}
		cr.add(c.Resources.Requests)
		cc, cm := containerNonZero(c.Resources.Requests)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			reqs.addVec(cr)
			nzCPU += cc
			nzMem += cm
			sidecars.addVec(cr)
			sideCPU += cc
			sideMem += cm
			cr = sidecars
			cc, cm = sideCPU, sideMem
		} else {
			cr.addVec(sidecars)
			cc += sideCPU
			cm += sideMem
		}
		initMax.maxVec(cr)
		initCPU = max(initCPU, cc)
		initMem = max(initMem, cm)
	}
	reqs.maxVec(initMax)
	nzCPU = max(nzCPU, initCPU)
	nzMem = max(nzMem, initMem)
	if r := pod.Spec.Resources; r != nil {
		// Pod-level resources override the aggregate for cpu and memory.
		for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := r.Requests[n]; ok {
				reqs[n] = resourceValue(n, q)
				if n == corev1.ResourceCPU {
					nzCPU = reqs[n]
				} else {
					nzMem = reqs[n]
				}
			}
		}
	}
	reqs.add(pod.Spec.Overhead)
	if o := pod.Spec.Overhead; o != nil {
		if q, ok := o[corev1.ResourceCPU]; ok {
			nzCPU += q.MilliValue()
		}
		if q, ok := o[corev1.ResourceMemory]; ok {
			nzMem += q.Value()
		}
	}
	reqs[corev1.ResourcePods] = 1
	return requests{list: sortedEntries(reqs), nonZeroCPU: nzCPU, nonMem: nzMem}
}

// sortedEntries returns v's non-zero entries sorted by name (pods is kept
// even at zero for allocatable).
func sortedEntries(v vec) []resourceEntry {
	out := make([]resourceEntry, 0, len(v))
	for n, x := range v {
		if x == 0 && n != corev1.ResourcePods {
			continue
		}
		out = append(out, resourceEntry{string(n), x})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// allocatable returns a node's status.allocatable as entries.
func allocatable(node *corev1.Node) []resourceEntry {
	v := vec{}
	v.add(node.Status.Allocatable)
	return sortedEntries(v)
}

// appendResources appends a resources list.
func appendResources(b []byte, list []resourceEntry) []byte {
	n := min(len(list), 255)
	b = append(b, uint8(n))
	for _, e := range list[:n] {
		b = hostapi.AppendResource(b, e.name, e.value)
	}
	return b
}
