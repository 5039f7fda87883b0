package scheduler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/leaderelect"
	"github.com/tugboat-dev/tugboat/kernel/scheduler"
)

// capacityPlugin admits at most max pods per node ("node(s) are full")
// and prefers emptier nodes. It speaks the wire format directly (kernel
// tests cannot use the SDK) and keeps only what it needs: node names and
// pod counts.
type capacityPlugin struct {
	max   int
	gen   uint64
	nodes map[uint32]string
	pods  map[uint32]uint32
	count map[uint32]int
}

func (p *capacityPlugin) Name() string { return "Capacity" }

func (p *capacityPlugin) Call(_ context.Context, export string, req []byte) ([]byte, error) {
	r := hostapi.NewSchedReader(req)
	base, gen, nops := r.U64(), r.U64(), r.U32()
	if base == 0 {
		p.nodes, p.pods, p.count = map[uint32]string{}, map[uint32]uint32{}, map[uint32]int{}
	} else if base != p.gen {
		return hostapi.AppendU64([]byte{hostapi.SchedStatusResync}, p.gen), nil
	}
	strs := func(n int) {
		for range n {
			r.StrBytes()
		}
	}
	resources := func() {
		for range int(r.U8()) {
			r.Resource()
		}
	}
	for range nops {
		switch r.U8() {
		case hostapi.SchedOpNodeSet:
			idx, name := r.U32(), r.Str()
			resources()
			r.U8()
			strs(2 * int(r.U16()))
			strs(3 * int(r.U16()))
			for range int(r.U16()) {
				strs(int(r.U16()))
				r.I64()
			}
			r.Blob()
			p.nodes[idx] = name
		case hostapi.SchedOpNodeRemove:
			delete(p.nodes, r.U32())
		case hostapi.SchedOpPodAdd:
			idx, id := r.U32(), r.U32()
			r.U8()
			strs(3)
			strs(2 * int(r.U16()))
			resources()
			r.I64()
			r.I64()
			r.Blob()
			if old, ok := p.pods[id]; ok {
				p.count[old]--
			}
			p.pods[id] = idx
			p.count[idx]++
		case hostapi.SchedOpPodRemove:
			idx, id := r.U32(), r.U32()
			delete(p.pods, id)
			p.count[idx]--
		}
	}
	p.gen = gen
	// The pod part.
	r.U64()
	resources()
	r.I64()
	r.I64()
	strs(5)
	r.I64()
	strs(2 * int(r.U16()))
	strs(2 * int(r.U16()))
	strs(4 * int(r.U16()))
	strs(int(r.U16()))
	for range int(r.U16()) {
		strs(2)
		r.U32()
	}
	r.Blob()
	r.Blob()
	r.Blob()
	n := int(r.U32())
	if err := r.Err(); err != nil {
		return nil, err
	}
	out := []byte{hostapi.SchedStatusOK}
	if export == hostapi.ExportScore {
		out = hostapi.AppendU32(out, uint32(n))
		for range n {
			out = hostapi.AppendI64(out, int64(100-10*p.count[r.U32()]))
		}
		return out, nil
	}
	out = hostapi.AppendU32(out, 1)
	out = append(out, 1)
	out = hostapi.AppendStr(out, "node(s) are full")
	out = hostapi.AppendU32(out, uint32(n))
	for range n {
		code := uint16(0)
		if p.count[r.U32()] >= p.max {
			code = 1
		}
		out = hostapi.AppendU16(out, code)
	}
	return out, nil
}

func startAPI(t testing.TB) *rest.Config {
	t.Helper()
	_, cfg := apiservertest.Start(t, apiserver.Config{})
	return cfg
}

func newPod(name, schedulerName string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.PodSpec{SchedulerName: schedulerName, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
}

// waitFor polls cond until it holds; the bound is a hang guard, not a
// performance assertion.
func waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last state: %s", what, last)
}

