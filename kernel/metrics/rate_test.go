package metrics

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

var t0 = time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC)

func TestRate(t *testing.T) {
	started := t0.Add(-time.Hour)
	tests := []struct {
		name      string
		prev, cur sample
		want      uint64
		ok        bool
	}{
		{"half a core", sample{at: t0, cpu: 1e9, started: started}, sample{at: t0.Add(10 * time.Second), cpu: 6e9, started: started}, 5e8, true},
		{"idle", sample{at: t0, cpu: 1e9, started: started}, sample{at: t0.Add(15 * time.Second), cpu: 1e9, started: started}, 0, true},
		{"two cores", sample{at: t0, cpu: 0, started: started}, sample{at: t0.Add(time.Second), cpu: 2e9, started: started}, 2e9, true},
		{"same time", sample{at: t0, cpu: 1e9, started: started}, sample{at: t0, cpu: 2e9, started: started}, 0, false},
		{"clock went back", sample{at: t0, cpu: 1e9, started: started}, sample{at: t0.Add(-time.Second), cpu: 2e9, started: started}, 0, false},
		{"counter went back", sample{at: t0, cpu: 5e9, started: started}, sample{at: t0.Add(time.Second), cpu: 1e9, started: started}, 0, false},
		{"restarted", sample{at: t0, cpu: 1e9, started: started}, sample{at: t0.Add(time.Second), cpu: 2e9, started: t0}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := rate(tt.prev, tt.cur)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("rate = %d, %v; want %d, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// summaryAt is node's summary at time at with one pod "default/<pod>" of
// one container per cpu counter (core-nanoseconds).
func summaryAt(node, pod string, at time.Time, mem uint64, cpus ...uint64) *statsv1alpha1.Summary {
	ps := statsv1alpha1.PodStats{PodRef: statsv1alpha1.PodReference{Name: pod, Namespace: "default"}}
	for i, c := range cpus {
		ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
			Name: string(rune('a' + i)), StartTime: metav1.NewTime(t0.Add(-time.Hour)),
			CPU:    &statsv1alpha1.CPUStats{Time: metav1.NewTime(at), UsageCoreNanoSeconds: &c},
			Memory: &statsv1alpha1.MemoryStats{Time: metav1.NewTime(at), WorkingSetBytes: &mem},
		})
	}
	return &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: node}, Pods: []statsv1alpha1.PodStats{ps}}
}

func scrapeInput(at time.Time, sums ...*statsv1alpha1.Summary) input {
	in := input{now: at, summaries: map[string]*statsv1alpha1.Summary{}, nodeLabels: map[string]map[string]string{},
		podLabels: map[string]map[string]string{}}
	for _, s := range sums {
		in.summaries[s.Node.NodeName] = s
		in.nodeLabels[s.Node.NodeName] = map[string]string{"kubernetes.io/hostname": s.Node.NodeName}
		for _, p := range s.Pods {
			in.podLabels[p.PodRef.Namespace+"/"+p.PodRef.Name] = map[string]string{"app": p.PodRef.Name}
		}
	}
	return in
}

