package replicaset_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/plugins/controllers/replicaset/replicaset"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const rs = `
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web, namespace: default, uid: rs-1}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}, annotations: {note: hi}}
    spec: {containers: [{name: c, image: nginx}]}
`

func pod(name, labels, owner string) string {
	refs := ""
	if owner != "" {
		refs = `, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web, uid: ` + owner + `, controller: true}]`
	}
	return `
apiVersion: v1
kind: Pod
metadata: {name: ` + name + `, namespace: default, labels: ` + labels + refs + `}
spec: {containers: [{name: c, image: nginx}]}
`
}

func rsWith(n int) string { return replace(rs, "REPLICAS", fmt.Sprint(n)) }

func replace(s, old, new string) string { return strings.ReplaceAll(s, old, new) }

func harness(t *testing.T, c *plugintest.Cluster) *plugintest.ControllerHarness {
	t.Helper()
	ctl := replicaset.New()
	ctl.Now = c.Now
	return plugintest.NewController(t, ctl, replicaset.Manifest(), replicaset.Spec(), "", c)
}

// owned returns the names of the pods controlled by uid.
func owned(c *plugintest.Cluster, uid string) []string {
	var out []string
	for _, p := range c.List("pods", "default") {
		refs, _ := plugintest.Path(p, "metadata", "ownerReferences").([]any)
		for _, r := range refs {
			if m := r.(map[string]any); m["uid"] == uid && m["controller"] == true && plugintest.Path(p, "metadata", "deletionTimestamp") == nil {
				out = append(out, plugintest.Path(p, "metadata", "name").(string))
			}
		}
	}
	return out
}

func TestReplicaSet(t *testing.T) {
	for _, tc := range []struct {
		name       string
		objs       []string
		wantPods   int
		wantOwned  []string // pods expected among the owned ones
		wantFreed  []string // pods expected to have no controller
		wantStatus float64
	}{
		{name: "creates pods", objs: []string{rsWith(3)}, wantPods: 3, wantStatus: 3},
		{name: "adopts a matching orphan", objs: []string{rsWith(2), pod("orphan", "{app: web}", "")},
			wantPods: 2, wantOwned: []string{"orphan"}, wantStatus: 2},
		{name: "ignores pods of other controllers", objs: []string{rsWith(1), pod("other", "{app: web}", "rs-2")},
			wantPods: 1, wantStatus: 1},
		{name: "releases a pod that stopped matching", objs: []string{rsWith(1), pod("moved", "{app: db}", "rs-1")},
			wantPods: 1, wantFreed: []string{"moved"}, wantStatus: 1},
		{name: "scales down", objs: []string{rsWith(1), pod("a", "{app: web}", "rs-1"), pod("b", "{app: web}", "rs-1"), pod("c", "{app: web}", "rs-1")},
			wantPods: 1, wantStatus: 1},
		{name: "zero replicas", objs: []string{rsWith(0), pod("a", "{app: web}", "rs-1")}, wantPods: 0, wantStatus: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := plugintest.NewCluster(t, tc.objs...)
			h := harness(t, c)
			h.Converge(t, 5, false)
			got := owned(c, "rs-1")
			if len(got) != tc.wantPods {
				t.Errorf("owned pods %v, want %d", got, tc.wantPods)
			}
			for _, n := range tc.wantOwned {
				if !slices.Contains(got, n) {
					t.Errorf("pod %s not owned; owned %v", n, got)
				}
			}
			for _, n := range tc.wantFreed {
				p := c.Get("pods", "default", n)
				if p == nil || plugintest.Path(p, "metadata", "ownerReferences") != nil {
					t.Errorf("pod %s not released: %v", n, p)
				}
			}
			obj := c.Get("replicasets.apps", "default", "web")
			if r, _ := plugintest.Path(obj, "status", "replicas").(float64); r != tc.wantStatus {
				t.Errorf("status.replicas %v, want %v", plugintest.Path(obj, "status"), tc.wantStatus)
			}
			if g := plugintest.Path(obj, "status", "observedGeneration"); g != plugintest.Path(obj, "metadata", "generation") {
				t.Errorf("observedGeneration %v, generation %v", g, plugintest.Path(obj, "metadata", "generation"))
			}
		})
	}
}

func TestReplicaSetPodTemplate(t *testing.T) {
	c := plugintest.NewCluster(t, rsWith(1))
	harness(t, c).Converge(t, 3, false)
	pods := c.List("pods", "default")
	if len(pods) != 1 {
		t.Fatalf("%d pods", len(pods))
	}
	p := pods[0]
	if plugintest.Path(p, "metadata", "labels", "tier") != "front" || plugintest.Path(p, "metadata", "annotations", "note") != "hi" ||
		plugintest.Path(p, "metadata", "generateName") != "web-" {
		t.Errorf("pod metadata %v", p["metadata"])
	}
	refs := plugintest.Path(p, "metadata", "ownerReferences").([]any)
	ref := refs[0].(map[string]any)
	if ref["kind"] != "ReplicaSet" || ref["uid"] != "rs-1" || ref["blockOwnerDeletion"] != true || ref["controller"] != true {
		t.Errorf("owner reference %v", ref)
	}
	if img := plugintest.Path(p, "spec", "containers").([]any)[0].(map[string]any)["image"]; img != "nginx" {
		t.Errorf("image %v", img)
	}
}

func TestReplicaSetScaleDownOrder(t *testing.T) {
	c := plugintest.NewCluster(t, rsWith(1),
		withStatus(pod("ready", "{app: web}", "rs-1"), "n1", "Running", "True"),
		withStatus(pod("notready", "{app: web}", "rs-1"), "n1", "Running", "False"),
		withStatus(pod("unscheduled", "{app: web}", "rs-1"), "", "Pending", "False"),
	)
	harness(t, c).Converge(t, 3, false)
	if got := owned(c, "rs-1"); !slices.Equal(got, []string{"ready"}) {
		t.Errorf("kept %v, want the ready pod", got)
	}
}

// withStatus gives a pod manifest a node and status.
func withStatus(p, node, phase, ready string) string {
	p = replace(p, "spec: {containers:", "spec: {nodeName: '"+node+"', containers:")
	return p + "status: {phase: " + phase + ", conditions: [{type: Ready, status: '" + ready + "'}]}\n"
}

func TestReplicaSetMinReadySeconds(t *testing.T) {
	c := plugintest.NewCluster(t, replace(rsWith(1), "  replicas: 1", "  replicas: 1\n  minReadySeconds: 10"))
	h := harness(t, c)
	h.Converge(t, 3, false)
	name := c.List("pods", "default")[0]["metadata"].(map[string]any)["name"].(string)
	now := c.Now().Format(time.RFC3339)
	c.Update(t, "pods", "default", name, func(p map[string]any) {
		p["status"] = map[string]any{"phase": "Running", "conditions": []any{map[string]any{
			"type": "Ready", "status": "True", "lastTransitionTime": now}}}
	})
	res := h.Reconcile(t, replicaset.ReplicaSets, "default", "web")
	st := c.Get("replicasets.apps", "default", "web")["status"].(map[string]any)
	if st["readyReplicas"] != 1.0 || st["availableReplicas"] != 0.0 || res.RequeueAfterMillis <= 0 || res.RequeueAfterMillis > 10001 {
		t.Errorf("before minReadySeconds: status %v, requeue %d ms", st, res.RequeueAfterMillis)
	}
	c.Advance(10 * time.Second)
	h.Reconcile(t, replicaset.ReplicaSets, "default", "web")
	st = c.Get("replicasets.apps", "default", "web")["status"].(map[string]any)
	if st["availableReplicas"] != 1.0 {
		t.Errorf("after minReadySeconds: status %v", st)
	}
}

func TestReplicationController(t *testing.T) {
	c := plugintest.NewCluster(t, `
apiVersion: v1
kind: ReplicationController
metadata: {name: kubia, namespace: default, uid: rc-1}
spec:
  replicas: 2
  selector: {app: kubia}
  template:
    metadata: {labels: {app: kubia}}
    spec: {containers: [{name: c, image: luksa/kubia}]}
`)
	harness(t, c).Converge(t, 3, false)
	if got := owned(c, "rc-1"); len(got) != 2 {
		t.Errorf("rc pods %v, want 2", got)
	}
	ref := plugintest.Path(c.List("pods", "default")[0], "metadata", "ownerReferences").([]any)[0].(map[string]any)
	if ref["kind"] != "ReplicationController" || ref["apiVersion"] != "v1" {
		t.Errorf("owner reference %v", ref)
	}
}

func TestReplicaSetBeingDeletedCreatesNothing(t *testing.T) {
	c := plugintest.NewCluster(t, replace(rsWith(2), "uid: rs-1}", "uid: rs-1, deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [foregroundDeletion]}"))
	harness(t, c).Converge(t, 3, false)
	if n := len(c.List("pods", "default")); n != 0 {
		t.Errorf("%d pods created for a ReplicaSet being deleted", n)
	}
}
