package scheduler

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func testNode(name string) *corev1.Node {
	alloc := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods: resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Status:     corev1.NodeStatus{Allocatable: alloc},
	}
}

func testPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "i",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
	}
}

func snapshotWith(nodes ...string) *Snapshot {
	s := NewSnapshot()
	for _, n := range nodes {
		s.SetNode(testNode(n))
	}
	return s
}

func mustProfile(t testing.TB, plugins ...PluginConfig) *Profile {
	t.Helper()
	p, err := NewProfile(DefaultSchedulerName, plugins)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFitMessage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nodes    int
		rejected []rejection
		want     string
	}{
		{"kube's example", 5, []rejection{
			{node: 0, reasons: []string{"Insufficient cpu"}}, {node: 1, reasons: []string{"Insufficient cpu"}}, {node: 2, reasons: []string{"Insufficient cpu"}},
			{node: 3, reasons: []string{"node(s) didn't match Pod's node affinity/selector"}},
			{node: 4, reasons: []string{"node(s) didn't match Pod's node affinity/selector"}},
		}, "0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 3 Insufficient cpu."},
		{"several reasons per node all count", 2, []rejection{
			{node: 0, reasons: []string{"Insufficient cpu", "Insufficient memory"}}, {node: 1, reasons: []string{"Insufficient memory"}},
		}, "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory."},
		{"sorted as strings, like kube-scheduler", 12, append(repeat(10, "b"), repeat(2, "a")...),
			"0/12 nodes are available: 10 b, 2 a."},
		{"no reasons", 3, nil, "0/3 nodes are available."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fitMessage(tc.nodes, tc.rejected); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func repeat(n int, reason string) []rejection {
	out := make([]rejection, n)
	for i := range out {
		out[i] = rejection{node: int32(i), reasons: []string{reason}}
	}
	return out
}

func TestNumFeasibleToFind(t *testing.T) {
	for _, tc := range []struct{ nodes, want int }{
		{1, 1}, {99, 99}, {100, 100}, {200, 100}, {1000, 420}, {5000, 500}, {6000, 300}, {20000, 1000},
	} {
		if got := numFeasibleToFind(tc.nodes); got != tc.want {
			t.Errorf("numFeasibleToFind(%d) = %d, want %d", tc.nodes, got, tc.want)
		}
	}
}

func TestScheduleEarlyStopRotates(t *testing.T) {
	var names []string
	for i := range 1000 {
		names = append(names, fmt.Sprintf("n%04d", i))
	}
	snap := snapshotWith(names...)
	fake := newFake("fake", 0)
	prof := mustProfile(t, PluginConfig{Plugin: fake, Filter: true, Score: true})
	ctx := context.Background()
	chosen := map[string]bool{}
	for i := range 3 {
		res, err := prof.Schedule(ctx, snap, testPod(fmt.Sprintf("p%d", i), ""), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Evaluated != 420 || res.Feasible != 420 {
			t.Fatalf("evaluated %d, feasible %d; want 420 of 1000 (early stop)", res.Evaluated, res.Feasible)
		}
		chosen[res.Node] = true
	}
	if prof.next != (3*420)%1000 {
		t.Errorf("search starts at %d, want %d (rotating)", prof.next, (3*420)%1000)
	}
	res, err := prof.Schedule(ctx, snap, testPod("all", ""), Options{AllNodes: true})
	if err != nil || res.Evaluated != 1000 {
		t.Fatalf("AllNodes: evaluated %d, %v", res.Evaluated, err)
	}
	// Chunks: with most nodes denied, the search continues until enough
	// feasible nodes are found or all are evaluated.
	deny := names[:900]
	fake2 := newFake("deny", 0, deny...)
	prof2 := mustProfile(t, PluginConfig{Plugin: fake2, Filter: true})
	res, err = prof2.Schedule(ctx, snap, testPod("sparse", ""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Feasible != 100 || res.Evaluated != 1000 || res.Node < "n0900" {
		t.Fatalf("sparse: node %s, feasible %d, evaluated %d; want one of the last 100 after all 1000", res.Node, res.Feasible, res.Evaluated)
	}
}

// TestScheduleDeltas binds pods into the snapshot between attempts: the
// plugin sees them through deltas (its "full" rule starts rejecting),
// and only the first call sent the full table.
func TestScheduleDeltas(t *testing.T) {
	snap := snapshotWith("a", "b", "c")
	fake := newFake("fake", 2)
	prof := mustProfile(t, PluginConfig{Plugin: fake, Filter: true, Score: true})
	ctx := context.Background()
	for i := range 6 {
		pod := testPod(fmt.Sprintf("p%d", i), "")
		res, err := prof.Schedule(ctx, snap, pod, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Node == "" {
			t.Fatalf("pod %d: %s", i, res.Message)
		}
		snap.assume(pod, res.Node, &res.req)
	}
	res, err := prof.Schedule(ctx, snap, testPod("p6", ""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"a": 2, "b": 2, "c": 2}; !maps.Equal(fake.counts(), want) {
		t.Fatalf("plugin's table %v, want %v", fake.counts(), want)
	}
	if res.Node != "" || res.Message != "0/3 nodes are available: 3 full." {
		t.Fatalf("node %q message %q, want none and 3 full", res.Node, res.Message)
	}
	if fake.fulls != 1 {
		t.Errorf("full table sent %d times, want once", fake.fulls)
	}
	// A removed pod frees its node; a removed node takes its pods along.
	for i := range 6 {
		if name := fmt.Sprintf("p%d", i); snap.PodNode("default", name) == "a" {
			snap.RemovePod("default", name)
			break
		}
	}
	snap.RemoveNode("c")
	res, err = prof.Schedule(ctx, snap, testPod("p7", ""), Options{Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Node != "a" || res.NumNodes != 2 {
		t.Fatalf("after removals: node %q of %d nodes (%s), want a", res.Node, res.NumNodes, res.Message)
	}
	if want := map[string]int{"a": 1, "b": 2}; !maps.Equal(fake.counts(), want) {
		t.Fatalf("plugin's table after removals %v, want %v", fake.counts(), want)
	}
	// A node coming back finds the pods bound to it.
	snap.SetNode(testNode("c"))
	if _, err := prof.Schedule(ctx, snap, testPod("p8", ""), Options{}); err != nil {
		t.Fatal(err)
	}
	if got := fake.counts()["c"]; got != 2 {
		t.Fatalf("node c came back with %d pods in the plugin's table, want 2", got)
	}
}

// TestScheduleResync: an instance that lost its table (replaced after a
// trap) answers "resync" and gets the full table; two profiles sharing
// one instance resync each other from the change log.
func TestScheduleResync(t *testing.T) {
	snap := snapshotWith("a", "b")
	fake := newFake("fake", 1)
	a := mustProfile(t, PluginConfig{Plugin: fake, Filter: true})
	b := mustProfile(t, PluginConfig{Plugin: fake, Filter: true})
	ctx := context.Background()
	res, err := a.Schedule(ctx, snap, testPod("p0", ""), Options{})
	if err != nil || res.Node == "" {
		t.Fatalf("%+v %v", res, err)
	}
	snap.assume(testPod("p0", ""), res.Node, &res.req)
	fake.lose()
	res, err = a.Schedule(ctx, snap, testPod("p1", ""), Options{})
	if err != nil || res.Node == "" {
		t.Fatalf("after losing the table: %+v %v", res, err)
	}
	snap.assume(testPod("p1", ""), res.Node, &res.req)
	if fake.fulls != 2 {
		t.Fatalf("full tables sent %d, want 2", fake.fulls)
	}
	res, err = b.Schedule(ctx, snap, testPod("p2", ""), Options{})
	if err != nil || res.Message != "0/2 nodes are available: 2 full." {
		t.Fatalf("profile b: %+v %v", res, err)
	}
}

func TestQueue(t *testing.T) {
	now := time.Unix(1000, 0)
	q := newQueue(time.Second, 10*time.Second)
	prio := func(name string, p int32) *corev1.Pod {
		pod := testPod(name, "")
		pod.Spec.Priority = &p
		return pod
	}
	q.add(prio("low-old", 0), now)
	q.add(prio("high", 10), now)
	q.add(prio("low-new", 0), now)
	var order []string
	for {
		e, _ := q.pop(now)
		if e == nil {
			break
		}
		order = append(order, e.key.name)
	}
	if fmt.Sprint(order) != "[high low-old low-new]" {
		t.Fatalf("order %v, want priority then age", order)
	}
	e := q.pods[podKey{"default", "high"}]
	var delays []time.Duration
	for range 6 {
		q.failed(e, false, now)
		delays = append(delays, e.backoffUntil.Sub(now))
		if got, next := q.pop(now); got != nil || next != e.backoffUntil {
			t.Fatalf("popped %v before the backoff; next %v", got, next)
		}
		if got, _ := q.pop(e.backoffUntil); got != e {
			t.Fatalf("not popped after the backoff")
		}
	}
	if fmt.Sprint(delays) != "[1s 2s 4s 8s 10s 10s]" {
		t.Fatalf("backoffs %v", delays)
	}
	// Unschedulable pods wait for a cluster change, then their backoff.
	q.failed(e, true, now)
	if got, _ := q.pop(now.Add(time.Minute)); got != nil {
		t.Fatal("unschedulable pod popped without a cluster change")
	}
	q.moveAll(now.Add(time.Minute))
	if got, _ := q.pop(now.Add(time.Minute)); got != e {
		t.Fatal("unschedulable pod not retried after a cluster change")
	}
	// An update while in flight makes a failure retry at once (after backoff).
	q.add(prio("high", 10), now)
	if !e.dirty {
		t.Fatal("update in flight not noted")
	}
	q.remove(e.key)
	if len(q.pods) != 2 {
		t.Fatalf("%d pods left, want 2", len(q.pods))
	}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	req := func(cpu string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}
	}
	for _, tc := range []struct {
		name       string
		spec       corev1.PodSpec
		cpu, nzCPU int64
	}{
		{"containers add up", corev1.PodSpec{Containers: []corev1.Container{{Resources: req("100m")}, {Resources: req("200m")}}}, 300, 300},
		{"missing request defaults for scoring", corev1.PodSpec{Containers: []corev1.Container{{}, {Resources: req("200m")}}}, 200, 300},
		{"init container max", corev1.PodSpec{
			InitContainers: []corev1.Container{{Resources: req("1")}},
			Containers:     []corev1.Container{{Resources: req("200m")}},
		}, 1000, 1000},
		{"sidecar adds to the containers", corev1.PodSpec{
			InitContainers: []corev1.Container{{Resources: req("300m"), RestartPolicy: &always}, {Resources: req("400m")}},
			Containers:     []corev1.Container{{Resources: req("200m")}},
		}, 700, 700},
		{"overhead", corev1.PodSpec{
			Containers: []corev1.Container{{Resources: req("200m")}},
			Overhead:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")},
		}, 250, 250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := podRequests(&corev1.Pod{Spec: tc.spec})
			var cpu, pods int64
			for _, e := range r.list {
				switch e.name {
				case "cpu":
					cpu = e.value
				case "pods":
					pods = e.value
				}
			}
			if cpu != tc.cpu || r.nonZeroCPU != tc.nzCPU || pods != 1 {
				t.Fatalf("cpu %d nonzero %d pods %d, want %d %d 1", cpu, r.nonZeroCPU, pods, tc.cpu, tc.nzCPU)
			}
		})
	}
}

func TestSnapshotIgnoresHeartbeats(t *testing.T) {
	snap := snapshotWith("a")
	gen := snap.Generation()
	n := testNode("a")
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	if !snap.SetNode(n) {
		t.Fatal("a new condition is a change")
	}
	n2 := n.DeepCopy()
	n2.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Minute))
	n2.ResourceVersion = "99"
	if snap.SetNode(n2) {
		t.Fatal("a heartbeat alone is not a change")
	}
	if snap.Generation() != gen+1 {
		t.Fatalf("generation %d, want %d", snap.Generation(), gen+1)
	}
}

// TestParallelMatchesSequence: filters called at once on a whole chunk
// and combined in order give the same result as filters in sequence.
func TestParallelMatchesSequence(t *testing.T) {
	var names []string
	for i := range 300 {
		names = append(names, fmt.Sprintf("n%03d", i))
	}
	results := map[int][]Result{}
	for _, par := range []int{1, 4} {
		snap := snapshotWith(names...)
		prof := mustProfile(t,
			PluginConfig{Plugin: newFake("a", 1, names[:100]...), Filter: true, Score: true, Weight: 2},
			PluginConfig{Plugin: newFake("b", 2, names[50:200]...), Filter: true, Score: true},
		)
		prof.SetParallelism(par)
		ctx := context.Background()
		for i := range 120 {
			pod := testPod(fmt.Sprintf("p%d", i), "")
			res, err := prof.Schedule(ctx, snap, pod, Options{Trace: true})
			if err != nil {
				t.Fatal(err)
			}
			results[par] = append(results[par], res)
			if res.Node != "" {
				snap.assume(pod, res.Node, &res.req)
			}
		}
	}
	for i := range results[1] {
		if !reflect.DeepEqual(results[1][i], results[4][i]) {
			t.Fatalf("pod %d: in sequence %+v\nin parallel %+v", i, results[1][i], results[4][i])
		}
	}
	// n000-n099 denied by a, n100-n199 by b, n200-n299 hold a's one pod.
	if last := results[4][len(results[4])-1]; last.Node != "" || last.Message != "0/300 nodes are available: 100 full, 200 denied." {
		t.Fatalf("last pod: node %q message %q", last.Node, last.Message)
	}
}

// TestSnapshotLogTrim: the change log keeps what active plugins still
// need, is bounded, and a plugin further behind gets the full table.
func TestSnapshotLogTrim(t *testing.T) {
	snap := snapshotWith("a")
	old := snap.Generation()
	for i := range maxLog + 10 {
		snap.SetPod(testPod(fmt.Sprintf("p%d", i%50), "a"))
		snap.RemovePod("default", fmt.Sprintf("p%d", i%50))
	}
	recent := snap.Generation() - 5
	snap.trim(old) // a plugin still at the start cannot pin the log forever
	if len(snap.log) > maxLog {
		t.Fatalf("log of %d changes, above the bound %d", len(snap.log), maxLog)
	}
	if snap.delta(old) != nil {
		t.Fatal("a base older than the log got a delta instead of the full table")
	}
	if d := snap.delta(recent); d == nil || d.nops != 5 {
		t.Fatalf("recent base: %+v, want 5 changes", d)
	}
	snap.trim(recent)
	if d := snap.delta(recent); d == nil || d.nops != 5 || len(snap.log) != 5 {
		t.Fatalf("after trimming to what plugins saw: log %d, delta %+v", len(snap.log), d)
	}
}

// TestSnapshotReusesPodIDs: a forgotten pod's id goes to the next new pod,
// so ids stay dense, and a plugin's table follows the reuse (remove, then
// add under the same id).
func TestSnapshotReusesPodIDs(t *testing.T) {
	snap := snapshotWith("a", "b")
	fake := newFake("fake", 10)
	prof := mustProfile(t, PluginConfig{Plugin: fake, Filter: true, Score: true})
	ctx := context.Background()
	snap.SetPod(testPod("p1", "a"))
	snap.SetPod(testPod("p2", "a"))
	if _, err := prof.Schedule(ctx, snap, testPod("x", ""), Options{}); err != nil {
		t.Fatal(err)
	}
	id1 := snap.pods[podKey{"default", "p1"}].id
	snap.RemovePod("default", "p1")
	snap.SetPod(testPod("p3", "b"))
	if got := snap.pods[podKey{"default", "p3"}].id; got != id1 {
		t.Errorf("p3 got id %d, want p1's freed id %d", got, id1)
	}
	snap.SetPod(testPod("p4", "b"))
	if got := snap.pods[podKey{"default", "p4"}].id; got != 3 {
		t.Errorf("p4 got id %d, want 3 (no free id left)", got)
	}
	if _, err := prof.Schedule(ctx, snap, testPod("y", ""), Options{}); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"a": 1, "b": 2}; !maps.Equal(fake.counts(), want) {
		t.Fatalf("plugin's table %v, want %v", fake.counts(), want)
	}
}
