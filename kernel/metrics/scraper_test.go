package metrics_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/tugboat-dev/tugboat/kernel/agent/sim"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/metrics"
)

// TestScraperSim runs the whole pipeline in process: a real API server
// over Badger reaches simulated nodes' stats summaries through its node
// proxy, the scraper turns them into metrics, and the metrics clientset
// (what kubectl top uses) reads them from metrics.k8s.io.
func TestScraperSim(t *testing.T) {
	api, cfg := apiservertest.Start(t, apiserver.Config{})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cluster, err := sim.Start(ctx, cs, sim.Config{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Stop)
	api.SetNodeConnector(func(_ context.Context, n *corev1.Node) (http.Handler, error) {
		if h := cluster.Handler(n.Name); h != nil {
			return h, nil
		}
		return nil, fmt.Errorf("node %s is not simulated", n.Name)
	})
	scraper, err := metrics.New(metrics.Config{Client: cs})
	if err != nil {
		t.Fatal(err)
	}
	api.SetMetricsSource(scraper)
	mc, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	newPod := func(name, node, app string, ann map[string]string) {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": app}, Annotations: ann},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{
				{Name: "a", Image: "busybox"}, {Name: "b", Image: "busybox"},
			}},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	newPod("busy", "sim-0", "web", map[string]string{sim.AnnotationCPUUsage: "250m", sim.AnnotationMemoryUsage: "64Mi"})
	newPod("idle", "sim-1", "web", map[string]string{sim.AnnotationCPUUsage: "0"})
	newPod("unmeasured", "sim-1", "db", nil)
	for _, name := range []string{"busy", "idle", "unmeasured"} {
		waitFor(t, "pod "+name+" running", func() bool {
			p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			return err == nil && p.Status.Phase == corev1.PodRunning
		})
	}

	scrape := func() {
		t.Helper()
		if err := scraper.Scrape(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cpuOf := func(name string) (milli int64, containers int) {
		t.Helper()
		pm, err := mc.MetricsV1beta1().PodMetricses("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod metrics of %s: %v", name, err)
		}
		var total int64
		for _, c := range pm.Containers {
			q := c.Usage[corev1.ResourceCPU]
			total += q.ScaledValue(-9)
		}
		return roundMilli(total), len(pm.Containers)
	}

	scrape()
	if l, err := mc.MetricsV1beta1().PodMetricses("").List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Fatalf("after one scrape: %v, %v; want no metrics yet (a rate needs two readings)", l, err)
	}
	time.Sleep(50 * time.Millisecond) // readings must be apart; the rate does not depend on how far
	scrape()
	if got, n := cpuOf("busy"); got != 250 || n != 2 {
		t.Fatalf("busy: %dm over %d containers; want 250m over 2", got, n)
	}
	if got, _ := cpuOf("idle"); got != 0 {
		t.Fatalf("idle: %dm; want 0", got)
	}
	l, err := mc.MetricsV1beta1().PodMetricses("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(l.Items) != 2 {
		t.Fatalf("app=web pod metrics %v, %v; want busy and idle (unmeasured reports nothing)", l, err)
	}
	nm, err := mc.MetricsV1beta1().NodeMetricses().Get(ctx, "sim-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cpu, mem := nm.Usage[corev1.ResourceCPU], nm.Usage[corev1.ResourceMemory]; roundMilli(cpu.ScaledValue(-9)) != 250 || mem.Value() != 64<<20 {
		t.Fatalf("sim-0 usage cpu %s memory %s; want its pod's 250m and 64Mi", cpu.String(), mem.String())
	}

	// A new annotation shows from the next scrape on.
	patch := []byte(`{"metadata":{"annotations":{"` + sim.AnnotationCPUUsage + `":"1500m"}}}`)
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, "busy", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the simulator sees the new annotation", func() bool {
		time.Sleep(20 * time.Millisecond)
		scrape()
		got, _ := cpuOf("busy")
		return got == 1500
	})
}

// roundMilli rounds nanocores to millicores (rates are floating-point
// divisions).
func roundMilli(nano int64) int64 { return (nano + 5e5) / 1e6 }

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
