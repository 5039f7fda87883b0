package daemonset_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/controllers/daemonset/daemonset"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const ds = `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default, uid: ds-1}
spec:
  selector: {matchLabels: {app: agent}}
  STRATEGY
  template:
    metadata: {labels: {app: agent}}
    spec:
      NODESELECTOR
      tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule, tolerationSeconds: 5}]
      containers: [{name: c, image: IMAGE}]
`

func dsWith(nodeSelector, strategy, image string) string {
	return strings.NewReplacer("NODESELECTOR", nodeSelector, "STRATEGY", strategy, "IMAGE", image).Replace(ds)
}

func nodeYAML(name, labels, taints string) string {
	return `{apiVersion: v1, kind: Node, metadata: {name: ` + name + `, labels: ` + labels + `}, spec: {taints: ` + taints + `}}`
}

func harness(t *testing.T, c *plugintest.Cluster) *plugintest.ControllerHarness {
	t.Helper()
	ctl := daemonset.New()
	ctl.Now = c.Now
	return plugintest.NewController(t, ctl, daemonset.Manifest(), daemonset.Spec(), "", c)
}

// nodesWithPods returns the sorted target nodes of the live daemon pods.
func nodesWithPods(t testing.TB, c *plugintest.Cluster) []string {
	t.Helper()
	var out []string
	for _, p := range c.List("pods", "default") {
		if plugintest.Path(p, "metadata", "deletionTimestamp") != nil {
			continue
		}
		terms := plugintest.Path(p, "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms").([]any)
		f := terms[0].(map[string]any)["matchFields"].([]any)[0].(map[string]any)
		if f["key"] != "metadata.name" || f["operator"] != "In" {
			t.Fatalf("pod affinity %v", terms)
		}
		out = append(out, f["values"].([]any)[0].(string))
	}
	slices.Sort(out)
	return out
}

// runAll marks every pod bound to its node, Running and Ready.
func runAll(t testing.TB, c *plugintest.Cluster, nodes []string) {
	t.Helper()
	for _, p := range c.List("pods", "default") {
		name := plugintest.Path(p, "metadata", "name").(string)
		c.Update(t, "pods", "default", name, func(p map[string]any) {
			terms := plugintest.Path(p, "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms").([]any)
			node := terms[0].(map[string]any)["matchFields"].([]any)[0].(map[string]any)["values"].([]any)[0]
			p["spec"].(map[string]any)["nodeName"] = node
			p["status"] = map[string]any{"phase": "Running", "conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}
		})
	}
}

func TestDaemonSetPlacement(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sel   string
		nodes []string
		want  []string
	}{
		{name: "every node", nodes: []string{nodeYAML("a", "{}", "[]"), nodeYAML("b", "{}", "[]")}, want: []string{"a", "b"}},
		{name: "node selector", sel: "nodeSelector: {disk: ssd}",
			nodes: []string{nodeYAML("a", "{disk: ssd}", "[]"), nodeYAML("b", "{disk: hdd}", "[]"), nodeYAML("c", "{}", "[]")}, want: []string{"a"}},
		{name: "required node affinity", sel: "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: cores, operator: Gt, values: ['4']}]}, {matchFields: [{key: metadata.name, operator: In, values: [c]}]}]}}}",
			nodes: []string{nodeYAML("a", "{cores: '8'}", "[]"), nodeYAML("b", "{cores: '2'}", "[]"), nodeYAML("c", "{}", "[]")}, want: []string{"a", "c"}},
		{name: "taints and tolerations", nodes: []string{
			nodeYAML("tainted", "{}", "[{key: gpu, value: 'yes', effect: NoSchedule}]"),
			nodeYAML("tolerated", "{}", "[{key: dedicated, value: infra, effect: NoSchedule}]"),
			nodeYAML("cordoned", "{}", "[{key: node.kubernetes.io/unschedulable, effect: NoSchedule}]"),
			nodeYAML("unreachable", "{}", "[{key: node.kubernetes.io/unreachable, effect: NoExecute}]"),
			nodeYAML("prefer", "{}", "[{key: x, effect: PreferNoSchedule}]"),
		}, want: []string{"cordoned", "prefer", "tolerated", "unreachable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := plugintest.NewCluster(t, append([]string{dsWith(tc.sel, "", "nginx")}, tc.nodes...)...)
			harness(t, c).Converge(t, 5, false)
			if got := nodesWithPods(t, c); !slices.Equal(got, tc.want) {
				t.Errorf("daemon pods on %v, want %v", got, tc.want)
			}
			st := c.Get(daemonset.DaemonSets, "default", "agent")["status"].(map[string]any)
			if st["desiredNumberScheduled"] != float64(len(tc.want)) || st["currentNumberScheduled"] != float64(len(tc.want)) ||
				st["observedGeneration"] != 1.0 {
				t.Errorf("status %v", st)
			}
		})
	}
}

func TestDaemonSetPodTemplate(t *testing.T) {
	c := plugintest.NewCluster(t, dsWith("", "", "nginx"), nodeYAML("a", "{}", "[]"))
	harness(t, c).Converge(t, 3, false)
	pods := c.List("pods", "default")
	if len(pods) != 1 {
		t.Fatalf("%d pods", len(pods))
	}
	p := pods[0]
	if plugintest.Path(p, "metadata", "labels", "app") != "agent" || plugintest.Path(p, "metadata", "labels", daemonset.HashLabel) == nil {
		t.Errorf("labels %v", plugintest.Path(p, "metadata", "labels"))
	}
	ref := plugintest.Path(p, "metadata", "ownerReferences").([]any)[0].(map[string]any)
	if ref["kind"] != "DaemonSet" || ref["uid"] != "ds-1" || ref["controller"] != true {
		t.Errorf("owner %v", ref)
	}
	var keys []string
	for _, tol := range plugintest.Path(p, "spec", "tolerations").([]any) {
		m := tol.(map[string]any)
		keys = append(keys, fmt.Sprint(m["key"], ":", m["effect"]))
		if m["key"] == "dedicated" && m["tolerationSeconds"] != 5.0 {
			t.Errorf("template toleration changed: %v", m)
		}
	}
	for _, want := range []string{"dedicated:NoSchedule", "node.kubernetes.io/unschedulable:NoSchedule",
		"node.kubernetes.io/not-ready:NoExecute", "node.kubernetes.io/unreachable:NoExecute"} {
		if !slices.Contains(keys, want) {
			t.Errorf("tolerations %v lack %s", keys, want)
		}
	}
}

func TestDaemonSetFollowsNodes(t *testing.T) {
	c := plugintest.NewCluster(t, dsWith("nodeSelector: {disk: ssd}", "", "nginx"),
		nodeYAML("a", "{disk: ssd}", "[]"), nodeYAML("b", "{disk: ssd}", "[]"), nodeYAML("c", "{disk: hdd}", "[]"))
	h := harness(t, c)
	h.Converge(t, 3, false)
	steps := []struct {
		name   string
		change func()
		want   []string
	}{
		{"relabel ssd to hdd", func() {
			c.Update(t, "nodes", "", "a", func(n map[string]any) { n["metadata"].(map[string]any)["labels"] = map[string]any{"disk": "hdd"} })
		}, []string{"b"}},
		{"relabel hdd to ssd", func() {
			c.Update(t, "nodes", "", "c", func(n map[string]any) { n["metadata"].(map[string]any)["labels"] = map[string]any{"disk": "ssd"} })
		}, []string{"b", "c"}},
		{"NoSchedule taint keeps the pod", func() {
			c.Update(t, "nodes", "", "b", func(n map[string]any) {
				n["spec"] = map[string]any{"taints": []any{map[string]any{"key": "k", "effect": "NoSchedule"}}}
			})
		}, []string{"b", "c"}},
		{"NoExecute taint evicts it", func() {
			c.Update(t, "nodes", "", "b", func(n map[string]any) {
				n["spec"] = map[string]any{"taints": []any{map[string]any{"key": "k", "effect": "NoExecute"}}}
			})
		}, []string{"c"}},
		{"deleted node", func() { c.Remove("nodes", "", "c") }, nil},
	}
	for _, s := range steps {
		s.change()
		h.Converge(t, 3, false)
		if got := nodesWithPods(t, c); !slices.Equal(got, s.want) {
			t.Fatalf("%s: daemon pods on %v, want %v", s.name, got, s.want)
		}
	}
}

func TestDaemonSetReplacesFailedAndDuplicatePods(t *testing.T) {
	c := plugintest.NewCluster(t, dsWith("", "", "nginx"), nodeYAML("a", "{}", "[]"))
	h := harness(t, c)
	h.Converge(t, 3, false)
	first := c.List("pods", "default")[0]["metadata"].(map[string]any)["name"].(string)
	c.Update(t, "pods", "default", first, func(p map[string]any) { p["status"] = map[string]any{"phase": "Failed"} })
	h.Converge(t, 3, false)
	pods := c.List("pods", "default")
	if len(pods) != 1 || pods[0]["metadata"].(map[string]any)["name"] == first {
		t.Errorf("failed pod not replaced: %d pods", len(pods))
	}
	// A second pod for the same node (an adopted orphan) is deleted.
	c.Add(t, `{apiVersion: v1, kind: Pod, metadata: {name: zz-extra, namespace: default, labels: {app: agent}, creationTimestamp: '2027-01-01T00:00:00Z'},
		spec: {nodeName: a, containers: [{name: c, image: nginx}]}}`)
	h.Converge(t, 3, false)
	if got := nodesWithPods(t, c); !slices.Equal(got, []string{"a"}) {
		t.Errorf("pods on %v after a duplicate", got)
	}
	if c.Get("pods", "default", "zz-extra") != nil {
		t.Error("the newer duplicate was kept")
	}
}

func TestDaemonSetRollingUpdate(t *testing.T) {
	nodes := []string{"a", "b", "c", "d"}
	objs := []string{dsWith("", "updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 2}}", "v1")}
	for _, n := range nodes {
		objs = append(objs, nodeYAML(n, "{}", "[]"))
	}
	c := plugintest.NewCluster(t, objs...)
	h := harness(t, c)
	h.Converge(t, 3, false)
	runAll(t, c, nodes)
	h.Converge(t, 3, false)
	c.Update(t, daemonset.DaemonSets, "default", "agent", func(o map[string]any) {
		plugintest.Path(o, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)["image"] = "v2"
		o["metadata"].(map[string]any)["generation"] = 2
	})
	// images counts the pods per image and the ready ones.
	images := func() (v1, v2, ready int) {
		for _, p := range c.List("pods", "default") {
			switch plugintest.Path(p, "spec", "containers").([]any)[0].(map[string]any)["image"] {
			case "v1":
				v1++
			case "v2":
				v2++
			}
			if plugintest.Path(p, "status", "phase") == "Running" {
				ready++
			}
		}
		return v1, v2, ready
	}
	for round := 0; ; round++ {
		h.Reconcile(t, daemonset.DaemonSets, "default", "agent")
		v1, v2, ready := images()
		if ready < 4-2 {
			t.Fatalf("round %d: %d old + %d new pods, %d ready: more than maxUnavailable (2) unavailable", round, v1, v2, ready)
		}
		runAll(t, c, nodes)
		if v2 == 4 {
			break
		}
		if round > 10 {
			t.Fatalf("no progress: %d old, %d new", v1, v2)
		}
	}
	h.Reconcile(t, daemonset.DaemonSets, "default", "agent")
	st := c.Get(daemonset.DaemonSets, "default", "agent")["status"].(map[string]any)
	if st["updatedNumberScheduled"] != 4.0 || st["numberAvailable"] != 4.0 || st["numberReady"] != 4.0 || st["observedGeneration"] != 2.0 {
		t.Errorf("status after the rollout %v", st)
	}
}

func TestDaemonSetOnDelete(t *testing.T) {
	c := plugintest.NewCluster(t, dsWith("", "updateStrategy: {type: OnDelete}", "v1"), nodeYAML("a", "{}", "[]"))
	h := harness(t, c)
	h.Converge(t, 3, false)
	runAll(t, c, []string{"a"})
	c.Update(t, daemonset.DaemonSets, "default", "agent", func(o map[string]any) {
		plugintest.Path(o, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)["image"] = "v2"
	})
	h.Converge(t, 3, false)
	pods := c.List("pods", "default")
	if len(pods) != 1 || plugintest.Path(pods[0], "spec", "containers").([]any)[0].(map[string]any)["image"] != "v1" {
		t.Errorf("OnDelete replaced the pod: %v", pods)
	}
	if st := c.Get(daemonset.DaemonSets, "default", "agent")["status"].(map[string]any); st["updatedNumberScheduled"] != nil && st["updatedNumberScheduled"] != 0.0 {
		t.Errorf("status %v: the old pod counts as updated", st)
	}
}

// podsByNode returns node -> live daemon pods there as "image/ready".
func podsByNode(t testing.TB, c *plugintest.Cluster) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range c.List("pods", "default") {
		if plugintest.Path(p, "metadata", "deletionTimestamp") != nil {
			continue
		}
		terms := plugintest.Path(p, "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms").([]any)
		node := terms[0].(map[string]any)["matchFields"].([]any)[0].(map[string]any)["values"].([]any)[0].(string)
		img := plugintest.Path(p, "spec", "containers").([]any)[0].(map[string]any)["image"].(string)
		ready := false
		conds, _ := plugintest.Path(p, "status", "conditions").([]any)
		for _, c := range conds {
			m := c.(map[string]any)
			ready = ready || (m["type"] == "Ready" && m["status"] == "True")
		}
		out[node] = append(out[node], fmt.Sprint(img, "/", ready))
		slices.Sort(out[node])
	}
	return out
}

func setImage(t testing.TB, c *plugintest.Cluster, image string) {
	t.Helper()
	c.Update(t, daemonset.DaemonSets, "default", "agent", func(o map[string]any) {
		plugintest.Path(o, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)["image"] = image
		o["metadata"].(map[string]any)["generation"] = 2
	})
}

// TestDaemonSetRollingUpdateSurge: with maxSurge 1 (maxUnavailable 0) the
// new pod starts beside the old one on one node at a time, and the old
// one goes only once the new one is available: every node keeps a ready
// pod throughout.
func TestDaemonSetRollingUpdateSurge(t *testing.T) {
	nodes := []string{"a", "b", "c", "d"}
	objs := []string{dsWith("", "updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}", "v1")}
	for _, n := range nodes {
		objs = append(objs, nodeYAML(n, "{}", "[]"))
	}
	c := plugintest.NewCluster(t, objs...)
	h := harness(t, c)
	h.Converge(t, 3, false)
	runAll(t, c, nodes)
	h.Converge(t, 3, false)
	setImage(t, c, "v2")
	for round := 0; ; round++ {
		h.Reconcile(t, daemonset.DaemonSets, "default", "agent")
		byNode := podsByNode(t, c)
		surging, updated := 0, 0
		for _, n := range nodes {
			pods := byNode[n]
			if !slices.ContainsFunc(pods, func(p string) bool { return strings.HasSuffix(p, "/true") }) {
				t.Fatalf("round %d: node %s has no ready pod: %v", round, n, byNode)
			}
			if len(pods) > 2 {
				t.Fatalf("round %d: node %s has %d pods: %v", round, n, len(pods), byNode)
			}
			if len(pods) == 2 {
				surging++
			}
			if slices.Equal(pods, []string{"v2/true"}) {
				updated++
			}
		}
		if surging > 1 {
			t.Fatalf("round %d: %d nodes surging, maxSurge 1: %v", round, surging, byNode)
		}
		if updated == len(nodes) {
			break
		}
		if round > 20 {
			t.Fatalf("no progress: %v", byNode)
		}
		runAll(t, c, nodes)
	}
	st := c.Get(daemonset.DaemonSets, "default", "agent")["status"].(map[string]any)
	if st["updatedNumberScheduled"] != 4.0 || st["numberAvailable"] != 4.0 {
		t.Errorf("status after the rollout %v", st)
	}
}

// TestDaemonSetSurgeReplacesUnavailableAtOnce: an old pod that is not
// available is replaced at once, beyond maxSurge.
func TestDaemonSetSurgeReplacesUnavailableAtOnce(t *testing.T) {
	c := plugintest.NewCluster(t, dsWith("", "updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}", "v1"),
		nodeYAML("a", "{}", "[]"), nodeYAML("b", "{}", "[]"), nodeYAML("c", "{}", "[]"))
	h := harness(t, c)
	h.Converge(t, 3, false)
	runAll(t, c, []string{"a", "b", "c"})
	for _, p := range c.List("pods", "default") { // the pod on a is not ready
		name := plugintest.Path(p, "metadata", "name").(string)
		if nodesOf(p) == "a" {
			c.Update(t, "pods", "default", name, func(p map[string]any) {
				p["status"] = map[string]any{"phase": "Running", "conditions": []any{map[string]any{"type": "Ready", "status": "False"}}}
			})
		}
	}
	setImage(t, c, "v2")
	h.Reconcile(t, daemonset.DaemonSets, "default", "agent")
	got := podsByNode(t, c)
	if !slices.Equal(got["a"], []string{"v1/false", "v2/false"}) {
		t.Errorf("node a (old pod unavailable): %v, want a new pod at once", got["a"])
	}
	if len(got["b"])+len(got["c"]) != 3 {
		t.Errorf("nodes b and c: %v and %v, want one surge pod between them (maxSurge 1)", got["b"], got["c"])
	}
	h.Reconcile(t, daemonset.DaemonSets, "default", "agent")
	if got := podsByNode(t, c); len(got["a"]) != 1 || got["a"][0] != "v2/false" {
		t.Errorf("node a after the next sync: %v, want the unready old pod gone", got["a"])
	}
}

func nodesOf(p map[string]any) string {
	terms := plugintest.Path(p, "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms").([]any)
	return terms[0].(map[string]any)["matchFields"].([]any)[0].(map[string]any)["values"].([]any)[0].(string)
}
