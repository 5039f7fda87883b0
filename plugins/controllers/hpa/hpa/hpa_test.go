package hpa_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/plugins/controllers/hpa/hpa"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

func TestParseMilli(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want int64
		ok   bool
	}{
		{"250m", 250, true}, {"1", 1000, true}, {"1.5", 1500, true}, {"0", 0, true}, {"2k", 2_000_000, true},
		{"1Ki", 1_024_000, true}, {"250000000n", 250, true}, {"1234567n", 2, true}, {"1500u", 2, true}, {"", 0, false}, {"abc", 0, false}, {"-1", 0, false},
	} {
		got, ok := hpa.ParseMilli(tc.q)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseMilli(%q) = %d, %v; want %d, %v", tc.q, got, ok, tc.want, tc.ok)
		}
	}
	if hpa.FormatMilli(250) != "250m" || hpa.FormatMilli(2000) != "2" {
		t.Error("FormatMilli")
	}
}

const deployment = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, uid: d-1}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx, resources: {requests: {cpu: 100m}}}]}
`

const autoscaler = `
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: default, uid: h-1}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  BEHAVIOR
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
`

// pod is a Running, Ready pod of the deployment using usage ("" for no
// annotation).
func pod(name, usage string, ready bool) string {
	ann := "{}"
	if usage != "" {
		ann = `{"` + hpa.UsageAnnotationPrefix + `cpu-usage": "` + usage + `"}`
	}
	phase, cond := "Running", "True"
	if !ready {
		phase, cond = "Pending", "False"
	}
	return podSince(name, ann, phase, cond, "2025-12-31T23:50:00Z", "2025-12-31T23:51:00Z")
}

// podSince is a pod of the deployment started at start, its Ready
// condition cond since readySince.
func podSince(name, ann, phase, cond, start, readySince string) string {
	return `{apiVersion: v1, kind: Pod, metadata: {name: ` + name + `, namespace: default, labels: {app: web}, annotations: ` + ann + `},
		spec: {containers: [{name: c, image: nginx, resources: {requests: {cpu: 100m}}}]},
		status: {phase: ` + phase + `, startTime: "` + start + `", conditions: [{type: Ready, status: "` + cond + `", lastTransitionTime: "` + readySince + `"}]}}`
}

type fixture struct {
	t *testing.T
	c *plugintest.Cluster
	h *plugintest.ControllerHarness
}

func newFixture(t *testing.T, settings string, objs ...string) *fixture {
	t.Helper()
	c := plugintest.NewCluster(t, objs...)
	ctl := hpa.New()
	ctl.Now = c.Now
	return &fixture{t: t, c: c, h: plugintest.NewController(t, ctl, hpa.Manifest(), hpa.Spec(), settings, c)}
}

func (f *fixture) reconcile() int64 {
	f.t.Helper()
	res := f.h.Reconcile(f.t, hpa.HPAs, "default", "web")
	if res.Error != "" {
		f.t.Fatalf("reconcile: %s", res.Error)
	}
	return res.RequeueAfterMillis
}

func (f *fixture) replicas() float64 {
	return plugintest.Path(f.c.Get("deployments.apps", "default", "web"), "spec", "replicas").(float64)
}

func (f *fixture) condition(typ string) string {
	for _, c := range plugintest.Path(f.c.Get(hpa.HPAs, "default", "web"), "status", "conditions").([]any) {
		m := c.(map[string]any)
		if m["type"] == typ {
			return fmt.Sprint(m["status"], "/", m["reason"])
		}
	}
	return ""
}

func (f *fixture) setUsage(usage string, names ...string) {
	for _, n := range names {
		f.c.Update(f.t, "pods", "default", n, func(p map[string]any) {
			p["metadata"].(map[string]any)["annotations"] = map[string]any{hpa.UsageAnnotationPrefix + "cpu-usage": usage}
		})
	}
}

func objs(replicas int, behavior string, pods ...string) []string {
	return append([]string{strings.Replace(deployment, "REPLICAS", fmt.Sprint(replicas), 1),
		strings.Replace(autoscaler, "BEHAVIOR", behavior, 1)}, pods...)
}

func TestHPAScales(t *testing.T) {
	for _, tc := range []struct {
		name       string
		replicas   int
		pods       []string
		want       float64
		wantActive string
		wantLimit  string
	}{
		// 100% of the request against a 50% target: twice the pods.
		{"scale up", 2, []string{pod("a", "100m", true), pod("b", "100m", true)}, 4, "True/ValidMetricFound", "False/DesiredWithinRange"},
		{"within tolerance", 2, []string{pod("a", "54m", true), pod("b", "54m", true)}, 2, "True/ValidMetricFound", "False/DesiredWithinRange"},
		{"limited by maxReplicas", 2, []string{pod("a", "500m", true), pod("b", "500m", true)}, 5, "True/ValidMetricFound", "True/TooManyReplicas"},
		// Scale down is stabilised: the first recommendation is the only one.
		{"scale down", 4, []string{pod("a", "10m", true), pod("b", "10m", true), pod("c", "10m", true), pod("d", "10m", true)}, 1,
			"True/ValidMetricFound", "False/DesiredWithinRange"},
		// Unready pods count as using nothing when scaling up: 200m over
		// 3 pods' 300m request is 67% -> ratio 1.33 -> ceil(1.33*3) = 4.
		{"unready pods", 3, []string{pod("a", "100m", true), pod("b", "100m", true), pod("c", "100m", false)}, 4,
			"True/ValidMetricFound", "False/DesiredWithinRange"},
		{"no metrics", 2, []string{pod("a", "", true), pod("b", "", true)}, 2, "False/FailedGetResourceMetric", ""},
		{"above maxReplicas", 7, []string{pod("a", "50m", true)}, 5, "True/ValidMetricFound", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "", objs(tc.replicas, "", tc.pods...)...)
			if wait := f.reconcile(); wait != hpa.DefaultSyncPeriod.Milliseconds() {
				t.Errorf("requeue after %d ms, want the sync period", wait)
			}
			if got := f.replicas(); got != tc.want {
				t.Errorf("replicas %v, want %v", got, tc.want)
			}
			if got := f.condition("ScalingActive"); got != tc.wantActive {
				t.Errorf("ScalingActive %s, want %s", got, tc.wantActive)
			}
			if got := f.condition("ScalingLimited"); got != tc.wantLimit {
				t.Errorf("ScalingLimited %s, want %s", got, tc.wantLimit)
			}
			st := f.c.Get(hpa.HPAs, "default", "web")["status"].(map[string]any)
			if st["currentReplicas"] != float64(tc.replicas) || st["desiredReplicas"] != tc.want {
				t.Errorf("status %v", st)
			}
			if float64(tc.replicas) != tc.want && st["lastScaleTime"] == nil {
				t.Errorf("no lastScaleTime after scaling: %v", st)
			}
		})
	}
}

func TestHPAStatusMetrics(t *testing.T) {
	f := newFixture(t, "", objs(2, "", pod("a", "100m", true), pod("b", "50m", true))...)
	f.reconcile()
	m := plugintest.Path(f.c.Get(hpa.HPAs, "default", "web"), "status", "currentMetrics").([]any)[0].(map[string]any)
	cur := plugintest.Path(m, "resource", "current").(map[string]any)
	if plugintest.Path(m, "resource", "name") != "cpu" || cur["averageUtilization"] != 75.0 || cur["averageValue"] != "75m" {
		t.Errorf("currentMetrics %v", m)
	}
	// It scaled to 3; the next sync records the new current replicas, and
	// an unchanged sync after that writes nothing.
	f.reconcile()
	f.c.ResetWrites()
	f.reconcile()
	f.reconcile()
	if w := f.c.Writes(); len(w) != 0 {
		t.Errorf("unchanged syncs wrote %d times: %+v", len(w), w)
	}
}

func TestHPAScaleDownStabilization(t *testing.T) {
	f := newFixture(t, "", objs(2, "", pod("a", "100m", true), pod("b", "100m", true))...)
	f.reconcile()
	if f.replicas() != 4 {
		t.Fatalf("replicas %v, want 4", f.replicas())
	}
	f.c.Add(t, pod("c", "100m", true))
	f.c.Add(t, pod("d", "100m", true))
	f.setUsage("50m", "a", "b", "c", "d") // on target
	f.c.Advance(15 * time.Second)
	f.reconcile()
	f.setUsage("10m", "a", "b", "c", "d")
	for range 19 { // 19 x 15 s = 4m45s: inside the 5 min window
		f.c.Advance(15 * time.Second)
		f.reconcile()
		if f.replicas() != 4 {
			t.Fatalf("scaled down to %v inside the stabilisation window", f.replicas())
		}
	}
	f.c.Advance(30 * time.Second)
	f.reconcile()
	if f.replicas() != 1 {
		t.Errorf("replicas %v after the window, want 1", f.replicas())
	}
	// Scale-up is not delayed.
	f.setUsage("500m", "a")
	f.c.Remove("pods", "default", "b")
	f.c.Remove("pods", "default", "c")
	f.c.Remove("pods", "default", "d")
	f.c.Advance(15 * time.Second)
	f.reconcile()
	if f.replicas() != 5 {
		t.Errorf("replicas %v after a load spike, want 5 at once", f.replicas())
	}
}

func TestHPABehaviorWindow(t *testing.T) {
	f := newFixture(t, "", objs(4, "behavior: {scaleDown: {stabilizationWindowSeconds: 0}}",
		pod("a", "100m", true), pod("b", "100m", true), pod("c", "100m", true), pod("d", "100m", true))...)
	f.reconcile()
	f.setUsage("10m", "a", "b", "c", "d")
	f.c.Advance(15 * time.Second)
	f.reconcile()
	if f.replicas() != 1 {
		t.Errorf("replicas %v; a zero scale-down window scales down at once", f.replicas())
	}
}

func TestHPASettings(t *testing.T) {
	f := newFixture(t, `{"syncPeriod": "2s", "downscaleStabilization": "0s"}`, objs(4, "",
		pod("a", "10m", true), pod("b", "10m", true), pod("c", "10m", true), pod("d", "10m", true))...)
	if wait := f.reconcile(); wait != 2000 {
		t.Errorf("requeue after %d ms, want 2000", wait)
	}
	if f.replicas() != 1 {
		t.Errorf("replicas %v with no downscale stabilisation, want 1", f.replicas())
	}
	for _, bad := range []string{`{"syncPeriod": "soon"}`, `{"tolerance": 2}`, `{"syncPeriod": "0s"}`} {
		ctl := hpa.New()
		if err := ctl.Configure([]byte(bad)); err == nil {
			t.Errorf("settings %s accepted", bad)
		}
	}
}

// podMetrics is the metrics.k8s.io PodMetrics of a pod of the deployment
// with one container per usage. (The fake cluster names resources after
// kinds, so the fixture says kind Pod to land in pods.metrics.k8s.io, the
// resource kube names for PodMetrics.)
func podMetrics(name string, usage ...string) string {
	var cs []string
	for i, u := range usage {
		cs = append(cs, fmt.Sprintf(`{name: c%d, usage: {cpu: "%s", memory: 10Mi}}`, i, u))
	}
	return `{apiVersion: metrics.k8s.io/v1beta1, kind: Pod, metadata: {name: ` + name + `, namespace: default, labels: {app: web}},
		timestamp: "2026-01-01T00:00:00Z", window: 15s, containers: [` + strings.Join(cs, ", ") + `]}`
}

func TestHPAPodMetrics(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replicas int
		objs     []string
		want     float64
		active   string
	}{
		// metrics-server's nanocores, summed over containers: 100m of a
		// 100m request against a 50% target doubles the pods.
		{"scale up", 2, []string{pod("a", "", true), pod("b", "", true),
			podMetrics("a", "60000000n", "40000000n"), podMetrics("b", "100m")}, 4, "True/ValidMetricFound"},
		// PodMetrics win over the annotation test source.
		{"precedence", 2, []string{pod("a", "10m", true), pod("b", "10m", true),
			podMetrics("a", "100m"), podMetrics("b", "100m")}, 4, "True/ValidMetricFound"},
		// A pod without PodMetrics falls back to its annotation.
		{"fallback", 2, []string{pod("a", "100m", true), pod("b", "10m", true), podMetrics("b", "100m")}, 4, "True/ValidMetricFound"},
		{"metrics of other pods only", 2, []string{pod("a", "", true), pod("b", "", true), podMetrics("c", "100m")}, 2,
			"False/FailedGetResourceMetric"},
		// b started a minute ago and became ready 10 s ago: its 15 s
		// sample began before that, a startup burst Kubernetes ignores
		// (unready: nothing when scaling up): 100m over 200m requested is
		// 50%, on target.
		{"cpu initialization", 2, []string{pod("a", "", true),
			podSince("b", "{}", "Running", "True", "2025-12-31T23:59:00Z", "2025-12-31T23:59:50Z"),
			podMetrics("a", "100m"), podMetrics("b", "100m")}, 2, "True/ValidMetricFound"},
		// Ready 30 s ago: a whole window since, the sample counts.
		{"cpu initialization over", 2, []string{pod("a", "", true),
			podSince("b", "{}", "Running", "True", "2025-12-31T23:59:00Z", "2025-12-31T23:59:30Z"),
			podMetrics("a", "100m"), podMetrics("b", "100m")}, 4, "True/ValidMetricFound"},
		// Started long ago and not ready now, but ready before: counts.
		{"not ready after the initialization", 2, []string{pod("a", "", true),
			podSince("b", "{}", "Running", "False", "2025-12-31T23:00:00Z", "2025-12-31T23:59:30Z"),
			podMetrics("a", "100m"), podMetrics("b", "100m")}, 4, "True/ValidMetricFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "", objs(tc.replicas, "", tc.objs...)...)
			f.reconcile()
			if got := f.replicas(); got != tc.want {
				t.Errorf("replicas %v, want %v", got, tc.want)
			}
			if got := f.condition("ScalingActive"); got != tc.active {
				t.Errorf("ScalingActive %s, want %s", got, tc.active)
			}
		})
	}
}

func TestHPAMissingTarget(t *testing.T) {
	f := newFixture(t, "", strings.Replace(autoscaler, "BEHAVIOR", "", 1))
	f.reconcile()
	if got := f.condition("AbleToScale"); got != "False/FailedGetScale" {
		t.Errorf("AbleToScale %s", got)
	}
}
