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
	// badImage is an image whose pods never become ready.
	badImage string
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
			img := plugintest.Path(p, "spec", "containers").([]any)[0].(map[string]any)["image"]
			if plugintest.Path(p, "status", "phase") != "Running" && (w.badImage == "" || img != w.badImage) {
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

// progressing returns the Progressing condition's status, reason and
// message and its lastUpdateTime.
func (w *world) progressing() (string, string) {
	for _, c := range plugintest.Path(w.deployment(), "status", "conditions").([]any) {
		m := c.(map[string]any)
		if m["type"] == "Progressing" {
			return fmt.Sprint(m["status"], "/", m["reason"], ": ", m["message"]), fmt.Sprint(m["lastUpdateTime"])
		}
	}
	return "", ""
}

func TestProgressDeadline(t *testing.T) {
	w := newWorld(t, strings.Replace(rolling("1", "0"), "replicas: 4", "replicas: 2\n  progressDeadlineSeconds: 30", 1))
	w.badImage = "nginx"
	w.step(t)
	rsName := ""
	for name := range w.replicaSets() {
		rsName = name
	}
	cond, at := w.progressing()
	if want := `True/ReplicaSetUpdated: ReplicaSet "` + rsName + `" is progressing.`; cond != want {
		t.Fatalf("after the first step: %s, want %s", cond, want)
	}
	if at != w.c.Now().Format(time.RFC3339) {
		t.Errorf("lastUpdateTime %s, want now", at)
	}
	// No progress for 20 s: still progressing, and the controller asks to
	// look again when the deadline passes.
	w.c.Advance(20 * time.Second)
	w.step(t)
	if cond, at2 := w.progressing(); !strings.HasPrefix(cond, "True/") || at2 != at {
		t.Fatalf("after 20 s without progress: %s at %s, want True at %s", cond, at2, at)
	}
	res := w.dep.Reconcile(t, deployment.Deployments, "default", "web")
	if res.RequeueAfterMillis != 11000 {
		t.Errorf("requeue after %d ms, want the 10 s left + 1 s", res.RequeueAfterMillis)
	}
	w.c.Advance(11 * time.Second)
	w.step(t)
	cond, _ = w.progressing()
	if want := `False/ProgressDeadlineExceeded: ReplicaSet "` + rsName + `" has timed out progressing.`; cond != want {
		t.Fatalf("after the deadline: %s, want %s", cond, want)
	}
	if res := w.dep.Reconcile(t, deployment.Deployments, "default", "web"); res.RequeueAfterMillis != 0 {
		t.Errorf("a timed-out rollout requeues after %d ms, want no requeue", res.RequeueAfterMillis)
	}
	// Pods becoming ready are progress again; then the rollout completes.
	w.badImage = ""
	w.c.Advance(time.Second)
	w.converge(t, nil)
	cond, _ = w.progressing()
	if want := `True/NewReplicaSetAvailable: ReplicaSet "` + rsName + `" has successfully progressed.`; cond != want {
		t.Fatalf("after the pods became ready: %s, want %s", cond, want)
	}
	if res := w.dep.Reconcile(t, deployment.Deployments, "default", "web"); res.RequeueAfterMillis != 0 {
		t.Errorf("a complete rollout requeues after %d ms", res.RequeueAfterMillis)
	}
	// A template change starts a new rollout: NewReplicaSetCreated.
	w.badImage = "nginx:bad"
	w.setImage(t, "nginx:bad")
	w.dep.Reconcile(t, deployment.Deployments, "default", "web")
	if cond, _ := w.progressing(); !strings.HasPrefix(cond, "True/NewReplicaSetCreated: Created new replica set ") {
		t.Fatalf("after a template change: %s, want NewReplicaSetCreated", cond)
	}
}

func TestNoProgressDeadline(t *testing.T) {
	w := newWorld(t, strings.Replace(rolling("1", "0"), "replicas: 4", "replicas: 2\n  progressDeadlineSeconds: 2147483647", 1))
	w.converge(t, nil)
	if cond, _ := w.progressing(); cond != "" {
		t.Fatalf("Progressing condition %s without a deadline", cond)
	}
}

// TestProportionalScaling is the example of Kubernetes' documentation: 10
// replicas, maxSurge 3, maxUnavailable 2, a rollout to an image that never
// becomes ready (old 8, new 5), then scaled to 15: 3 more for the old
// ReplicaSet and 2 for the new one; then scaled to 5.
func TestProportionalScaling(t *testing.T) {
	w := newWorld(t, strings.Replace(rolling("3", "2"), "replicas: 4", "replicas: 10", 1))
	w.converge(t, nil)
	oldName := ""
	for name := range w.replicaSets() {
		oldName = name
	}
	w.badImage = "nginx:bad"
	w.setImage(t, "nginx:bad")
	w.converge(t, nil)
	sizes := func() (old, cur int) {
		for name, n := range w.replicaSets() {
			if name == oldName {
				old = n
			} else {
				cur = n
			}
		}
		return old, cur
	}
	if old, cur := sizes(); old != 8 || cur != 5 {
		t.Fatalf("stuck rollout: old %d new %d, want 8 and 5", old, cur)
	}
	for _, tc := range []struct {
		replicas       float64
		wantOld, wantN int
	}{
		{15, 11, 7}, // 18 allowed: 8*18/13 = 11.08, 5*18/13 = 6.9
		{5, 5, 3},   // 8 allowed: 11*8/18 = 4.9, 7*8/18 = 3.1
	} {
		w.c.Update(t, deployment.Deployments, "default", "web", func(o map[string]any) {
			o["spec"].(map[string]any)["replicas"] = tc.replicas
		})
		if r := w.dep.Reconcile(t, deployment.Deployments, "default", "web"); r.Error != "" {
			t.Fatal(r.Error)
		}
		if old, cur := sizes(); old != tc.wantOld || cur != tc.wantN {
			t.Fatalf("scaled to %v: old %d new %d, want %d and %d", tc.replicas, old, cur, tc.wantOld, tc.wantN)
		}
		for _, o := range w.c.List(deployment.ReplicaSets, "default") {
			ann := plugintest.Path(o, "metadata", "annotations").(map[string]any)
			if ann[deployment.DesiredAnnotation] != fmt.Sprint(tc.replicas) || ann[deployment.MaxReplicasAnnotation] != fmt.Sprint(tc.replicas+3) {
				t.Errorf("replicaset annotations %v after scaling to %v", ann, tc.replicas)
			}
		}
	}
	// Once the new pods become ready the rollout finishes at 5.
	w.badImage = ""
	w.converge(t, nil)
	if old, cur := sizes(); old != 0 || cur != 5 {
		t.Fatalf("after the rollout: old %d new %d, want 0 and 5", old, cur)
	}
}
