package podtopologyspread

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
	k8saffinity "k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
)

// This file checks the plugin against a direct transcription of
// kube-scheduler's PodTopologySpread (calPreFilterState/Filter,
// initPreScoreState/PreScore/Score/NormalizeScore with node inclusion
// policies), which recounts every pod per incoming pod, on random
// clusters that change between pods.

type refConstraint struct {
	maxSkew, minDomains       int
	key                       string
	hard                      bool
	sel                       labels.Selector
	honorAffinity, honorTaint bool
}

func refConstraints(t *testing.T, p *corev1.Pod, hard bool) []refConstraint {
	t.Helper()
	var out []refConstraint
	for _, c := range p.Spec.TopologySpreadConstraints {
		if (c.WhenUnsatisfiable == corev1.DoNotSchedule) != hard {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.MatchLabelKeys) > 0 {
			reqs := labels.Set{}
			for _, k := range c.MatchLabelKeys {
				if v, ok := p.Labels[k]; ok {
					reqs[k] = v
				}
			}
			r, _ := labels.SelectorFromSet(reqs).Requirements()
			sel = sel.Add(r...)
		}
		rc := refConstraint{maxSkew: int(c.MaxSkew), key: c.TopologyKey, hard: hard, sel: sel,
			honorAffinity: c.NodeAffinityPolicy == nil || *c.NodeAffinityPolicy == corev1.NodeInclusionPolicyHonor,
			honorTaint:    c.NodeTaintsPolicy != nil && *c.NodeTaintsPolicy == corev1.NodeInclusionPolicyHonor}
		if c.MinDomains != nil {
			rc.minDomains = int(*c.MinDomains)
		}
		out = append(out, rc)
	}
	return out
}

