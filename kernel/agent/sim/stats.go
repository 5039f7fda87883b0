package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
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
		now := time.Now()
		body, err := json.Marshal(c.summary(n, now))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(preciseReadings(body, now))
	})
}

// preciseReadings gives the readings' times (every "time" of body is now)
// their fractions of a second: metav1.Time marshals whole seconds, and a
// scraper computes exact rates from readings milliseconds apart only with
// the fractions (it takes whole-second times as made when it received
// them, which is close enough over a real scrape interval only).
func preciseReadings(body []byte, now time.Time) []byte {
	whole, err := metav1.NewTime(now).MarshalJSON()
	if err != nil {
		return body
	}
	precise := strconv.AppendQuote(nil, now.UTC().Format(time.RFC3339Nano))
	return bytes.ReplaceAll(body, append([]byte(`"time":`), whole...), append([]byte(`"time":`), precise...))
}

// summary is node n's stats summary at now.
func (c *Cluster) summary(n *node, now time.Time) *statsv1alpha1.Summary {
	out := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: n.name}, Pods: []statsv1alpha1.PodStats{}}
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
		ps := statsv1alpha1.PodStats{PodRef: statsv1alpha1.PodReference{Name: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID)},
			StartTime: metav1.NewTime(start)}
		for _, cs := range pod.Spec.Containers {
			total, ws := uint64(ctr.total/float64(k)), uint64(mem/int64(k))
			ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
				Name: cs.Name, StartTime: metav1.NewTime(start),
				CPU:    &statsv1alpha1.CPUStats{Time: metav1.NewTime(now), UsageCoreNanoSeconds: &total},
				Memory: &statsv1alpha1.MemoryStats{Time: metav1.NewTime(now), WorkingSetBytes: &ws},
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