func TestStateNext(t *testing.T) {
	st := state{containers: map[string]sample{}, nodes: map[string]sample{}}
	st = st.next(scrapeInput(t0, summaryAt("n1", "web", t0, 1<<20, 0, 1e9)))
	if len(st.pods) != 0 || len(st.nodeUsage) != 0 {
		t.Fatalf("first scrape: %d pod and %d node metrics; want none (no rate from one reading)", len(st.pods), len(st.nodeUsage))
	}
	t1 := t0.Add(15 * time.Second)
	// container a used 3 s of CPU in 15 s (200m), b 1.5 s (100m).
	st = st.next(scrapeInput(t1, summaryAt("n1", "web", t1, 1<<20, 3e9, 2.5e9)))
	if len(st.pods) != 1 {
		t.Fatalf("second scrape: %d pod metrics; want 1", len(st.pods))
	}
	pm := st.pods[0]
	if pm.Name != "web" || pm.Labels["app"] != "web" || pm.Window.Duration != 15*time.Second || !pm.Timestamp.Time.Equal(t1) {
		t.Fatalf("pod metrics %+v", pm.ObjectMeta)
	}
	wantCPU := map[string]int64{"a": 200, "b": 100}
	for _, c := range pm.Containers {
		cpu, mem := c.Usage[corev1.ResourceCPU], c.Usage[corev1.ResourceMemory]
		if cpu.MilliValue() != wantCPU[c.Name] || mem.Value() != 1<<20 {
			t.Errorf("container %s: cpu %s memory %s; want %dm and 1Mi", c.Name, cpu.String(), mem.String(), wantCPU[c.Name])
		}
	}
	if len(st.nodeUsage) != 1 {
		t.Fatalf("second scrape: %d node metrics; want 1", len(st.nodeUsage))
	}
	nodeCPU := st.nodeUsage[0].Usage[corev1.ResourceCPU]
	if nodeCPU.MilliValue() != 300 {
		t.Errorf("node cpu %s; want the pods' 300m", nodeCPU.String())
	}

	// The node is not read in the third scrape: its pods have no metrics,
	// its readings are kept, and the fourth scrape has a 30 s window.
	t2, t3 := t1.Add(15*time.Second), t1.Add(30*time.Second)
	in := scrapeInput(t2)
	in.nodeLabels["n1"] = nil
	st = st.next(in)
	if len(st.pods) != 0 {
		t.Fatalf("scrape without the node: %d pod metrics; want 0", len(st.pods))
	}
	st = st.next(scrapeInput(t3, summaryAt("n1", "web", t3, 2<<20, 9e9, 2.5e9)))
	if len(st.pods) != 1 || st.pods[0].Window.Duration != 30*time.Second {
		t.Fatalf("scrape after a missed one: %+v; want one pod metric over 30s", st.pods)
	}
	if cpu := st.pods[0].Containers[0].Usage[corev1.ResourceCPU]; cpu.MilliValue() != 200 {
		t.Errorf("container a after a missed scrape: %s; want 200m", cpu.String())
	}

	// A deleted pod (no longer listed) loses its metrics.
	t4 := t3.Add(15 * time.Second)
	in = scrapeInput(t4, summaryAt("n1", "web", t4, 1<<20, 10e9, 3e9))
	delete(in.podLabels, "default/web")
	if st = st.next(in); len(st.pods) != 0 {
		t.Fatalf("deleted pod still has metrics: %+v", st.pods)
	}
}

func TestStateNextNodeCounters(t *testing.T) {
	withNode := func(at time.Time, cpu uint64) *statsv1alpha1.Summary {
		s := summaryAt("n1", "web", at, 1<<20, 0)
		mem := uint64(1 << 30)
		s.Node.CPU = &statsv1alpha1.CPUStats{Time: metav1.NewTime(at), UsageCoreNanoSeconds: &cpu}
		s.Node.Memory = &statsv1alpha1.MemoryStats{Time: metav1.NewTime(at), WorkingSetBytes: &mem}
		return s
	}
	st := state{containers: map[string]sample{}, nodes: map[string]sample{}}
	st = st.next(scrapeInput(t0, withNode(t0, 10e9)))
	t1 := t0.Add(10 * time.Second)
	st = st.next(scrapeInput(t1, withNode(t1, 30e9)))
	if len(st.nodeUsage) != 1 {
		t.Fatalf("%d node metrics; want 1", len(st.nodeUsage))
	}
	cpu, mem := st.nodeUsage[0].Usage[corev1.ResourceCPU], st.nodeUsage[0].Usage[corev1.ResourceMemory]
	if cpu.MilliValue() != 2000 || mem.Value() != 1<<30 {
		t.Fatalf("node usage cpu %s memory %s; want the node's own 2 cores and 1Gi", cpu.String(), mem.String())
	}
}
