package scheduler

import (
	"context"
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

func prioPod(name, node string, prio int32, created time.Time) *corev1.Pod {
	p := testPod(name, node)
	p.Spec.Priority = &prio
	p.CreationTimestamp = metav1.NewTime(created)
	return p
}

// TestPreempt: victims are the fewest pods of lower priority whose removal
// lets the pod fit (lowest priority given up first), on the node chosen by
// kube-scheduler's criteria; the snapshot and the plugins' tables are
// unchanged afterwards.
func TestPreempt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type bound struct {
		name, node string
		prio       int32
		age        int // minutes after t0
	}
	for _, tc := range []struct {
		name    string
		pods    []bound
		prio    int32
		node    string
		victims []string
	}{
		{
			name: "lowest most important victim wins",
			pods: []bound{{"a1", "a", 5, 0}, {"a2", "a", 1, 1}, {"b1", "b", 10, 0}, {"b2", "b", 10, 1}},
			prio: 20, node: "a", victims: []string{"a2"},
		},
		{
			name: "equal top priority: smaller sum",
			pods: []bound{{"a1", "a", 2, 0}, {"a2", "a", 2, 1}, {"a3", "a", 9, 2}, {"b1", "b", 2, 0}, {"b2", "b", 9, 1}},
			prio: 20, node: "b", victims: []string{"b1"},
		},
		{
			name: "only pods of lower priority are victims",
			pods: []bound{{"a1", "a", 50, 0}, {"a2", "a", 50, 1}, {"b1", "b", 50, 0}, {"b2", "b", 1, 1}},
			prio: 20, node: "b", victims: []string{"b2"},
		},
		{
			name: "nothing of lower priority",
			pods: []bound{{"a1", "a", 50, 0}, {"a2", "a", 50, 1}, {"b1", "b", 20, 0}, {"b2", "b", 20, 1}},
			prio: 20,
		},
		{
			name: "equal priorities: the most recently started victim",
			pods: []bound{{"a1", "a", 1, 0}, {"a2", "a", 1, 1}, {"b1", "b", 1, 2}, {"b2", "b", 1, 3}},
			prio: 20, node: "b", victims: []string{"b2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapshotWith("a", "b")
			for _, b := range tc.pods {
				snap.SetPod(prioPod(b.name, b.node, b.prio, t0.Add(time.Duration(b.age)*time.Minute)))
			}
			fake := newFake("fake", 2)
			prof := mustProfile(t, PluginConfig{Plugin: fake, Filter: true, Score: true})
			ctx := context.Background()
			pod := prioPod("high", "", tc.prio, t0)
			res, err := prof.Schedule(ctx, snap, pod, Options{})
			if err != nil || res.Node != "" {
				t.Fatalf("schedule: node %q, %v; want no fit", res.Node, err)
			}
			before := maps.Clone(fake.counts())
			pre, err := prof.Preempt(ctx, snap, pod, &res)
			if err != nil {
				t.Fatal(err)
			}
			var victims []string
			for _, v := range pre.Victims {
				victims = append(victims, v.Name)
			}
			if pre.Node != tc.node || !equalStrings(victims, tc.victims) {
				t.Fatalf("preemption on %q of %v, want %q of %v", pre.Node, victims, tc.node, tc.victims)
			}
			// The what-if changes are undone: the plugin's table, brought
			// up to date, is as before.
			if _, err := prof.Schedule(ctx, snap, prioPod("probe", "", 0, t0), Options{}); err != nil {
				t.Fatal(err)
			}
			if after := fake.counts(); !maps.Equal(after, before) {
				t.Errorf("plugin's table after preemption %v, want %v", after, before)
			}
			for _, b := range tc.pods {
				if got := snap.PodNode("default", b.name); got != b.node {
					t.Errorf("pod %s on %q after preemption, want %q", b.name, got, b.node)
				}
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReserveNominated: while a pod that preempted waits for its victims
// to go, pods of lower priority see it on its nominated node (the room is
// reserved), as do pods of equal priority (kube-scheduler's rule); pods of
// higher priority, and the pod itself, do not.
func TestReserveNominated(t *testing.T) {
	s, err := New(Config{Client: &rest.Config{Host: "http://127.0.0.1:1"}, Profiles: []*Profile{mustProfile(t)}})
	if err != nil {
		t.Fatal(err)
	}
	s.snap = snapshotWith("a", "b")
	t0 := time.Now()
	high := prioPod("high", "", 100, t0)
	s.nominated[podKey{"default", "high"}] = nomination{pod: high, node: "a"}
	fake := newFake("fake", 1)
	prof := mustProfile(t, PluginConfig{Plugin: fake, Filter: true, Score: true})
	ctx := context.Background()
	for _, tc := range []struct {
		pod      *corev1.Pod
		reserved bool
	}{
		{prioPod("mid", "", 50, t0), true},
		{prioPod("peer", "", 100, t0), true},
		{prioPod("higher", "", 150, t0), false},
		{high, false},
	} {
		keys := s.reserve(tc.pod)
		res, err := prof.Schedule(ctx, s.snap, tc.pod, Options{AllNodes: true, Trace: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			s.snap.RemovePod(k.namespace, k.name)
		}
		_, rejected := res.Reasons["a"]
		if rejected != tc.reserved || (len(keys) == 1) != tc.reserved {
			t.Errorf("%s: node a rejected %v (reserved %v), want %v", tc.pod.Name, rejected, keys, tc.reserved)
		}
		if s.snap.PodNode("default", "high") != "" {
			t.Fatalf("%s: the reservation stayed in the snapshot", tc.pod.Name)
		}
	}
}

// TestPreemptSkipsUnresolvable: nodes a filter rejected with unresolvable
// reasons (RejectUnresolvable) are not tried: no what-if call for them.
func TestPreemptSkipsUnresolvable(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	snap := snapshotWith("a", "b")
	snap.SetPod(prioPod("low-a", "a", 1, t0))
	snap.SetPod(prioPod("low-b", "b", 1, t0))
	fake := newFake("fake", 1, "a")
	prof := mustProfile(t, PluginConfig{Plugin: fake, Filter: true, Score: true})
	ctx := context.Background()
	pod := prioPod("high", "", 100, t0)
	res, err := prof.Schedule(ctx, snap, pod, Options{})
	if err != nil || res.Node != "" {
		t.Fatalf("schedule: %q, %v", res.Node, err)
	}
	if !res.unresolvable[snap.byName["a"].index] || res.unresolvable[snap.byName["b"].index] {
		t.Fatalf("unresolvable nodes %v, want a only", res.unresolvable)
	}
	calls := func(r *Result) (Preemption, int) {
		before := fake.calls
		pre, err := prof.Preempt(ctx, snap, pod, r)
		if err != nil {
			t.Fatal(err)
		}
		return pre, fake.calls - before
	}
	with, n := calls(&res)
	without, m := calls(nil)
	if with.Node != "b" || without.Node != "b" || with.Candidates != 1 {
		t.Fatalf("preemption on %q (%d candidates) / %q, want b", with.Node, with.Candidates, without.Node)
	}
	if n >= m {
		t.Errorf("%d plugin calls skipping a, %d trying it: a was tried", n, m)
	}
}
