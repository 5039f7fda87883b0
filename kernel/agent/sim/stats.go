package sim

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tugboat-dev/tugboat/kernel/metrics"
)

// Synthetic resource use: a simulated pod runs nothing, so it uses what
// its annotations say. A pod with AnnotationCPUUsage reports that CPU
// rate (split evenly over its containers) and AnnotationMemoryUsage (0 if
// absent) in its node's stats summary, served like a real agent's at
// stats/summary; a pod without AnnotationCPUUsage reports nothing, like a
// runtime that cannot measure it. The cumulative CPU counter grows at the
// annotated rate from the previous request on, so a changed annotation
// shows in the next two scrapes' rate at once.
const (
	AnnotationCPUUsage    = "metrics.tugboat.dev/cpu-usage"
	AnnotationMemoryUsage = "metrics.tugboat.dev/memory-usage"
)

// cpuCounter is a pod's synthetic cumulative CPU use.
type cpuCounter struct {
	at    time.Time
	total float64 // core-nanoseconds
}

// Handler returns the kubelet API handler of the simulated node name
// (GET /stats/summary), or nil if the cluster does not manage it. A
// stopped node answers 503.
func (c *Cluster) Handler(name string) http.Handler {
	n := c.nodes[name]
	if n == nil {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats/summary" && r.URL.Path != "/stats/summary/" {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if n.stopped.Load() || n.gone.Load() { // as unreachable as a stopped kubelet
			http.Error(w, "node "+n.name+" is stopped", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c.summary(n, time.Now()))
	})
}

// summary is node n's stats summary at now.
func (c *Cluster) summary(n *node, now time.Time) *metrics.Summary {
	out := &metrics.Summary{Node: metrics.NodeStats{NodeName: n.name}, Pods: []metrics.PodStats{}}
	objs, _ := c.pods.GetIndexer().ByIndex(nodeIndex, n.name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.usage == nil {
		c.usage = make(map[string]*cpuCounter)
	}
	for _, obj := range objs {
		pod := obj.(*corev1.Pod)
		cpuAnn, ok := pod.Annotations[AnnotationCPUUsage]
		if !ok || pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil || len(pod.Spec.Containers) == 0 {
			continue
		}
		cpu, err := resource.ParseQuantity(cpuAnn)
		if err != nil {
			continue
		}
		var mem int64
		if q, err := resource.ParseQuantity(pod.Annotations[AnnotationMemoryUsage]); err == nil {
			mem = q.Value()
		}
		start := c.started[string(pod.UID)]
		if start.IsZero() {
			start = now
			if pod.Status.StartTime != nil {
				start = pod.Status.StartTime.Time
			}
		}
		ctr := c.usage[string(pod.UID)]
		if ctr == nil {
			ctr = &cpuCounter{at: start}
			c.usage[string(pod.UID)] = ctr
		}
		if dt := now.Sub(ctr.at); dt > 0 {
			ctr.total += float64(cpu.ScaledValue(resource.Nano)) * dt.Seconds()
			ctr.at = now
		}
		k := len(pod.Spec.Containers)
		ps := metrics.PodStats{PodRef: metrics.PodReference{Name: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID)},
			StartTime: start}
		for _, cs := range pod.Spec.Containers {
			total, ws := uint64(ctr.total/float64(k)), uint64(mem/int64(k))
			ps.Containers = append(ps.Containers, metrics.ContainerStats{
				Name: cs.Name, StartTime: start,
				CPU:    &metrics.CPUStats{Time: now, UsageCoreNanoSeconds: &total},
				Memory: &metrics.MemoryStats{Time: now, WorkingSetBytes: &ws},
			})
		}
		out.Pods = append(out.Pods, ps)
	}
	sort.Slice(out.Pods, func(i, j int) bool {
		a, b := out.Pods[i].PodRef, out.Pods[j].PodRef
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	return out
}
