package interpodaffinity

import (
	"encoding/json"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
)

// This file checks the plugin's incremental indexes against a direct
// transcription of kube-scheduler's InterPodAffinity (PreFilter/Filter,
// PreScore/Score/NormalizeScore), which rescans every pod for every
// incoming pod, on random clusters that change between pods.

type refTerm struct {
	namespaces  sets.Set[string]
	nsSelector  labels.Selector
	selector    labels.Selector
	topologyKey string
	weight      int64
}

func (t *refTerm) matches(p *corev1.Pod) bool {
	nsLabels := labels.Set{nsNameLabel: p.Namespace}
	if t.namespaces.Has(p.Namespace) || t.nsSelector.Matches(nsLabels) {
		return t.selector.Matches(labels.Set(p.Labels))
	}
	return false
}

func refTerms(t *testing.T, owner *corev1.Pod, terms []corev1.PodAffinityTerm, weights []int32) []refTerm {
	t.Helper()
	var out []refTerm
	for i, term := range terms {
		sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
		if err != nil {
			t.Fatal(err)
		}
		ns := sets.New(term.Namespaces...)
		nsSel := labels.Nothing()
		if term.NamespaceSelector != nil {
			if nsSel, err = metav1.LabelSelectorAsSelector(term.NamespaceSelector); err != nil {
				t.Fatal(err)
			}
		}
		if len(term.Namespaces) == 0 && term.NamespaceSelector == nil {
			ns.Insert(owner.Namespace)
		}
		rt := refTerm{namespaces: ns, nsSelector: nsSel, selector: sel, topologyKey: term.TopologyKey}
		if weights != nil {
			rt.weight = int64(weights[i])
		}
		out = append(out, rt)
	}
	return out
}

type refPod struct {
	pod                                *corev1.Pod
	node                               string
	reqAff, reqAnti, prefAff, prefAnti []refTerm
}

