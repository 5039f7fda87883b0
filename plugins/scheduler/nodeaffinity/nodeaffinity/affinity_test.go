package nodeaffinity

import (
	"encoding/json"
	"strconv"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8saffinity "k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/cluster"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// testNodes is a small cluster with varied labels.
func testNodes() []v1.Node {
	labels := []map[string]string{
		{"zone": "a", "disktype": "ssd", "cores": "8"},
		{"zone": "b", "disktype": "hdd", "cores": "4"},
		{"zone": "c", "cores": "16", "gpu": "true"},
		{"zone": "a", "gpu": "true", "cores": "x"},
		{},
		{"zone": "b", "disktype": "ssd", "cores": "32", "kubernetes.io/hostname": "n5"},
	}
	nodes := make([]v1.Node, len(labels))
	for i, l := range labels {
		nodes[i] = v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n" + strconv.Itoa(i), Labels: l}}
	}
	return nodes
}

// podSpecs are pod specs (JSON) exercising every operator and shape.
var podSpecs = []string{
	`{}`,
	`{"nodeSelector": {"disktype": "ssd"}}`,
	`{"nodeSelector": {"disktype": "ssd", "zone": "b"}}`,
	`{"nodeSelector": {"nothing": "here"}}`,
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "c"]}]}]}}}}`,
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}}`,
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]}}}}`,
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]}}}}`,
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["6"]}]}]}}}}`,
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["16"]}]}]}}}}`,
	// Two terms are ORed, two expressions ANDed.
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}, {"key": "gpu", "operator": "Exists"}]},
		{"matchExpressions": [{"key": "disktype", "operator": "In", "values": ["hdd"]}]}]}}}}`,
	// matchFields on the node name, alone and with expressions.
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}`,
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n2"]}],
		 "matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]}}}}`,
	// nodeSelector and affinity must both hold.
	`{"nodeSelector": {"zone": "a"}, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchExpressions": [{"key": "disktype", "operator": "In", "values": ["ssd"]}]}]}}}}`,
	// An empty term matches nothing; an invalid term matches nothing but the
	// other terms still count.
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}}`,
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
		{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["x"]}]},
		{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}}}`,
	`{"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}`,
	// Only preferred: no constraint.
	`{"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
		{"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}}`,
}

// TestRequiredMatchesComponentHelpers compares the direct and the indexed
// evaluation with k8s.io/component-helpers' RequiredNodeAffinity on every
// pod spec and node.
func TestRequiredMatchesComponentHelpers(t *testing.T) {
	nodes := testNodes()
	s := cluster.New()
	for i := range nodes {
		s.SetNode(i, nodes[i].Name, selector.MakeLabels(nodes[i].Labels))
	}
	for pi, js := range podSpecs {
		var spec v1.PodSpec
		if err := json.Unmarshal([]byte(js), &spec); err != nil {
			t.Fatalf("spec %d: %v", pi, err)
		}
		want := k8saffinity.GetRequiredNodeAffinity(&v1.Pod{Spec: spec})
		aff, _ := rawjson.Value(js).Get("affinity")
		r, err := ParseRequired(spec.NodeSelector, aff)
		if err != nil {
			t.Fatalf("spec %d: %v", pi, err)
		}
		var set cluster.Bits
		r.Nodes(s, &set)
		for i := range nodes {
			w, _ := want.Match(&nodes[i])
			if got := r.Matches(nodes[i].Name, selector.MakeLabels(nodes[i].Labels)); got != w {
				t.Errorf("spec %d node %s: Matches = %v, component-helpers %v", pi, nodes[i].Name, got, w)
			}
			if got := set.Has(i); got != w {
				t.Errorf("spec %d node %s: Nodes has = %v, component-helpers %v", pi, nodes[i].Name, got, w)
			}
		}
	}
}

func TestPreferredMatchesComponentHelpers(t *testing.T) {
	const prefs = `[
		{"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
		{"weight": 3, "preference": {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["6"]}]}},
		{"weight": 0, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}},
		{"weight": 7, "preference": {}},
		{"weight": 2, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n4"]}]}}]`
	var terms []v1.PreferredSchedulingTerm
	if err := json.Unmarshal([]byte(prefs), &terms); err != nil {
		t.Fatal(err)
	}
	want, err := k8saffinity.NewPreferredSchedulingTerms(terms)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePreferred(rawjson.Value(prefs))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range testNodes() {
		if g, w := got.Score(n.Name, selector.MakeLabels(n.Labels)), want.Score(&n); g != w {
			t.Errorf("node %s: score %d, component-helpers %d", n.Name, g, w)
		}
	}
}
