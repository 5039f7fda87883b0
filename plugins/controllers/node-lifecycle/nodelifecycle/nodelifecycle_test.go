package nodelifecycle_test

import (
	"slices"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/plugins/controllers/node-lifecycle/nodelifecycle"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const node = `{apiVersion: v1, kind: Node, metadata: {name: n1}, spec: {taints: [{key: dedicated, value: x, effect: NoSchedule}]},
  status: {conditions: [{type: Ready, status: "True", reason: KubeletReady, lastHeartbeatTime: "2026-01-01T00:00:00Z", lastTransitionTime: "2026-01-01T00:00:00Z"}]}}`

const lease = `{apiVersion: coordination.k8s.io/v1, kind: Lease, metadata: {name: n1, namespace: kube-node-lease}, spec: {holderIdentity: n1, renewTime: "2026-01-01T00:00:00.000000Z"}}`

func pod(name, tolerations string) string {
	return `{apiVersion: v1, kind: Pod, metadata: {name: ` + name + `, namespace: default}, spec: {nodeName: n1, tolerations: ` + tolerations + `}, status: {phase: Running}}`
}

func taints(c *plugintest.Cluster) []string {
	var out []string
	ts, _ := plugintest.Path(c.Get("nodes", "", "n1"), "spec", "taints").([]any)
	for _, t := range ts {
		m := t.(map[string]any)
		out = append(out, m["key"].(string)+":"+m["effect"].(string))
	}
	return out
}

func deleting(c *plugintest.Cluster, name string) bool {
	p := c.Get("pods", "default", name)
	return p == nil || plugintest.Path(p, "metadata", "deletionTimestamp") != nil
}

func TestNodeLifecycle(t *testing.T) {
	c := plugintest.NewCluster(t, node, lease,
		pod("plain", "[]"),
		pod("short", `[{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}]`),
		pod("forever", `[{operator: Exists}]`))
	ctl := nodelifecycle.New()
	ctl.Now = c.Now
	h := plugintest.NewController(t, ctl, nodelifecycle.Manifest(), nodelifecycle.Spec(), `{"gracePeriod": "40s", "evictionTimeout": "20s"}`, c)

	res := h.Reconcile(t, "nodes", "", "n1")
	if res.RequeueAfterMillis <= 0 || res.RequeueAfterMillis > 40001 || len(c.Writes()) != 0 {
		t.Fatalf("healthy node: %+v, writes %v", res, c.Writes())
	}

	c.Advance(41 * time.Second)
	h.Reconcile(t, "nodes", "", "n1")
	ready := plugintest.Path(c.Get("nodes", "", "n1"), "status", "conditions").([]any)[0].(map[string]any)
	if ready["status"] != "Unknown" || ready["reason"] != "NodeStatusUnknown" {
		t.Errorf("Ready condition %v", ready)
	}
	if got := taints(c); len(got) != 3 || got[1] != "node.kubernetes.io/unreachable:NoSchedule" || got[2] != "node.kubernetes.io/unreachable:NoExecute" {
		t.Errorf("taints %v", got)
	}
	if deleting(c, "plain") || deleting(c, "short") {
		t.Error("pods evicted before their toleration ran out")
	}

	c.Advance(6 * time.Second)
	if res := h.Reconcile(t, "nodes", "", "n1"); res.Error != "" {
		t.Fatal(res.Error)
	}
	if !deleting(c, "short") || deleting(c, "plain") {
		t.Errorf("after 6s: short deleted %v (want true), plain deleted %v (want false)", deleting(c, "short"), deleting(c, "plain"))
	}

	c.Advance(15 * time.Second)
	h.Reconcile(t, "nodes", "", "n1")
	if !deleting(c, "plain") || deleting(c, "forever") {
		t.Errorf("after 21s: plain deleted %v (want true), forever deleted %v (want false)", deleting(c, "plain"), deleting(c, "forever"))
	}

	renewed := c.Now().Format(time.RFC3339)
	c.Update(t, "leases.coordination.k8s.io", "kube-node-lease", "n1", func(o map[string]any) {
		o["spec"].(map[string]any)["renewTime"] = renewed
	})
	h.Reconcile(t, "nodes", "", "n1")
	if got := taints(c); len(got) != 1 || got[0] != "dedicated:NoSchedule" {
		t.Errorf("taints after the lease is renewed: %v, want only dedicated", got)
	}
}

func TestSettings(t *testing.T) {
	for _, s := range []string{`{"gracePeriod": "soon"}`, `{"evictionTimeout": "-1s"}`} {
		if err := nodelifecycle.New().Configure([]byte(s)); err == nil {
			t.Errorf("settings %s accepted", s)
		}
	}
}

// setReady sets n1's Ready condition status (as its agent would) and
// renews its lease now.
func setReady(t *testing.T, c *plugintest.Cluster, status string) {
	t.Helper()
	now := c.Now().Format(time.RFC3339)
	c.Update(t, "nodes", "", "n1", func(o map[string]any) {
		o["status"] = map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": status, "reason": "KubeletNotReady",
			"lastHeartbeatTime": now, "lastTransitionTime": now}}}
	})
	c.Update(t, "leases.coordination.k8s.io", "kube-node-lease", "n1", func(o map[string]any) {
		o["spec"].(map[string]any)["renewTime"] = now
	})
}

// TestNodeNotReady: an agent reporting Ready=False (its lease renewed)
// gets the not-ready taints, and pods not tolerating them are evicted
// after their tolerationSeconds; a node that then stops renewing swaps
// them for the unreachable ones; Ready again lifts them.
func TestNodeNotReady(t *testing.T) {
	c := plugintest.NewCluster(t, node, lease,
		pod("plain", "[]"),
		pod("short", `[{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}]`),
		pod("unreachable-only", `[{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}]`))
	ctl := nodelifecycle.New()
	ctl.Now = c.Now
	h := plugintest.NewController(t, ctl, nodelifecycle.Manifest(), nodelifecycle.Spec(), `{"gracePeriod": "40s", "evictionTimeout": "20s"}`, c)

	setReady(t, c, "False")
	res := h.Reconcile(t, "nodes", "", "n1")
	want := []string{"dedicated:NoSchedule", "node.kubernetes.io/not-ready:NoSchedule", "node.kubernetes.io/not-ready:NoExecute"}
	if got := taints(c); !slices.Equal(got, want) {
		t.Fatalf("taints of a not-ready node %v, want %v", got, want)
	}
	if res.RequeueAfterMillis != 5001 {
		t.Errorf("requeue after %d ms, want when short's toleration runs out (5 s)", res.RequeueAfterMillis)
	}
	if ready := plugintest.Path(c.Get("nodes", "", "n1"), "status", "conditions").([]any)[0].(map[string]any); ready["status"] != "False" {
		t.Errorf("Ready condition rewritten: %v", ready)
	}
	c.Advance(6 * time.Second)
	setReady(t, c, "False")
	h.Reconcile(t, "nodes", "", "n1")
	if !deleting(c, "short") || deleting(c, "plain") {
		t.Errorf("after 6s: short deleted %v (want true), plain deleted %v (want false)", deleting(c, "short"), deleting(c, "plain"))
	}
	c.Advance(15 * time.Second)
	setReady(t, c, "False")
	h.Reconcile(t, "nodes", "", "n1")
	if !deleting(c, "plain") || !deleting(c, "unreachable-only") {
		t.Errorf("after 21s: plain deleted %v, unreachable-only deleted %v; want both (not-ready is not tolerated)",
			deleting(c, "plain"), deleting(c, "unreachable-only"))
	}

	// The agent stops renewing: not-ready becomes unreachable.
	c.Advance(41 * time.Second)
	h.Reconcile(t, "nodes", "", "n1")
	want = []string{"dedicated:NoSchedule", "node.kubernetes.io/unreachable:NoSchedule", "node.kubernetes.io/unreachable:NoExecute"}
	if got := taints(c); !slices.Equal(got, want) {
		t.Fatalf("taints of an unreachable node %v, want %v", got, want)
	}

	setReady(t, c, "True")
	h.Reconcile(t, "nodes", "", "n1")
	if got := taints(c); !slices.Equal(got, []string{"dedicated:NoSchedule"}) {
		t.Errorf("taints of a Ready node %v, want only dedicated", got)
	}
}
