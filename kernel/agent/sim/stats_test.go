package sim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/tugboat-dev/tugboat/kernel/agent/sim"
)

// TestStatsSummary: a simulated node serves stats/summary with the
// annotated usage of its running pods (split over their containers, the
// CPU counter growing at the annotated rate) and nothing for pods without
// the annotation.
func TestStatsSummary(t *testing.T) {
	cs := newClient(t)
	c := start(t, cs, sim.Config{Nodes: 2})
	ctx := context.Background()
	if c.Handler("no-such-node") != nil {
		t.Fatal("a handler for a node the cluster does not manage")
	}
	for _, p := range []*corev1.Pod{
		pod("busy", "sim-0", corev1.RestartPolicyAlways, map[string]string{sim.AnnotationCPUUsage: "500m", sim.AnnotationMemoryUsage: "10Mi"}),
		pod("quiet", "sim-0", corev1.RestartPolicyAlways, nil),
		pod("elsewhere", "sim-1", corev1.RestartPolicyAlways, map[string]string{sim.AnnotationCPUUsage: "1"}),
	} {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPhase(t, cs, p.Name, corev1.PodRunning)
	}
	get := func(path string) (*httptest.ResponseRecorder, *statsv1alpha1.Summary) {
		t.Helper()
		rec := httptest.NewRecorder()
		c.Handler("sim-0").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var sum statsv1alpha1.Summary
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &sum); err != nil {
				t.Fatal(err)
			}
		}
		return rec, &sum
	}
	if rec, _ := get("/containerLogs/default/busy/c"); rec.Code != http.StatusNotFound {
		t.Fatalf("other kubelet paths: %d, want 404", rec.Code)
	}
	// The informer may lag the annotation; the summary lists busy once
	// the simulator has seen it.
	var first *statsv1alpha1.Summary
	waitFor(t, "busy in sim-0's summary", func() (bool, error) {
		_, first = get("/stats/summary")
		return len(first.Pods) == 1, nil
	})
	time.Sleep(20 * time.Millisecond) // the counters must grow between the readings
	_, second := get("/stats/summary")
	if second.Node.NodeName != "sim-0" || len(second.Pods) != 1 || second.Pods[0].PodRef.Name != "busy" || len(second.Pods[0].Containers) != 2 {
		t.Fatalf("summary %+v, want busy's two containers only", second)
	}
	if err := c.SetStopped("sim-0", true); err != nil {
		t.Fatal(err)
	}
	if rec, _ := get("/stats/summary"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("a stopped node's summary: %d, want 503", rec.Code)
	}
	for i, ctr := range second.Pods[0].Containers {
		prev := first.Pods[0].Containers[i]
		dt := ctr.CPU.Time.Sub(prev.CPU.Time.Time).Seconds()
		rate := float64(*ctr.CPU.UsageCoreNanoSeconds-*prev.CPU.UsageCoreNanoSeconds) / dt
		if rate < 249e6 || rate > 251e6 || *ctr.Memory.WorkingSetBytes != 5<<20 {
			t.Errorf("container %s: %.0f nanocores, %d bytes; want half of 500m and of 10Mi", ctr.Name, rate, *ctr.Memory.WorkingSetBytes)
		}
	}
}
