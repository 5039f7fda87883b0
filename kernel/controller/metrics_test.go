package controller_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/controller"
)

type fixedMetrics []metricsv1beta1.PodMetrics

func (f fixedMetrics) PodMetrics(string) []metricsv1beta1.PodMetrics { return f }
func (fixedMetrics) NodeMetrics() []metricsv1beta1.NodeMetrics       { return nil }

// TestUnwatchableResource: a controller that declares a watch of
// pods.metrics.k8s.io (served without watch) still runs — the resource is
// not cached — and its lists of it are answered from the API, i.e. from
// the server's metrics.
func TestUnwatchableResource(t *testing.T) {
	api, cfg := apiservertest.Start(t, apiserver.Config{})
	pm := func(name, app string) metricsv1beta1.PodMetrics {
		return metricsv1beta1.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": app}},
			Containers: []metricsv1beta1.ContainerMetrics{{Name: "c", Usage: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}}}
	}
	api.SetMetricsSource(fixedMetrics{pm("web-1", "web"), pm("db-1", "db")})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	d := startDriver(t, controller.Config{Client: cfg}, controller.Registration{Name: "metrics-reader", Reconciler: rec,
		Spec: hostapi.ControllerSpec{Watches: []hostapi.Watch{
			{Resource: "configmaps", Enqueue: hostapi.EnqueueSelf},
			{Resource: "pods.metrics.k8s.io", Enqueue: hostapi.EnqueueNone},
		}}})
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "configmaps default/cm", 1)
	items, err := d.List(ctx, hostapi.ListRequest{Resource: "pods.metrics.k8s.io", Namespace: "default", LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 {
		t.Fatalf("%d pod metrics for app=web, want 1", len(items))
	}
	var got metricsv1beta1.PodMetrics
	if err := json.Unmarshal(items[0], &got); err != nil {
		t.Fatal(err)
	}
	if cpu := got.Containers[0].Usage[corev1.ResourceCPU]; got.Name != "web-1" || got.Kind != "PodMetrics" || cpu.MilliValue() != 250 {
		t.Fatalf("pod metrics %+v", got)
	}
	// Metrics are read live, never from a cache: a new scrape shows at once.
	api.SetMetricsSource(fixedMetrics{pm("web-2", "web")})
	items, err = d.List(ctx, hostapi.ListRequest{Resource: "pods.metrics.k8s.io", Namespace: "default", LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || !strings.Contains(string(items[0]), `"name":"web-2"`) {
		t.Fatalf("pod metrics after a new scrape: %s, want web-2 only", items)
	}
}