func newRefPod(t *testing.T, p *corev1.Pod) *refPod {
	r := &refPod{pod: p, node: p.Spec.NodeName}
	a := p.Spec.Affinity
	if a == nil {
		return r
	}
	weighted := func(ws []corev1.WeightedPodAffinityTerm) ([]corev1.PodAffinityTerm, []int32) {
		var ts []corev1.PodAffinityTerm
		var w []int32
		for _, x := range ws {
			ts = append(ts, x.PodAffinityTerm)
			w = append(w, x.Weight)
		}
		return ts, w
	}
	if a.PodAffinity != nil {
		r.reqAff = refTerms(t, p, a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, nil)
		ts, w := weighted(a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
		r.prefAff = refTerms(t, p, ts, w)
	}
	if a.PodAntiAffinity != nil {
		r.reqAnti = refTerms(t, p, a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, nil)
		ts, w := weighted(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
		r.prefAnti = refTerms(t, p, ts, w)
	}
	return r
}

type pair struct{ key, value string }

// refFilter is kube-scheduler's PreFilter + Filter over all nodes.
func refFilter(nodes map[string]map[string]string, pods []*refPod, in *refPod) map[string]string {
	existingAnti := map[pair]int{}
	affCounts := map[pair]int{}
	antiCounts := map[pair]int{}
	allMatch := func(terms []refTerm, p *corev1.Pod) bool {
		if len(terms) == 0 {
			return false
		}
		for i := range terms {
			if !terms[i].matches(p) {
				return false
			}
		}
		return true
	}
	for _, ep := range pods {
		nl := nodes[ep.node]
		for i := range ep.reqAnti {
			if ep.reqAnti[i].matches(in.pod) {
				if v, ok := nl[ep.reqAnti[i].topologyKey]; ok {
					existingAnti[pair{ep.reqAnti[i].topologyKey, v}]++
				}
			}
		}
		if allMatch(in.reqAff, ep.pod) {
			for _, term := range in.reqAff {
				if v, ok := nl[term.topologyKey]; ok {
					affCounts[pair{term.topologyKey, v}]++
				}
			}
		}
		for _, term := range in.reqAnti {
			if term.matches(ep.pod) {
				if v, ok := nl[term.topologyKey]; ok {
					antiCounts[pair{term.topologyKey, v}]++
				}
			}
		}
	}
	out := map[string]string{}
	for name, nl := range nodes {
		podsExist, ok := true, true
		for _, term := range in.reqAff {
			v, has := nl[term.topologyKey]
			if !has {
				ok = false
				break
			}
			if affCounts[pair{term.topologyKey, v}] <= 0 {
				podsExist = false
			}
		}
		if ok && !podsExist {
			ok = len(affCounts) == 0 && allMatch(in.reqAff, in.pod)
		}
		if !ok {
			out[name] = ReasonAffinity
			continue
		}
		for _, term := range in.reqAnti {
			if v, has := nl[term.topologyKey]; has && antiCounts[pair{term.topologyKey, v}] > 0 {
				out[name] = ReasonAntiAffinity
				break
			}
		}
		if out[name] != "" {
			continue
		}
		for k, v := range nl {
			if existingAnti[pair{k, v}] > 0 {
				out[name] = ReasonExistingAntiRule
				break
			}
		}
	}
	return out
}

// refScore is kube-scheduler's PreScore + Score + NormalizeScore
// (hardPodAffinityWeight 1) over the candidates.
func refScore(nodes map[string]map[string]string, pods []*refPod, in *refPod, cands []string) map[string]int64 {
	topo := map[pair]int64{}
	add := func(term *refTerm, w int64, p *corev1.Pod, nl map[string]string) {
		if term.matches(p) {
			if v, ok := nl[term.topologyKey]; ok {
				topo[pair{term.topologyKey, v}] += w
			}
		}
	}
	for _, ep := range pods {
		nl := nodes[ep.node]
		if len(nl) == 0 {
			continue
		}
		for i := range in.prefAff {
			add(&in.prefAff[i], in.prefAff[i].weight, ep.pod, nl)
		}
		for i := range in.prefAnti {
			add(&in.prefAnti[i], -in.prefAnti[i].weight, ep.pod, nl)
		}
		for i := range ep.reqAff {
			add(&ep.reqAff[i], 1, in.pod, nl)
		}
		for i := range ep.prefAff {
			add(&ep.prefAff[i], ep.prefAff[i].weight, in.pod, nl)
		}
		for i := range ep.prefAnti {
			add(&ep.prefAnti[i], -ep.prefAnti[i].weight, in.pod, nl)
		}
	}
	raw := map[string]int64{}
	lo, hi := int64(math.MaxInt64), int64(-math.MaxInt64)
	for _, n := range cands {
		var s int64
		for k, v := range nodes[n] {
			s += topo[pair{k, v}]
		}
		raw[n] = s
		lo, hi = min(lo, s), max(hi, s)
	}
	out := map[string]int64{}
	for _, n := range cands {
		if hi-lo > 0 {
			out[n] = int64(100 * (float64(raw[n]-lo) / float64(hi-lo)))
		} else {
			out[n] = 0
		}
	}
	return out
}

// randomPod makes a pod with random labels and random (anti-)affinity.
func randomPod(r *rand.Rand, name string) *corev1.Pod {
	apps := []string{"web", "db", "cache"}
	keys := []string{"zone", "rack", corev1.LabelHostname}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: []string{"default", "default", "prod"}[r.IntN(3)],
		Labels: map[string]string{"app": apps[r.IntN(3)]}}}
	if r.IntN(2) == 0 {
		p.Labels["tier"] = []string{"a", "b"}[r.IntN(2)]
	}
	term := func() corev1.PodAffinityTerm {
		t := corev1.PodAffinityTerm{TopologyKey: keys[r.IntN(3)],
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": apps[r.IntN(3)]}}}
		switch r.IntN(5) {
		case 0:
			t.Namespaces = []string{"prod"}
		case 1:
			t.NamespaceSelector = &metav1.LabelSelector{}
		case 2:
			t.LabelSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "tier", Operator: metav1.LabelSelectorOpExists}}}
		}
		return t
	}
	if r.IntN(3) == 0 {
		return p
	}
	a := &corev1.Affinity{PodAffinity: &corev1.PodAffinity{}, PodAntiAffinity: &corev1.PodAntiAffinity{}}
	for range r.IntN(2) {
		a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, term())
	}
	for range r.IntN(2) {
		a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, term())
	}
	for range r.IntN(3) {
		a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.WeightedPodAffinityTerm{Weight: int32(1 + r.IntN(100)), PodAffinityTerm: term()})
	}
	for range r.IntN(2) {
		a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.WeightedPodAffinityTerm{Weight: int32(1 + r.IntN(100)), PodAffinityTerm: term()})
	}
	p.Spec.Affinity = a
	return p
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMatchesReference compares Filter and Score with the reference on
// random clusters: pods are bound and deleted, and nodes relabelled,
// added and removed between incoming pods, so the incremental indexes
// (groups, cached counters, topology tables) are exercised.
func TestMatchesReference(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run("seed"+strconv.FormatUint(seed, 10), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			h := schedtest.New()
			mod := newModule(t, "")
			nodes := map[string]map[string]string{}
			setNode := func(name string) {
				l := map[string]string{corev1.LabelHostname: name}
				if r.IntN(6) > 0 {
					l["zone"] = "z" + strconv.Itoa(r.IntN(3))
				}
				if r.IntN(3) > 0 {
					l["rack"] = "r" + strconv.Itoa(r.IntN(4))
				}
				nodes[name] = l
				h.SetNode(t, toJSON(t, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}))
			}
			for i := range 8 {
				setNode("n" + strconv.Itoa(i))
			}
			var pods []*refPod
			var rejections, scored int
			defer func() {
				// The random clusters must exercise both outcomes.
				if rejections == 0 || scored == 0 {
					t.Errorf("degenerate run: %d rejections, %d non-zero scores", rejections, scored)
				}
			}()
			for step := range 60 {
				in := newRefPod(t, randomPod(r, "in-"+strconv.Itoa(step)))
				a := h.Pod(t, toJSON(t, in.pod))
				got := map[string]string{}
				for n, rs := range a.Filter(t, mod) {
					got[n] = rs[0]
				}
				rejections += len(got)
				if want := refFilter(nodes, pods, in); !maps.Equal(got, want) {
					t.Fatalf("step %d: filter %v, reference %v\npod %s", step, got, want, toJSON(t, in.pod))
				}
				cands := slices.Sorted(maps.Keys(nodes))
				gotS := a.Score(t, mod)
				if want := refScore(nodes, pods, in, cands); !maps.Equal(gotS, want) {
					t.Fatalf("step %d: score %v, reference %v\npod %s", step, gotS, want, toJSON(t, in.pod))
				}
				for _, s := range gotS {
					if s != 0 {
						scored++
					}
				}
				// Change the cluster.
				switch op := r.IntN(10); {
				case op < 6 && len(nodes) > 0: // bind the pod somewhere
					in.node = cands[r.IntN(len(cands))]
					in.pod.Spec.NodeName = in.node
					h.AddPod(t, toJSON(t, in.pod))
					pods = append(pods, in)
				case op < 8 && len(pods) > 0: // delete a pod
					k := r.IntN(len(pods))
					h.RemovePod(pods[k].pod.Namespace, pods[k].pod.Name)
					pods = slices.Delete(pods, k, k+1)
				case op < 9: // relabel or add a node
					setNode("n" + strconv.Itoa(r.IntN(10)))
				default: // remove a node and its pods
					name := "n" + strconv.Itoa(r.IntN(10))
					if _, ok := nodes[name]; ok && len(nodes) > 2 {
						h.RemoveNode(name)
						delete(nodes, name)
						// Its pods stay (as in kube-scheduler's cache) and come
						// back if a node of that name returns.
					}
				}
				if r.IntN(15) == 0 {
					h.Forget(mod) // the next call resends the full table
				}
			}
		})
	}
}