func TestSchedulerBindsAndReports(t *testing.T) {
	cfg := startAPI(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 3 {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)},
			Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110"),
			}},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s := runCapacityScheduler(t, ctx, cancel, cfg, 2)
	for i := range 7 {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, newPod(fmt.Sprintf("p%d", i), ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, newPod("other", "other-scheduler"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Six pods fit (two per node); the seventh gets PodScheduled=False.
	var unschedulable string
	waitFor(t, "6 bound pods and 1 unschedulable", func() (bool, string) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		perNode := map[string]int{}
		unschedulable = ""
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" {
				perNode[p.Spec.NodeName]++
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					if c.Message != "0/3 nodes are available: 3 node(s) are full." {
						return false, "message " + c.Message
					}
					unschedulable = p.Name
				}
			}
		}
		ok := len(perNode) == 3 && perNode["node-0"] == 2 && perNode["node-1"] == 2 && perNode["node-2"] == 2 && unschedulable != ""
		return ok, fmt.Sprintf("per node %v, unschedulable %q", perNode, unschedulable)
	})
	other, err := cs.CoreV1().Pods("default").Get(ctx, "other", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if other.Spec.NodeName != "" || len(other.Status.Conditions) != 0 {
		t.Fatalf("pod for another scheduler touched: node %q, conditions %v", other.Spec.NodeName, other.Status.Conditions)
	}
	waitFor(t, "Scheduled and FailedScheduling events", func() (bool, string) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		scheduled, failed := 0, 0
		for _, e := range evs.Items {
			switch {
			case e.Reason == "Scheduled" && e.Type == corev1.EventTypeNormal &&
				strings.HasPrefix(e.Message, "Successfully assigned default/"+e.InvolvedObject.Name+" to node-"):
				scheduled++
			case e.Reason == "FailedScheduling" && e.Type == corev1.EventTypeWarning &&
				e.Message == "0/3 nodes are available: 3 node(s) are full." && e.InvolvedObject.Name == unschedulable:
				failed++
			}
		}
		return scheduled == 6 && failed >= 1, fmt.Sprintf("%d Scheduled, %d FailedScheduling", scheduled, failed)
	})

	// Deleting a bound pod frees room: the waiting pod is retried and bound.
	bound, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", "node-1").String()})
	if err != nil || len(bound.Items) == 0 {
		t.Fatalf("pods on node-1: %v %v", bound, err)
	}
	if err := cs.CoreV1().Pods("default").Delete(ctx, bound.Items[0].Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the waiting pod bound to node-1", func() (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, unschedulable, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Spec.NodeName == "node-1", "node " + p.Spec.NodeName
	})
	if s.Bound() != 7 {
		t.Errorf("bound %d, want 7", s.Bound())
	}
}

