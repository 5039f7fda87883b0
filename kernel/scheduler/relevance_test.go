package scheduler

import (
	"context"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// relevantFake is a fakePlugin that declares a relevance.
type relevantFake struct {
	*fakePlugin
	filterWhen, scoreWhen uint64
}

func (f relevantFake) Relevance() (filter, score uint64) { return f.filterWhen, f.scoreWhen }

func TestRelevant(t *testing.T) {
	tests := []struct {
		name        string
		when, facts uint64
		want        bool
	}{
		{"always", 0, 0, true},
		{"fact holds", hostapi.SchedWhenPodNodeSelector | hostapi.SchedWhenNodeTaints, hostapi.SchedWhenNodeTaints, true},
		{"no fact holds", hostapi.SchedWhenPodNodeSelector | hostapi.SchedWhenNodeTaints, hostapi.SchedWhenPodSpread, false},
		{"unknown fact", 1 << 40, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := relevant(tt.when, tt.facts); got != tt.want {
				t.Errorf("relevant(%#x, %#x) = %v, want %v", tt.when, tt.facts, got, tt.want)
			}
		})
	}
}

func TestFacts(t *testing.T) {
	snap := snapshotWith("a", "b")
	if f := snap.facts(); f != 0 {
		t.Fatalf("plain nodes: facts %#x, want 0", f)
	}
	tainted := testNode("b")
	tainted.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}
	tainted.Spec.Unschedulable = true
	snap.SetNode(tainted)
	if f, want := snap.facts(), uint64(hostapi.SchedWhenNodeTaints|hostapi.SchedWhenNodeUnschedulable); f != want {
		t.Fatalf("tainted, cordoned node: facts %#x, want %#x", f, want)
	}
	pod := testPod("anti", "a")
	pod.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{}}
	snap.SetPod(pod)
	if f := snap.facts(); f&hostapi.SchedWhenBoundPodAffinity == 0 {
		t.Fatalf("bound pod with anti-affinity: facts %#x", f)
	}
	// The pod's node goes away (the pod waits for it), then the pod.
	snap.RemoveNode("a")
	if f := snap.facts(); f&hostapi.SchedWhenBoundPodAffinity != 0 {
		t.Fatalf("pod on a removed node still counts: %#x", f)
	}
	snap.SetNode(testNode("a"))
	if f := snap.facts(); f&hostapi.SchedWhenBoundPodAffinity == 0 {
		t.Fatalf("pod back on its node does not count: %#x", f)
	}
	snap.RemovePod("default", "anti")
	snap.SetNode(testNode("b"))
	if f := snap.facts(); f != 0 {
		t.Fatalf("after removals: facts %#x, want 0", f)
	}

	pod = testPod("p", "")
	pod.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}
	want := uint64(hostapi.SchedWhenPodNodeSelector | hostapi.SchedWhenPodNodeAffinity | hostapi.SchedWhenPodHostPorts)
	if f := podFacts(pod); f != want {
		t.Fatalf("pod facts %#x, want %#x", f, want)
	}
	yes := true
	pod.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", UID: "u", Controller: &yes}}
	if f := podFacts(pod); f != want|hostapi.SchedWhenPodControlled {
		t.Fatalf("controlled pod facts %#x, want %#x", f, want|hostapi.SchedWhenPodControlled)
	}
}

// TestScheduleRelevance: a plugin is called only for pods (and clusters)
// its relevance names, is not warmed while it cannot be called, and gets
// the changes it missed with its next call.
func TestScheduleRelevance(t *testing.T) {
	snap := snapshotWith("a", "b", "c")
	always := newFake("always", 0)
	selective := relevantFake{newFake("selective", 1, "a"), hostapi.SchedWhenPodNodeSelector, hostapi.SchedWhenPodNodeSelector}
	prof := mustProfile(t,
		PluginConfig{Plugin: always, Filter: true, Score: true},
		PluginConfig{Plugin: selective, Filter: true, Score: true})
	ctx := context.Background()
	if err := prof.Warm(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if always.fulls != 1 || selective.fulls != 0 {
		t.Fatalf("warm: full tables %d and %d, want 1 and 0", always.fulls, selective.fulls)
	}
	for _, name := range []string{"p0", "p1", "p2"} {
		pod := testPod(name, "")
		res, err := prof.Schedule(ctx, snap, pod, Options{})
		if err != nil || res.Node == "" {
			t.Fatalf("%s: %+v %v", name, res, err)
		}
		snap.assume(pod, res.Node, &res.req)
	}
	if selective.calls != 0 {
		t.Fatalf("plugin called %d times for pods without a nodeSelector", selective.calls)
	}
	if st := prof.Stats()[1]; st.Idle != 6 {
		t.Fatalf("idle calls %d, want 6 (3 filters, 3 scores)", st.Idle)
	}
	// A pod with a nodeSelector: the plugin gets the table and rejects a
	// (denied) and every node that holds a pod (full).
	pod := testPod("p3", "")
	pod.Spec.NodeSelector = map[string]string{"any": "thing"}
	res, err := prof.Schedule(ctx, snap, pod, Options{Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"a": 1, "b": 1, "c": 1}; !maps.Equal(selective.counts(), want) {
		t.Fatalf("plugin's table %v, want %v", selective.counts(), want)
	}
	if res.Node != "" {
		t.Fatalf("pod placed on %s, want nowhere (a denied, all full)", res.Node)
	}
}
