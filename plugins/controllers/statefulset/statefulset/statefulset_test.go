package statefulset_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/controllers/statefulset/statefulset"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const sts = `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: default, uid: sts-1}
spec:
  replicas: REPLICAS
  serviceName: nginx
  EXTRA
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: v1}]}
`

func stsWith(replicas, extra string) string {
	return strings.NewReplacer("REPLICAS", replicas, "EXTRA", extra).Replace(sts)
}

type fixture struct {
	t *testing.T
	c *plugintest.Cluster
	h *plugintest.ControllerHarness
}

func newFixture(t *testing.T, objs ...string) *fixture {
	t.Helper()
	c := plugintest.NewCluster(t, objs...)
	ctl := statefulset.New()
	ctl.Now = c.Now
	return &fixture{t: t, c: c, h: plugintest.NewController(t, ctl, statefulset.Manifest(), statefulset.Spec(), "", c)}
}

func (f *fixture) reconcile() {
	f.t.Helper()
	if res := f.h.Reconcile(f.t, statefulset.StatefulSets, "default", "web"); res.Error != "" {
		f.t.Fatalf("reconcile: %s", res.Error)
	}
}

// pods returns the pod names and their images, sorted by name.
func (f *fixture) pods() (names, images []string) {
	for _, p := range f.c.List("pods", "default") {
		names = append(names, plugintest.Path(p, "metadata", "name").(string))
		images = append(images, plugintest.Path(p, "spec", "containers").([]any)[0].(map[string]any)["image"].(string))
	}
	return names, images
}

// ready marks every pod Running and Ready.
func (f *fixture) ready() {
	f.t.Helper()
	names, _ := f.pods()
	for _, n := range names {
		f.c.Update(f.t, "pods", "default", n, func(p map[string]any) {
			p["status"] = map[string]any{"phase": "Running", "conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}
		})
	}
}

func (f *fixture) scale(n int) {
	f.c.Update(f.t, statefulset.StatefulSets, "default", "web", func(o map[string]any) { o["spec"].(map[string]any)["replicas"] = n })
}

func (f *fixture) status() map[string]any {
	st, _ := f.c.Get(statefulset.StatefulSets, "default", "web")["status"].(map[string]any)
	return st
}

func TestStatefulSetOrderedReady(t *testing.T) {
	f := newFixture(t, stsWith("3", ""))
	for i, want := range [][]string{{"web-0"}, {"web-0", "web-1"}, {"web-0", "web-1", "web-2"}} {
		f.reconcile()
		f.reconcile() // nothing more while the new pod is not Ready
		if names, _ := f.pods(); !slices.Equal(names, want) {
			t.Fatalf("step %d: pods %v, want %v", i, names, want)
		}
		f.ready()
	}
	f.reconcile()
	p := f.c.Get("pods", "default", "web-1")
	if plugintest.Path(p, "spec", "hostname") != "web-1" || plugintest.Path(p, "spec", "subdomain") != "nginx" ||
		plugintest.Path(p, "metadata", "labels", statefulset.PodNameLabel) != "web-1" ||
		plugintest.Path(p, "metadata", "labels", statefulset.PodIndexLabel) != "1" ||
		plugintest.Path(p, "metadata", "labels", "app") != "web" {
		t.Errorf("pod web-1: %v", p)
	}
	ref := plugintest.Path(p, "metadata", "ownerReferences").([]any)[0].(map[string]any)
	if ref["kind"] != "StatefulSet" || ref["uid"] != "sts-1" || ref["controller"] != true {
		t.Errorf("owner %v", ref)
	}
	st := f.status()
	if st["replicas"] != 3.0 || st["readyReplicas"] != 3.0 || st["availableReplicas"] != 3.0 || st["updatedReplicas"] != 3.0 ||
		st["currentReplicas"] != 3.0 || st["currentRevision"] != st["updateRevision"] || !strings.HasPrefix(st["updateRevision"].(string), "web-") ||
		st["observedGeneration"] != 1.0 {
		t.Errorf("status %v", st)
	}

	// Scale down: from the highest ordinal, one at a time.
	f.scale(1)
	for _, want := range [][]string{{"web-0", "web-1"}, {"web-0"}} {
		f.reconcile()
		if names, _ := f.pods(); !slices.Equal(names, want) {
			t.Fatalf("scale down: pods %v, want %v", names, want)
		}
	}
}

func TestStatefulSetScaleDownWaitsForHealthyPods(t *testing.T) {
	f := newFixture(t, stsWith("3", ""))
	for range 3 {
		f.reconcile()
		f.ready()
	}
	f.c.Update(t, "pods", "default", "web-0", func(p map[string]any) { p["status"] = map[string]any{"phase": "Pending"} })
	f.scale(2)
	f.reconcile()
	if names, _ := f.pods(); len(names) != 3 {
		t.Errorf("OrderedReady deleted web-2 while web-0 is not Ready: %v", names)
	}
}

func TestStatefulSetParallel(t *testing.T) {
	f := newFixture(t, stsWith("3", "podManagementPolicy: Parallel"))
	f.reconcile()
	if names, _ := f.pods(); !slices.Equal(names, []string{"web-0", "web-1", "web-2"}) {
		t.Fatalf("pods %v", names)
	}
	f.scale(0)
	f.reconcile()
	if names, _ := f.pods(); len(names) != 0 {
		t.Errorf("pods %v after scaling to 0", names)
	}
}

func TestStatefulSetReplacesFailedPod(t *testing.T) {
	f := newFixture(t, stsWith("2", ""))
	for range 2 {
		f.reconcile()
		f.ready()
	}
	uid := f.c.Get("pods", "default", "web-1")["metadata"].(map[string]any)["uid"]
	f.c.Update(t, "pods", "default", "web-1", func(p map[string]any) { p["status"] = map[string]any{"phase": "Failed"} })
	f.reconcile() // deletes it
	f.reconcile() // creates it again
	p := f.c.Get("pods", "default", "web-1")
	if p == nil || p["metadata"].(map[string]any)["uid"] == uid {
		t.Errorf("failed web-1 not replaced: %v", p)
	}
}

func TestStatefulSetRollingUpdate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		extra    string
		wantImgs []string
	}{
		{"all", "", []string{"v2", "v2", "v2"}},
		{"partition", "updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 1}}", []string{"v1", "v2", "v2"}},
		{"on delete", "updateStrategy: {type: OnDelete}", []string{"v1", "v1", "v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, stsWith("3", tc.extra))
			for range 3 {
				f.reconcile()
				f.ready()
			}
			f.reconcile()
			oldRev := f.status()["updateRevision"]
			f.c.Update(t, statefulset.StatefulSets, "default", "web", func(o map[string]any) {
				plugintest.Path(o, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)["image"] = "v2"
			})
			var order []string // pods in the order they got v2
			for range 12 {
				f.reconcile()
				names, imgs := f.pods()
				if len(names) < 2 {
					t.Fatalf("more than one pod down at once: %v", names)
				}
				for i, n := range names {
					if imgs[i] == "v2" && !slices.Contains(order, n) {
						order = append(order, n)
					}
				}
				f.ready()
			}
			if _, imgs := f.pods(); !slices.Equal(imgs, tc.wantImgs) {
				t.Fatalf("images %v, want %v", imgs, tc.wantImgs)
			}
			if want := []string{"web-2", "web-1", "web-0"}[:len(order)]; !slices.Equal(order, want) {
				t.Errorf("updated in order %v, want %v", order, want)
			}
			st := f.status()
			if st["updateRevision"] == oldRev {
				t.Errorf("updateRevision unchanged: %v", st)
			}
			if tc.name == "all" && (st["currentRevision"] != st["updateRevision"] || st["updatedReplicas"] != 3.0 || st["currentReplicas"] != 3.0) {
				t.Errorf("status after a complete rollout %v", st)
			}
			if tc.name == "partition" && (st["currentRevision"] != oldRev || st["updatedReplicas"] != 2.0 || st["currentReplicas"] != 1.0) {
				t.Errorf("status after a partitioned rollout %v", st)
			}
		})
	}
}
