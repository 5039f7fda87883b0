package apiserver_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
)

// fixedMetrics is a MetricsSource with fixed metrics.
type fixedMetrics struct {
	pods  []metricsv1beta1.PodMetrics
	nodes []metricsv1beta1.NodeMetrics
}

func (f *fixedMetrics) PodMetrics(ns string) []metricsv1beta1.PodMetrics {
	var out []metricsv1beta1.PodMetrics
	for _, p := range f.pods {
		if ns == "" || p.Namespace == ns {
			out = append(out, p)
		}
	}
	return out
}

func (f *fixedMetrics) NodeMetrics() []metricsv1beta1.NodeMetrics { return f.nodes }

func podMetric(ns, name, app, cpu string) metricsv1beta1.PodMetrics {
	return metricsv1beta1.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
		Timestamp:  metav1.Now(), Window: metav1.Duration{Duration: 15 * time.Second},
		Containers: []metricsv1beta1.ContainerMetrics{{Name: "c", Usage: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("10Mi")}}},
	}
}

func TestMetricsAPI(t *testing.T) {
	e := newEnv(t)
	dc, err := discovery.NewDiscoveryClientForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := dc.ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups.Groups {
		if g.Name == "metrics.k8s.io" {
			t.Fatal("metrics.k8s.io is discovered on a server without a metrics source")
		}
	}

	e.api.SetMetricsSource(&fixedMetrics{
		pods: []metricsv1beta1.PodMetrics{
			podMetric("default", "web-1", "web", "250m"), podMetric("default", "web-2", "web", "100m"),
			podMetric("default", "db-1", "db", "1"), podMetric("other", "web-3", "web", "5m"),
		},
		nodes: []metricsv1beta1.NodeMetrics{{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}},
			Usage: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")}}},
	})
	t.Run("discovery", func(t *testing.T) {
		dc, err := discovery.NewDiscoveryClientForConfig(e.cfg) // a fresh client: no cached discovery
		if err != nil {
			t.Fatal(err)
		}
		_, lists, err := dc.ServerGroupsAndResources()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range lists {
			if l.GroupVersion == "metrics.k8s.io/v1beta1" {
				for _, r := range l.APIResources {
					got = append(got, r.Name+"/"+r.Kind+"/"+map[bool]string{true: "ns", false: "cluster"}[r.Namespaced])
					if !slices.Equal(r.Verbs, metav1.Verbs{"get", "list"}) {
						t.Errorf("%s verbs %v; want get, list", r.Name, r.Verbs)
					}
				}
			}
		}
		slices.Sort(got)
		if want := []string{"nodes/NodeMetrics/cluster", "pods/PodMetrics/ns"}; !slices.Equal(got, want) {
			t.Fatalf("metrics.k8s.io/v1beta1 resources %v; want %v", got, want)
		}
	})

	mc, err := metricsclient.NewForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	podNames := func(l *metricsv1beta1.PodMetricsList) []string {
		var out []string
		for _, p := range l.Items {
			out = append(out, p.Namespace+"/"+p.Name)
		}
		return out
	}
	tests := []struct {
		name, ns string
		opts     metav1.ListOptions
		want     []string
	}{
		{"namespace", "default", metav1.ListOptions{}, []string{"default/web-1", "default/web-2", "default/db-1"}},
		{"all namespaces", "", metav1.ListOptions{}, []string{"default/web-1", "default/web-2", "default/db-1", "other/web-3"}},
		{"label selector", "default", metav1.ListOptions{LabelSelector: "app=web"}, []string{"default/web-1", "default/web-2"}},
		{"set selector", "", metav1.ListOptions{LabelSelector: "app in (web)"}, []string{"default/web-1", "default/web-2", "other/web-3"}},
		{"field selector", "default", metav1.ListOptions{FieldSelector: "metadata.name=db-1"}, []string{"default/db-1"}},
		{"nothing", "empty", metav1.ListOptions{}, nil},
	}
	for _, tt := range tests {
		t.Run("list pods "+tt.name, func(t *testing.T) {
			l, err := mc.MetricsV1beta1().PodMetricses(tt.ns).List(ctx, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := podNames(l); !slices.Equal(got, tt.want) {
				t.Fatalf("pods %v; want %v", got, tt.want)
			}
		})
	}
	t.Run("get pod", func(t *testing.T) {
		pm, err := mc.MetricsV1beta1().PodMetricses("default").Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cpu := pm.Containers[0].Usage[corev1.ResourceCPU]; cpu.MilliValue() != 250 || pm.Window.Duration != 15*time.Second {
			t.Fatalf("web-1: cpu %s window %s; want 250m over 15s", cpu.String(), pm.Window.Duration)
		}
		_, err = mc.MetricsV1beta1().PodMetricses("other").Get(ctx, "web-1", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("get of a pod without metrics: %v; want NotFound", err)
		}
	})
	t.Run("nodes", func(t *testing.T) {
		l, err := mc.MetricsV1beta1().NodeMetricses().List(ctx, metav1.ListOptions{LabelSelector: "zone=a"})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != 1 || l.Items[0].Name != "n1" {
			t.Fatalf("node metrics %+v; want n1", l.Items)
		}
		nm, err := mc.MetricsV1beta1().NodeMetricses().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cpu := nm.Usage[corev1.ResourceCPU]; cpu.Value() != 2 {
			t.Fatalf("n1 cpu %s; want 2", cpu.String())
		}
		if _, err := mc.MetricsV1beta1().NodeMetricses().Get(ctx, "n2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("get of a node without metrics: %v; want NotFound", err)
		}
	})
	t.Run("no watch", func(t *testing.T) {
		_, err := mc.MetricsV1beta1().PodMetricses("default").Watch(ctx, metav1.ListOptions{})
		if !apierrors.IsMethodNotSupported(err) {
			t.Fatalf("watch: %v; want MethodNotAllowed", err)
		}
		resp, err := http.Post(e.srv.URL+"/apis/metrics.k8s.io/v1beta1/nodes", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("POST: %d; want 405", resp.StatusCode)
		}
	})
}
