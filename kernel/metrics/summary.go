package metrics

import (
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// Node agents (real and simulated) serve the kubelet's Summary API
// (k8s.io/kubelet/pkg/apis/stats/v1alpha1) at stats/summary; resource
// metrics read each container's (and the node's, when given) cumulative
// CPU and memory working set from it. Times are RFC 3339; the kubelet's
// metav1.Time marshals whole seconds, too coarse for a rate over a few
// seconds, so readings with whole-second times are taken as made when
// the scraper received them (the simulator gives fractions of a second,
// which decode as given).

// input is what one scrape read.
type input struct {
	now        time.Time
	summaries  map[string]*statsv1alpha1.Summary // by node, for the nodes read
	received   map[string]time.Time              // by node: when its summary arrived (if known)
	nodeLabels map[string]map[string]string      // every Ready node
	podLabels  map[string]map[string]string      // namespace/name -> labels, every pod
}

// next computes the state after a scrape: the rates between the previous
// readings and in's, for each container read both times. A pod has
// metrics only when each of its containers has a rate (as
// metrics-server); a node has its own rate when it reports node counters,
// else the sum of its pods' metrics, from its second scrape on. Readings
// of nodes not read this time are kept for the next scrape.
func (st state) next(in input) state {
	out := state{containers: map[string]sample{}, nodes: map[string]sample{}}
	if in.now.IsZero() {
		in.now = time.Now()
	}
	for k, r := range st.containers {
		if _, read := in.summaries[nodeOf(r)]; !read {
			out.containers[k] = r
		}
	}
	for name, r := range st.nodes {
		if _, read := in.summaries[name]; !read {
			if _, exists := in.nodeLabels[name]; exists {
				out.nodes[name] = r
			}
		}
	}
	names := make([]string, 0, len(in.summaries))
	for name := range in.summaries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		sum := in.summaries[name]
		var podCPU, podMem uint64
		for _, ps := range sum.Pods {
			pm, cpu, mem, ok := podMetrics(st, out, in, name, &ps)
			if !ok {
				continue
			}
			out.pods = append(out.pods, pm)
			podCPU += cpu
			podMem += mem
		}
		nm, ok := nodeMetrics(st, out, in, name, sum, podCPU, podMem)
		if ok {
			out.nodeUsage = append(out.nodeUsage, nm)
		}
	}
	sort.Slice(out.pods, func(i, j int) bool {
		a, b := &out.pods[i], &out.pods[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

// nodeOf is the node a reading came from.
func nodeOf(s sample) string { return s.node }

// podMetrics records ps's readings in out and returns its metrics when
// every container has a rate.
func podMetrics(st, out state, in input, node string, ps *statsv1alpha1.PodStats) (metricsv1beta1.PodMetrics, uint64, uint64, bool) {
	key := ps.PodRef.Namespace + "/" + ps.PodRef.Name
	labels, exists := in.podLabels[key]
	if !exists || len(ps.Containers) == 0 {
		return metricsv1beta1.PodMetrics{}, 0, 0, false
	}
	pm := metricsv1beta1.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: ps.PodRef.Name, Namespace: ps.PodRef.Namespace, Labels: labels,
			CreationTimestamp: metav1.NewTime(in.now)},
	}
	complete := true
	var cpu, mem uint64
	var window time.Duration
	var at time.Time
	for _, c := range ps.Containers {
		if c.CPU == nil || c.CPU.UsageCoreNanoSeconds == nil || c.Memory == nil || c.Memory.WorkingSetBytes == nil {
			complete = false
			continue
		}
		cur := sample{at: readAt(c.CPU.Time.Time, in.received[node]), cpu: *c.CPU.UsageCoreNanoSeconds, started: c.StartTime.Time,
			memory: *c.Memory.WorkingSetBytes, node: node}
		ck := key + "/" + c.Name
		out.containers[ck] = cur
		prev, seen := st.containers[ck]
		if !seen {
			complete = false
			continue
		}
		r, ok := rate(prev, cur)
		if !ok {
			complete = false
			continue
		}
		cpu += r
		mem += cur.memory
		window = max(window, cur.at.Sub(prev.at))
		at = later(at, cur.at)
		pm.Containers = append(pm.Containers, metricsv1beta1.ContainerMetrics{Name: c.Name, Usage: corev1.ResourceList{
			corev1.ResourceCPU: cpuQuantity(r), corev1.ResourceMemory: memoryQuantity(cur.memory),
		}})
	}
	if !complete {
		return metricsv1beta1.PodMetrics{}, 0, 0, false
	}
	pm.Timestamp = metav1.NewTime(at)
	pm.Window = metav1.Duration{Duration: window}
	return pm, cpu, mem, true
}

// nodeMetrics records the node's reading in out and returns its metrics.
func nodeMetrics(st, out state, in input, name string, sum *statsv1alpha1.Summary, podCPU, podMem uint64) (metricsv1beta1.NodeMetrics, bool) {
	nm := metricsv1beta1.NodeMetrics{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: in.nodeLabels[name],
		CreationTimestamp: metav1.NewTime(in.now)}}
	prev, seen := st.nodes[name]
	own := sum.Node.CPU != nil && sum.Node.CPU.UsageCoreNanoSeconds != nil && sum.Node.Memory != nil && sum.Node.Memory.WorkingSetBytes != nil
	cur := sample{at: in.now, node: name}
	if own {
		cur = sample{at: readAt(sum.Node.CPU.Time.Time, in.received[name]), cpu: *sum.Node.CPU.UsageCoreNanoSeconds, started: sum.Node.StartTime.Time,
			memory: *sum.Node.Memory.WorkingSetBytes, node: name}
	}
	out.nodes[name] = cur
	if !seen {
		return nm, false
	}
	cpu, mem := podCPU, podMem
	if own {
		r, ok := rate(prev, cur)
		if !ok {
			return nm, false
		}
		cpu, mem = r, cur.memory
	}
	nm.Timestamp = metav1.NewTime(cur.at)
	nm.Window = metav1.Duration{Duration: cur.at.Sub(prev.at)}
	nm.Usage = corev1.ResourceList{corev1.ResourceCPU: cpuQuantity(cpu), corev1.ResourceMemory: memoryQuantity(mem)}
	return nm, true
}

// readAt is when a reading was made: its own time if it has fractions of
// a second, else when its summary was received (if known).
func readAt(t, received time.Time) time.Time {
	if t.Nanosecond() != 0 || received.IsZero() {
		return t
	}
	return received
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
