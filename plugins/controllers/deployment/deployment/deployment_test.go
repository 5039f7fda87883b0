package deployment_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/plugins/controllers/deployment/deployment"
	"github.com/tugboat-dev/tugboat/plugins/controllers/replicaset/replicaset"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const web = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, uid: d-1}
spec:
  replicas: 4
  revisionHistoryLimit: 2
  selector: {matchLabels: {app: web}}
  strategy: STRATEGY
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}
`

func rolling(surge, unavail string) string {
	return strings.ReplaceAll(web, "STRATEGY", "{type: RollingUpdate, rollingUpdate: {maxSurge: "+surge+", maxUnavailable: "+unavail+"}}")
}

// world runs the deployment and replicaset controllers and a kubelet
// that makes pods ready and finishes deletions, over one cluster.
type world struct {
	c      *plugintest.Cluster
	dep    *plugintest.ControllerHarness
	rs     *plugintest.ControllerHarness
	kubelt bool
}

func newWorld(t *testing.T, objs ...string) *world {
	t.Helper()
	c := plugintest.NewCluster(t, objs...)
	d := deployment.New()
	d.Now = c.Now
	r := replicaset.New()
	r.Now = c.Now
	return &world{c: c, kubelt: true,
		dep: plugintest.NewController(t, d, deployment.Manifest(), deployment.Spec(), "", c),
		rs:  plugintest.NewController(t, r, replicaset.Manifest(), replicaset.Spec(), "", c)}
}

// step runs one round of every actor.
func (w *world) step(t *testing.T) {
	t.Helper()
	w.reconcileAll(t, w.dep, deployment.Deployments)
	w.reconcileAll(t, w.rs, deployment.ReplicaSets)
	if w.kubelt {
		now := w.c.Now().Format(time.RFC3339)
		for _, p := range w.c.List("pods", "default") {
			name := plugintest.Path(p, "metadata", "name").(string)
			if plugintest.Path(p, "metadata", "deletionTimestamp") != nil {
				w.c.Remove("pods", "default", name)
				continue
			}
			if plugintest.Path(p, "status", "phase") != "Running" {
				w.c.Update(t, "pods", "default", name, func(o map[string]any) {
					o["status"] = map[string]any{"phase": "Running", "conditions": []any{map[string]any{
						"type": "Ready", "status": "True", "lastTransitionTime": now}}}
				})
			}
		}
	}
	w.reconcileAll(t, w.rs, deployment.ReplicaSets)
	w.reconcileAll(t, w.dep, deployment.Deployments)
}

func (w *world) reconcileAll(t *testing.T, h *plugintest.ControllerHarness, res string) {
	t.Helper()
	for _, o := range w.c.List(res, "default") {
		if r := h.Reconcile(t, res, "default", plugintest.Path(o, "metadata", "name").(string)); r.Error != "" {
			t.Fatalf("reconcile %s: %s", res, r.Error)
		}
	}
}

// replicaSets returns name -> spec.replicas of the deployment's ReplicaSets.
func (w *world) replicaSets() map[string]int {
	out := map[string]int{}
	for _, o := range w.c.List(deployment.ReplicaSets, "default") {
		n, _ := plugintest.Path(o, "spec", "replicas").(float64)
		out[plugintest.Path(o, "metadata", "name").(string)] = int(n)
	}
	return out
}

// pods counts active pods and ready ones.
func (w *world) pods() (total, ready int) {
	for _, p := range w.c.List("pods", "default") {
		if plugintest.Path(p, "metadata", "deletionTimestamp") != nil {
			continue
		}
		total++
		if plugintest.Path(p, "status", "phase") == "Running" {
			ready++
		}
	}
	return total, ready
}

func (w *world) setImage(t *testing.T, image string) {
	t.Helper()
	w.c.Update(t, deployment.Deployments, "default", "web", func(o map[string]any) {
		c := plugintest.Path(o, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
		c["image"] = image
		m := o["metadata"].(map[string]any)
		m["generation"] = m["generation"].(float64) + 1
	})
}

func (w *world) deployment() map[string]any { return w.c.Get(deployment.Deployments, "default", "web") }

func (w *world) converge(t *testing.T, check func(step int)) {
	t.Helper()
	for i := range 30 {
		before := len(w.c.Writes())
		w.step(t)
		if check != nil {
			check(i)
		}
		if len(w.c.Writes()) == before {
			return
		}
	}
	t.Fatalf("no convergence; replicasets %v", w.replicaSets())
}

func TestRollingUpdateKeepsBounds(t *testing.T) {
	for _, tc := range []struct {
		surge, unavail     string
		maxTotal, minReady int
	}{
		{"1", "0", 5, 4},
		{"0", "1", 4, 3},
		{"25%", "25%", 5, 3},
		{"2", "2", 6, 2},
	} {
		t.Run("surge "+tc.surge+" unavailable "+tc.unavail, func(t *testing.T) {
			w := newWorld(t, rolling(tc.surge, tc.unavail))
			w.converge(t, nil)
			if total, ready := w.pods(); total != 4 || ready != 4 {
				t.Fatalf("initial rollout: %d pods, %d ready", total, ready)
			}
			w.setImage(t, "nginx:2")
			w.converge(t, func(step int) {
				total, ready := w.pods()
				if total > tc.maxTotal || ready < tc.minReady {
					t.Errorf("step %d: %d pods (max %d), %d ready (min %d); replicasets %v", step, total, tc.maxTotal, ready, tc.minReady, w.replicaSets())
				}
			})
			rss := w.replicaSets()
			if len(rss) != 2 {
				t.Fatalf("replicasets %v, want old and new", rss)
			}
			for name, n := range rss {
				rs := w.c.Get(deployment.ReplicaSets, "default", name)
				img := plugintest.Path(rs, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)["image"]
				if want := map[bool]int{true: 4, false: 0}[img == "nginx:2"]; n != want {
					t.Errorf("replicaset %s (%v) has %d replicas, want %d", name, img, n, want)
				}
			}
			st := w.deployment()["status"].(map[string]any)
			for k, want := range map[string]float64{"replicas": 4, "updatedReplicas": 4, "readyReplicas": 4, "availableReplicas": 4, "observedGeneration": 2} {
				if st[k] != want {
					t.Errorf("status.%s = %v, want %v (status %v)", k, st[k], want, st)
				}
			}
			if rev := plugintest.Path(w.deployment(), "metadata", "annotations", deployment.RevisionAnnotation); rev != "2" {
				t.Errorf("revision %v, want 2", rev)
			}
		})
	}
}

func TestNewReplicaSet(t *testing.T) {
	w := newWorld(t, rolling("1", "0"))
	w.converge(t, nil)
	rss := w.c.List(deployment.ReplicaSets, "default")
	if len(rss) != 1 {
		t.Fatalf("%d replicasets", len(rss))
	}
	rs := rss[0]
	hash := plugintest.Path(rs, "metadata", "labels", deployment.HashLabel).(string)
	checks := map[string][2]any{
		"name":                  {plugintest.Path(rs, "metadata", "name"), "web-" + hash},
		"selector hash":         {plugintest.Path(rs, "spec", "selector", "matchLabels", deployment.HashLabel), hash},
		"template hash":         {plugintest.Path(rs, "spec", "template", "metadata", "labels", deployment.HashLabel), hash},
		"template app label":    {plugintest.Path(rs, "spec", "template", "metadata", "labels", "app"), "web"},
		"revision":              {plugintest.Path(rs, "metadata", "annotations", deployment.RevisionAnnotation), "1"},
		"owner":                 {plugintest.Path(rs, "metadata", "ownerReferences").([]any)[0].(map[string]any)["uid"], "d-1"},
		"replicas":              {plugintest.Path(rs, "spec", "replicas"), 4.0},
		"deployment revision":   {plugintest.Path(w.deployment(), "metadata", "annotations", deployment.RevisionAnnotation), "1"},
		"available condition":   {plugintest.Path(w.deployment(), "status", "conditions").([]any)[0].(map[string]any)["status"], "True"},
		"progressing condition": {plugintest.Path(w.deployment(), "status", "conditions").([]any)[1].(map[string]any)["reason"], "NewReplicaSetAvailable"},
	}
	for what, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s: %v, want %v", what, c[0], c[1])
		}
	}
}

func TestRecreate(t *testing.T) {
	w := newWorld(t, strings.ReplaceAll(web, "STRATEGY", "{type: Recreate}"))
	w.converge(t, nil)
	w.setImage(t, "nginx:2")
	w.converge(t, func(step int) {
		old, cur := 0, 0
		for _, p := range w.c.List("pods", "default") {
			img := plugintest.Path(p, "spec", "containers").([]any)[0].(map[string]any)["image"]
			if img == "nginx:2" {
				cur++
			} else {
				old++
			}
		}
		if old > 0 && cur > 0 {
			t.Errorf("step %d: old (%d) and new (%d) pods at once", step, old, cur)
		}
	})
	if total, _ := w.pods(); total != 4 {
		t.Errorf("%d pods after recreate", total)
	}
}

func TestRollbackReusesTheOldReplicaSet(t *testing.T) {
	w := newWorld(t, rolling("1", "0"))
	w.converge(t, nil)
	w.setImage(t, "nginx:2")
	w.converge(t, nil)
	w.setImage(t, "nginx")
	w.converge(t, nil)
	rss := w.replicaSets()
	if len(rss) != 2 {
		t.Fatalf("replicasets %v, want the original reused", rss)
	}
	if rev := plugintest.Path(w.deployment(), "metadata", "annotations", deployment.RevisionAnnotation); rev != "3" {
		t.Errorf("deployment revision %v, want 3", rev)
	}
}

func TestRevisionHistoryLimit(t *testing.T) {
	w := newWorld(t, rolling("1", "0"))
	w.converge(t, nil)
	for i := 2; i <= 5; i++ {
		w.setImage(t, fmt.Sprintf("nginx:%d", i))
		w.converge(t, nil)
	}
	if rss := w.replicaSets(); len(rss) != 3 {
		t.Errorf("replicasets %v, want the current one and 2 old ones", rss)
	}
}

func TestScaleWithoutRollout(t *testing.T) {
	w := newWorld(t, rolling("25%", "25%"))
	w.converge(t, nil)
	for _, n := range []float64{10, 1} {
		w.c.Update(t, deployment.Deployments, "default", "web", func(o map[string]any) {
			o["spec"].(map[string]any)["replicas"] = n
		})
		w.converge(t, nil)
		if total, _ := w.pods(); total != int(n) || len(w.replicaSets()) != 1 {
			t.Errorf("scale to %v: %d pods, replicasets %v", n, total, w.replicaSets())
		}
	}
}

func TestPausedDeploymentDoesNotRollOut(t *testing.T) {
	w := newWorld(t, rolling("1", "0"))
	w.converge(t, nil)
	w.c.Update(t, deployment.Deployments, "default", "web", func(o map[string]any) {
		o["spec"].(map[string]any)["paused"] = true
	})
	w.setImage(t, "nginx:2")
	w.converge(t, nil)
	if rss := w.replicaSets(); len(rss) != 1 {
		t.Errorf("a paused deployment rolled out: %v", rss)
	}
}

func TestTemplateHash(t *testing.T) {
	a := deployment.TemplateHash([]byte(`{"metadata":{"labels":{"app":"web"}}}`), nil)
	b := deployment.TemplateHash([]byte(`{"metadata":{"labels":{"app":"db"}}}`), nil)
	one := int32(1)
	c := deployment.TemplateHash([]byte(`{"metadata":{"labels":{"app":"web"}}}`), &one)
	if a == b || a == c || a != deployment.TemplateHash([]byte(`{"metadata":{"labels":{"app":"web"}}}`), nil) {
		t.Errorf("hashes %q %q %q: want distinct for distinct input and stable", a, b, c)
	}
	for _, h := range []string{a, b, c} {
		if strings.Trim(h, "bcdfghjklmnpqrstvwxz2456789") != "" || len(h) < 6 || len(h) > 10 {
			t.Errorf("hash %q is not a safe-encoded 32-bit number", h)
		}
	}
}