func tolerated(p *corev1.Pod, n *corev1.Node) bool {
	for _, taint := range n.Spec.Taints {
		if taint.Effect != corev1.TaintEffectNoSchedule && taint.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		ok := false
		for _, tol := range p.Spec.Tolerations {
			if tol.ToleratesTaint(klog.Background(), &taint, false) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (c *refConstraint) includes(p *corev1.Pod, n *corev1.Node) bool {
	if c.honorAffinity {
		if ok, _ := k8saffinity.GetRequiredNodeAffinity(p).Match(n); !ok {
			return false
		}
	}
	return !c.honorTaint || tolerated(p, n)
}

func hasAll(n *corev1.Node, cs []refConstraint) bool {
	for _, c := range cs {
		if _, ok := n.Labels[c.key]; !ok {
			return false
		}
	}
	return true
}

func countMatching(pods []*corev1.Pod, node string, sel labels.Selector, ns string) int {
	if sel.Empty() {
		return 0
	}
	n := 0
	for _, p := range pods {
		if p.Spec.NodeName == node && p.DeletionTimestamp == nil && p.Namespace == ns && sel.Matches(labels.Set(p.Labels)) {
			n++
		}
	}
	return n
}

func refFilter(t *testing.T, nodes map[string]*corev1.Node, pods []*corev1.Pod, in *corev1.Pod) map[string]string {
	cs := refConstraints(t, in, true)
	out := map[string]string{}
	if len(cs) == 0 {
		return out
	}
	tp := make([]map[string]int, len(cs))
	for i := range tp {
		tp[i] = map[string]int{}
	}
	for name, n := range nodes {
		if !hasAll(n, cs) {
			continue
		}
		for i, c := range cs {
			if !c.includes(in, n) {
				continue
			}
			tp[i][n.Labels[c.key]] += countMatching(pods, name, c.sel, in.Namespace)
		}
	}
	for name, n := range nodes {
		for i, c := range cs {
			v, ok := n.Labels[c.key]
			if !ok {
				out[name] = ReasonNodeLabelNotMatch
				break
			}
			minMatch := math.MaxInt32
			for _, cnt := range tp[i] {
				minMatch = min(minMatch, cnt)
			}
			if len(tp[i]) < c.minDomains {
				minMatch = 0
			}
			self := 0
			if c.sel.Matches(labels.Set(in.Labels)) {
				self = 1
			}
			if tp[i][v]+self-minMatch > c.maxSkew {
				out[name] = ReasonConstraintsNotMatch
				break
			}
		}
	}
	return out
}

func refScore(t *testing.T, nodes map[string]*corev1.Node, pods []*corev1.Pod, in *corev1.Pod, cands []string) map[string]int64 {
	cs := refConstraints(t, in, false)
	out := map[string]int64{}
	for _, n := range cands {
		out[n] = 0
	}
	if len(cs) == 0 {
		return out
	}
	ignored := map[string]bool{}
	counts := make([]map[string]int64, len(cs))
	size := make([]int, len(cs))
	for i := range cs {
		counts[i] = map[string]int64{}
	}
	for _, name := range cands {
		n := nodes[name]
		if !hasAll(n, cs) {
			ignored[name] = true
			continue
		}
		for i, c := range cs {
			if c.key == corev1.LabelHostname {
				continue
			}
			if _, ok := counts[i][n.Labels[c.key]]; !ok {
				counts[i][n.Labels[c.key]] = 0
				size[i]++
			}
		}
	}
	weight := make([]float64, len(cs))
	for i, c := range cs {
		sz := size[i]
		if c.key == corev1.LabelHostname {
			sz = len(cands) - len(ignored)
		}
		weight[i] = math.Log(float64(sz + 2))
	}
	for name, n := range nodes {
		if !hasAll(n, cs) {
			continue
		}
		for i, c := range cs {
			if !c.includes(in, n) {
				continue
			}
			v := n.Labels[c.key]
			if _, ok := counts[i][v]; !ok {
				continue
			}
			counts[i][v] += int64(countMatching(pods, name, c.sel, in.Namespace))
		}
	}
	raw := map[string]int64{}
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, name := range cands {
		if ignored[name] {
			continue
		}
		var s float64
		for i, c := range cs {
			var cnt int64
			if c.key == corev1.LabelHostname {
				cnt = int64(countMatching(pods, name, c.sel, in.Namespace))
			} else {
				cnt = counts[i][nodes[name].Labels[c.key]]
			}
			s += float64(cnt)*weight[i] + float64(c.maxSkew-1)
		}
		raw[name] = int64(math.Round(s))
		lo, hi = min(lo, raw[name]), max(hi, raw[name])
	}
	for _, name := range cands {
		switch {
		case ignored[name]:
			out[name] = 0
		case hi == 0:
			out[name] = 100
		default:
			out[name] = 100 * (hi + lo - raw[name]) / hi
		}
	}
	return out
}

func randomPod(r *rand.Rand, name string) *corev1.Pod {
	apps := []string{"web", "db"}
	keys := []string{"zone", "rack", corev1.LabelHostname}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: []string{"default", "default", "prod"}[r.IntN(3)],
		Labels: map[string]string{"app": apps[r.IntN(2)], "rev": strconv.Itoa(r.IntN(2))}}}
	if r.IntN(8) == 0 {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	if r.IntN(3) == 0 {
		p.Spec.NodeSelector = map[string]string{"zone": "z" + strconv.Itoa(r.IntN(3))}
	}
	if r.IntN(3) == 0 {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}
	}
	for range r.IntN(3) {
		c := corev1.TopologySpreadConstraint{
			MaxSkew: int32(1 + r.IntN(2)), TopologyKey: keys[r.IntN(3)],
			WhenUnsatisfiable: []corev1.UnsatisfiableConstraintAction{corev1.DoNotSchedule, corev1.ScheduleAnyway}[r.IntN(2)],
			LabelSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": apps[r.IntN(2)]}},
		}
		if r.IntN(4) == 0 {
			c.LabelSelector = &metav1.LabelSelector{}
		}
		if r.IntN(4) == 0 {
			c.MatchLabelKeys = []string{"rev"}
		}
		if r.IntN(4) == 0 && c.WhenUnsatisfiable == corev1.DoNotSchedule {
			md := int32(2 + r.IntN(3))
			c.MinDomains = &md
		}
		if r.IntN(3) == 0 {
			pol := corev1.NodeInclusionPolicyIgnore
			c.NodeAffinityPolicy = &pol
		}
		if r.IntN(3) == 0 {
			pol := corev1.NodeInclusionPolicyHonor
			c.NodeTaintsPolicy = &pol
		}
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, c)
	}
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
// random clusters that change between pods.
func TestMatchesReference(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run("seed"+strconv.FormatUint(seed, 10), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 11))
			h := schedtest.New()
			mod := newModule(t)
			nodes := map[string]*corev1.Node{}
			setNode := func(name string) {
				n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
				if r.IntN(6) > 0 {
					n.Labels["zone"] = "z" + strconv.Itoa(r.IntN(3))
				}
				if r.IntN(3) > 0 {
					n.Labels["rack"] = "r" + strconv.Itoa(r.IntN(4))
				}
				if r.IntN(5) == 0 {
					n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule}}
				}
				nodes[name] = n
				h.SetNode(t, toJSON(t, n))
			}
			for i := range 8 {
				setNode("n" + strconv.Itoa(i))
			}
			var pods []*corev1.Pod
			var rejections, scored int
			defer func() {
				if rejections == 0 || scored == 0 {
					t.Errorf("degenerate run: %d rejections, %d non-zero scores", rejections, scored)
				}
			}()
			for step := range 80 {
				in := randomPod(r, "in-"+strconv.Itoa(step))
				a := h.Pod(t, toJSON(t, in))
				got := map[string]string{}
				for n, rs := range a.Filter(t, mod) {
					got[n] = rs[0]
				}
				rejections += len(got)
				if want := refFilter(t, nodes, pods, in); !maps.Equal(got, want) {
					t.Fatalf("step %d: filter %v, reference %v\npod %s", step, got, want, toJSON(t, in))
				}
				cands := slices.Sorted(maps.Keys(nodes))
				gotS := a.Score(t, mod)
				if want := refScore(t, nodes, pods, in, cands); !maps.Equal(gotS, want) {
					t.Fatalf("step %d: score %v, reference %v\npod %s", step, gotS, want, toJSON(t, in))
				}
				for _, s := range gotS {
					if s != 0 && s != 100 {
						scored++
					}
				}
				switch op := r.IntN(10); {
				case op < 6:
					in.Spec.NodeName = cands[r.IntN(len(cands))]
					h.AddPod(t, toJSON(t, in))
					pods = append(pods, in)
				case op < 8 && len(pods) > 0:
					k := r.IntN(len(pods))
					h.RemovePod(pods[k].Namespace, pods[k].Name)
					pods = slices.Delete(pods, k, k+1)
				case op < 9:
					setNode("n" + strconv.Itoa(r.IntN(10)))
				default:
					name := "n" + strconv.Itoa(r.IntN(10))
					if _, ok := nodes[name]; ok && len(nodes) > 2 {
						h.RemoveNode(name)
						delete(nodes, name)
						// Its pods stay (as in kube-scheduler's cache) and come
						// back if a node of that name returns.
					}
				}
				if r.IntN(15) == 0 {
					h.Forget(mod)
				}
			}
		})
	}
}