func TestNewValidates(t *testing.T) {
	cfg := &rest.Config{Host: "http://127.0.0.1:1"}
	prof, err := scheduler.NewProfile("a", []scheduler.PluginConfig{{Plugin: &capacityPlugin{}, Filter: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  scheduler.Config
	}{
		{"no client", scheduler.Config{Profiles: []*scheduler.Profile{prof}}},
		{"no profiles", scheduler.Config{Client: cfg}},
		{"duplicate profiles", scheduler.Config{Client: cfg, Profiles: []*scheduler.Profile{prof, prof}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := scheduler.New(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	for _, tc := range []struct {
		name    string
		profile string
		plugins []scheduler.PluginConfig
	}{
		{"no name", "", nil},
		{"nil plugin", "a", []scheduler.PluginConfig{{Filter: true}}},
		{"neither filter nor score", "a", []scheduler.PluginConfig{{Plugin: &capacityPlugin{}}}},
		{"negative weight", "a", []scheduler.PluginConfig{{Plugin: &capacityPlugin{}, Score: true, Weight: -1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := scheduler.NewProfile(tc.profile, tc.plugins); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestSchedulerPreempts: on two nodes holding one pod each (capacity 1), a
// pod with preemptionPolicy Never stays unschedulable and evicts nothing;
// a pod of higher priority gets status.nominatedNodeName, one victim is
// deleted with a Preempted event, and the pod is bound in its place.
func TestSchedulerPreempts(t *testing.T) {
	cfg := startAPI(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 2 {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)}}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	zero := int64(0)
	create := func(name, node string, prio int32, never bool) {
		t.Helper()
		p := newPod(name, "")
		p.Spec.NodeName, p.Spec.Priority, p.Spec.TerminationGracePeriodSeconds = node, &prio, &zero
		if never {
			policy := corev1.PreemptNever
			p.Spec.PreemptionPolicy = &policy
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create("low-0", "node-0", 1, false)
	create("low-1", "node-1", 2, false)
	runCapacityScheduler(t, ctx, cancel, cfg, 1)
	get := func(name string) (*corev1.Pod, bool) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		return p, err == nil
	}
	create("polite", "", 100, true)
	waitFor(t, "polite unschedulable", func() (bool, string) {
		p, _ := get("polite")
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", p.Status)
	})
	for _, name := range []string{"low-0", "low-1"} {
		if _, ok := get(name); !ok {
			t.Fatalf("%s evicted by a pod with preemptionPolicy Never", name)
		}
	}
	if err := cs.CoreV1().Pods("default").Delete(ctx, "polite", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	create("high", "", 100, false)
	waitFor(t, "high bound on node-0 in low-0's place", func() (bool, string) {
		p, _ := get("high")
		_, low0 := get("low-0")
		return p.Spec.NodeName == "node-0" && !low0, fmt.Sprintf("high on %q nominated %q, low-0 present %v",
			p.Spec.NodeName, p.Status.NominatedNodeName, low0)
	})
	if p, _ := get("high"); p.Status.NominatedNodeName != "node-0" {
		t.Errorf("high's nominatedNodeName %q, want node-0", p.Status.NominatedNodeName)
	}
	if _, ok := get("low-1"); !ok {
		t.Error("low-1 (priority 2) evicted; only low-0 (priority 1) should be")
	}
	waitFor(t, "Preempted event on low-0", func() (bool, string) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "low-0").String()})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Reason == "Preempted" && e.Message == "Preempted by default/high on node node-0" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(evs.Items))
	})
}

// TestSchedulerLeaderElection: two schedulers on one API server with
// leader election: only the Lease holder binds; when it stops (releasing
// the Lease) the other takes over and binds the pods created after.
func TestSchedulerLeaderElection(t *testing.T) {
	cfg := startAPI(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-0"}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := func(id string) (*scheduler.Scheduler, func()) {
		prof, err := scheduler.NewProfile(scheduler.DefaultSchedulerName, []scheduler.PluginConfig{
			{Plugin: &capacityPlugin{max: 100}, Filter: true, Score: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		s, err := scheduler.New(scheduler.Config{Client: cfg, Profiles: []*scheduler.Profile{prof},
			LeaderElection: &leaderelect.Config{Identity: id, LeaseDuration: 15 * time.Second,
				RenewDeadline: 10 * time.Second, RetryPeriod: 100 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		stop := func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: run: %v", id, err)
			}
		}
		t.Cleanup(func() {
			if ctx.Err() == nil {
				stop()
			}
		})
		return s, stop
	}
	holder := func() string {
		l, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, scheduler.DefaultLeaseName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	first, stopFirst := start("first")
	waitFor(t, "first holds the lease", func() (bool, string) { h := holder(); return h == "first", "holder " + h })
	second, _ := start("second")
	bound := func(names ...string) func() (bool, string) {
		return func() (bool, string) {
			for _, n := range names {
				p, err := cs.CoreV1().Pods("default").Get(ctx, n, metav1.GetOptions{})
				if err != nil || p.Spec.NodeName == "" {
					return false, n + " not bound"
				}
			}
			return true, ""
		}
	}
	for i := range 5 {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, newPod(fmt.Sprintf("a%d", i), ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a0..a4 bound", bound("a0", "a1", "a2", "a3", "a4"))
	// Bound counts a binding once its write returned: it may lag.
	waitFor(t, "5 bindings counted", func() (bool, string) {
		return first.Bound()+second.Bound() == 5, fmt.Sprintf("%d + %d", first.Bound(), second.Bound())
	})
	if first.Bound() != 5 || second.Bound() != 0 {
		t.Fatalf("bound by first %d, by second %d; want 5 and 0", first.Bound(), second.Bound())
	}
	stopFirst() // releases the lease
	waitFor(t, "second holds the lease", func() (bool, string) { h := holder(); return h == "second", "holder " + h })
	for i := range 3 {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, newPod(fmt.Sprintf("b%d", i), ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "b0..b2 bound", bound("b0", "b1", "b2"))
	waitFor(t, "8 bindings counted", func() (bool, string) {
		return first.Bound()+second.Bound() == 8, fmt.Sprintf("%d + %d", first.Bound(), second.Bound())
	})
	if first.Bound() != 5 || second.Bound() != 3 {
		t.Fatalf("bound by first %d, by second %d; want 5 and 3", first.Bound(), second.Bound())
	}
}

// runCapacityScheduler runs a scheduler whose one plugin admits max pods
// per node until the test ends (cancel stops it; its error fails the
// test) and returns it.
func runCapacityScheduler(t *testing.T, ctx context.Context, cancel context.CancelFunc, cfg *rest.Config, max int) *scheduler.Scheduler {
	t.Helper()
	prof, err := scheduler.NewProfile(scheduler.DefaultSchedulerName, []scheduler.PluginConfig{
		{Plugin: &capacityPlugin{max: max}, Filter: true, Score: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Config{Client: cfg, Profiles: []*scheduler.Profile{prof}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return s
}
