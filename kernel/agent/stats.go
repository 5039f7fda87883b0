package agent

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// Resource metrics: the agent serves the subset of the kubelet's Summary API
// (k8s.io/kubelet/pkg/apis/stats/v1alpha1) that metrics-server and HPA
// pipelines read — GET /stats/summary, through
// the API server as /api/v1/nodes/<node>/proxy/stats/summary — with each
// pod's and container's cpu (usageCoreNanoSeconds, usageNanoCores) and
// memory (workingSetBytes). Usage is measured on demand: usageNanoCores is
// the rate since the previous request (since the container started on
// the first), so nothing runs while nobody asks.

// cpuSamples remembers each container's last CPU reading.
type cpuSamples struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	at  time.Time
	cpu time.Duration
}

var errStatsUnsupported = apierrors.NewGenericServerResponse(http.StatusNotImplemented, "get", podsResource, "",
	"this node's runtime does not report resource use", 0, false)

func (a *Agent) serveStats(w http.ResponseWriter, _ *http.Request) {
	sp, ok := a.rt.(dataplane.StatsProvider)
	if !ok {
		writeStatusError(w, errStatsUnsupported)
		return
	}
	list, err := a.rt.List()
	if err != nil {
		writeStatusError(w, err)
		return
	}
	now := time.Now()
	byPod := map[string]*statsv1alpha1.PodStats{}
	seen := map[string]bool{}
	for _, st := range list {
		if st.Status != dataplane.Running || st.Labels[labelInit] == "true" {
			continue
		}
		uid := st.Labels[labelPodUID]
		ps := byPod[uid]
		if ps == nil {
			ps = &statsv1alpha1.PodStats{PodRef: statsv1alpha1.PodReference{Name: st.Labels[labelPodName], Namespace: st.Labels[labelPodNamespace], UID: uid},
				StartTime: metav1.NewTime(st.StartedAt)}
			byPod[uid] = ps
		}
		u, err := sp.Stats(st.ID)
		if err != nil {
			continue
		}
		seen[st.ID] = true
		cores := a.rate(st, u.CPU, now)
		total := uint64(u.CPU.Nanoseconds())
		mem := u.MemoryBytes
		ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
			Name: st.Labels[labelContainer], StartTime: metav1.NewTime(st.StartedAt),
			CPU:    &statsv1alpha1.CPUStats{Time: metav1.NewTime(now), UsageNanoCores: &cores, UsageCoreNanoSeconds: &total},
			Memory: &statsv1alpha1.MemoryStats{Time: metav1.NewTime(now), WorkingSetBytes: &mem, RSSBytes: &mem},
		})
	}
	a.cpu.mu.Lock()
	for id := range a.cpu.last {
		if !seen[id] {
			delete(a.cpu.last, id)
		}
	}
	a.cpu.mu.Unlock()
	out := statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: a.cfg.NodeName, StartTime: metav1.NewTime(a.started)}, Pods: []statsv1alpha1.PodStats{}}
	for _, ps := range byPod {
		var cores, total, mem uint64
		for _, c := range ps.Containers {
			cores += *c.CPU.UsageNanoCores
			total += *c.CPU.UsageCoreNanoSeconds
			mem += *c.Memory.WorkingSetBytes
		}
		ps.CPU = &statsv1alpha1.CPUStats{Time: metav1.NewTime(now), UsageNanoCores: &cores, UsageCoreNanoSeconds: &total}
		ps.Memory = &statsv1alpha1.MemoryStats{Time: metav1.NewTime(now), WorkingSetBytes: &mem, RSSBytes: &mem}
		out.Pods = append(out.Pods, *ps)
	}
	sort.Slice(out.Pods, func(i, j int) bool {
		return out.Pods[i].PodRef.Namespace+"/"+out.Pods[i].PodRef.Name < out.Pods[j].PodRef.Namespace+"/"+out.Pods[j].PodRef.Name
	})
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// rate returns a container's CPU use in nanocores since its previous
// sample (since it started, on the first).
func (a *Agent) rate(st dataplane.State, cpu time.Duration, now time.Time) uint64 {
	a.cpu.mu.Lock()
	defer a.cpu.mu.Unlock()
	prev, ok := a.cpu.last[st.ID]
	a.cpu.last[st.ID] = cpuSample{at: now, cpu: cpu}
	if !ok {
		prev = cpuSample{at: st.StartedAt}
	}
	dt := now.Sub(prev.at)
	if dt <= 0 || cpu < prev.cpu {
		return 0
	}
	return uint64(float64(cpu-prev.cpu) / dt.Seconds())
}
