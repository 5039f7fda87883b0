package nodeaffinity

import (
	"encoding/json"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8saffinity "k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
)

func randomRequirement(r *rand.Rand) corev1.NodeSelectorRequirement {
	keys := []string{"zone", "disk", "cores"}
	req := corev1.NodeSelectorRequirement{Key: keys[r.IntN(3)]}
	switch r.IntN(6) {
	case 0:
		req.Operator, req.Values = corev1.NodeSelectorOpIn, []string{"a", "b", "4"}[:1+r.IntN(3)]
	case 1:
		req.Operator, req.Values = corev1.NodeSelectorOpNotIn, []string{"a", "8"}[:1+r.IntN(2)]
	case 2:
		req.Operator = corev1.NodeSelectorOpExists
	case 3:
		req.Operator = corev1.NodeSelectorOpDoesNotExist
	case 4:
		req.Operator, req.Values = corev1.NodeSelectorOpGt, []string{strconv.Itoa(r.IntN(10))}
	default:
		req.Operator, req.Values = corev1.NodeSelectorOpLt, []string{strconv.Itoa(r.IntN(10))}
	}
	return req
}

func randomTerm(r *rand.Rand) corev1.NodeSelectorTerm {
	var t corev1.NodeSelectorTerm
	for range r.IntN(3) {
		t.MatchExpressions = append(t.MatchExpressions, randomRequirement(r))
	}
	if r.IntN(4) == 0 {
		op := []corev1.NodeSelectorOperator{corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn}[r.IntN(2)]
		t.MatchFields = []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: op, Values: []string{"n" + strconv.Itoa(r.IntN(6))}}}
	}
	return t
}

func randomPod(r *rand.Rand, name string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	if r.IntN(3) == 0 {
		p.Spec.NodeSelector = map[string]string{"zone": []string{"a", "b"}[r.IntN(2)]}
	}
	na := &corev1.NodeAffinity{}
	if r.IntN(2) == 0 {
		ns := &corev1.NodeSelector{}
		for range r.IntN(3) {
			ns.NodeSelectorTerms = append(ns.NodeSelectorTerms, randomTerm(r))
		}
		na.RequiredDuringSchedulingIgnoredDuringExecution = ns
	}
	for range r.IntN(3) {
		na.PreferredDuringSchedulingIgnoredDuringExecution = append(na.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.PreferredSchedulingTerm{Weight: int32(r.IntN(20)), Preference: randomTerm(r)})
	}
	p.Spec.Affinity = &corev1.Affinity{NodeAffinity: na}
	return p
}

// TestMatchesReference compares Filter and Score with
// k8s.io/component-helpers on random nodes and pods, relabelling, adding
// and removing nodes between pods so the index and the cached node sets
// must follow.
func TestMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	h := schedtest.New()
	mod := newModule(t, "")
	nodes := map[string]*corev1.Node{}
	setNode := func(name string) {
		l := map[string]string{}
		for _, k := range []string{"zone", "disk", "cores"} {
			if r.IntN(4) > 0 {
				l[k] = []string{"a", "b", "4", "8", "x"}[r.IntN(5)]
			}
		}
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
		nodes[name] = n
		b, _ := json.Marshal(n)
		h.SetNode(t, string(b))
	}
	for i := range 6 {
		setNode("n" + strconv.Itoa(i))
	}
	rejections, scored := 0, 0
	for step := range 300 {
		p := randomPod(r, "p"+strconv.Itoa(step))
		b, _ := json.Marshal(p)
		a := h.Pod(t, string(b))
		got := map[string]string{}
		for n, rs := range a.Filter(t, mod) {
			got[n] = rs[0]
		}
		want := map[string]string{}
		req := k8saffinity.GetRequiredNodeAffinity(p)
		for name, n := range nodes {
			if ok, _ := req.Match(n); !ok {
				want[name] = ReasonPod
			}
		}
		if !maps.Equal(got, want) {
			t.Fatalf("step %d: filter %v, component-helpers %v\npod %s", step, got, want, b)
		}
		rejections += len(got)
		// Preferred terms; component-helpers refuses invalid ones (the
		// plugin drops them), so compare only valid sets.
		if pref, err := k8saffinity.NewPreferredSchedulingTerms(p.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution); err == nil {
			names := slices.Sorted(maps.Keys(nodes))
			raw := make([]int64, len(names))
			var hi int64
			for i, name := range names {
				raw[i] = pref.Score(nodes[name])
				hi = max(hi, raw[i])
			}
			wantS := map[string]int64{}
			for i, name := range names {
				if hi > 0 {
					wantS[name] = 100 * raw[i] / hi
				} else {
					wantS[name] = 0
				}
			}
			gotS := a.Score(t, mod)
			if !maps.Equal(gotS, wantS) {
				t.Fatalf("step %d: score %v, component-helpers %v\npod %s", step, gotS, wantS, b)
			}
			if hi > 0 {
				scored++
			}
		}
		switch op := r.IntN(6); {
		case op < 3:
			setNode("n" + strconv.Itoa(r.IntN(8)))
		case op < 4:
			name := "n" + strconv.Itoa(r.IntN(8))
			if _, ok := nodes[name]; ok && len(nodes) > 2 {
				h.RemoveNode(name)
				delete(nodes, name)
			}
		}
	}
	if rejections == 0 || scored == 0 {
		t.Fatalf("degenerate run: %d rejections, %d scored pods", rejections, scored)
	}
}
