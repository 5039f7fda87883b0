package scheduler_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// recorder is a filter and scorer that records the hooks and rejects
// nodes labelled reject=yes; it scores the number of pods per node, raw,
// reversed by the SDK.
type recorder struct{ events []string }

func (r *recorder) Filter(_ *sched.Snapshot, _ *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	for i, n := range nodes {
		if n.Labels["reject"] == "yes" {
			res.Reject(i, "rejected by label", "and a second reason")
		}
	}
	return nil
}

func (r *recorder) Score(_ *sched.Snapshot, _ *sched.Pod, nodes []*sched.Node, scores []int64) error {
	for i, n := range nodes {
		scores[i] = int64(len(n.Pods))
	}
	return nil
}

func (r *recorder) Normalization() sched.Normalization { return sched.NormalizeMaxReverse }

func (r *recorder) Reset() { r.events = append(r.events, "reset") }

func (r *recorder) NodeChanged(old, cur *sched.Node) {
	switch {
	case old == nil:
		r.events = append(r.events, "add "+cur.Name)
	case cur == nil:
		r.events = append(r.events, "remove "+old.Name)
	default:
		r.events = append(r.events, fmt.Sprintf("update %s %v->%v", cur.Name, old.Labels, cur.Labels))
	}
}

func (r *recorder) PodAdded(p *sched.PodInfo) {
	r.events = append(r.events, "pod+ "+p.Name+"@"+p.Node.Name)
}
func (r *recorder) PodRemoved(p *sched.PodInfo) {
	r.events = append(r.events, "pod- "+p.Name+"@"+p.Node.Name)
}

// req builds a request with the given changes and candidates.
type req struct {
	base, gen uint64
	ops       [][]byte
	cands     []uint32
}

func (q req) bytes() []byte {
	b := hostapi.AppendU64(nil, q.base)
	b = hostapi.AppendU64(b, q.gen)
	b = hostapi.AppendU32(b, uint32(len(q.ops)))
	for _, op := range q.ops {
		b = append(b, op...)
	}
	// The pod: seq, requests (cpu 100m), nonzero, strings, priority,
	// labels, selector, tolerations, images, ports, blobs.
	b = hostapi.AppendU64(b, q.gen)
	b = append(b, 1)
	b = hostapi.AppendResource(b, "cpu", 100)
	b = hostapi.AppendI64(b, 100)
	b = hostapi.AppendI64(b, 200<<20)
	for _, s := range []string{"uid", "default", "pending", "", "default-scheduler"} {
		b = hostapi.AppendStr(b, s)
	}
	b = hostapi.AppendI64(b, 0)
	for range 5 {
		b = hostapi.AppendU16(b, 0)
	}
	b = hostapi.AppendBlob(b, nil)
	b = hostapi.AppendBlob(b, nil)
	b = hostapi.AppendBlob(b, []byte(`{}`))
	b = hostapi.AppendU32(b, uint32(len(q.cands)))
	for _, c := range q.cands {
		b = hostapi.AppendU32(b, c)
	}
	return b
}

func nodeSet(idx uint32, name string, labels map[string]string) []byte {
	b := hostapi.AppendU32([]byte{hostapi.SchedOpNodeSet}, idx)
	b = hostapi.AppendStr(b, name)
	b = append(b, 2)
	b = hostapi.AppendResource(b, "cpu", 4000)
	b = hostapi.AppendResource(b, "nvidia.com/gpu", 2)
	b = append(b, 0)
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = hostapi.AppendU16(b, uint16(len(keys)))
	for _, k := range keys {
		b = hostapi.AppendStr(b, k)
		b = hostapi.AppendStr(b, labels[k])
	}
	b = hostapi.AppendU16(b, 0)
	b = hostapi.AppendU16(b, 0)
	return hostapi.AppendBlob(b, []byte(`{"metadata":{"name":"`+name+`"}}`))
}

func podAdd(idx, id uint32, name string, milliCPU int64) []byte {
	b := hostapi.AppendU32([]byte{hostapi.SchedOpPodAdd}, idx)
	b = hostapi.AppendU32(b, id)
	b = append(b, 0)
	for _, s := range []string{"uid-" + name, "default", name} {
		b = hostapi.AppendStr(b, s)
	}
	b = hostapi.AppendU16(b, 0)
	b = append(b, 2)
	b = hostapi.AppendResource(b, "cpu", milliCPU)
	b = hostapi.AppendResource(b, "pods", 1)
	b = hostapi.AppendI64(b, milliCPU)
	b = hostapi.AppendI64(b, 200<<20)
	return hostapi.AppendBlob(b, nil)
}

func podRemove(idx, id uint32) []byte {
	return hostapi.AppendU32(hostapi.AppendU32([]byte{hostapi.SchedOpPodRemove}, idx), id)
}

func call(t *testing.T, m *sched.Module, export string, q req) []byte {
	t.Helper()
	out, err := m.Call(context.Background(), export, q.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("empty response")
	}
	return out
}

func TestModuleTableAndHooks(t *testing.T) {
	rec := &recorder{}
	m, err := sched.New(rec, sdk.Manifest{Name: "Recorder"})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Manifest().Kinds; !reflect.DeepEqual(got, []string{hostapi.KindFilter, hostapi.KindScore}) {
		t.Fatalf("kinds %v", got)
	}
	// The full table: two nodes, pods on a.
	out := call(t, m, hostapi.ExportFilter, req{base: 0, gen: 5, ops: [][]byte{
		nodeSet(0, "a", map[string]string{"zone": "1"}), nodeSet(1, "b", map[string]string{"reject": "yes"}),
		podAdd(0, 7, "p7", 500), podAdd(0, 8, "p8", 250),
	}, cands: []uint32{0, 1}})
	want := []byte{hostapi.SchedStatusOK}
	want = hostapi.AppendU32(want, 1)
	want = append(want, 2)
	want = hostapi.AppendStr(want, "rejected by label")
	want = hostapi.AppendStr(want, "and a second reason")
	want = hostapi.AppendU32(want, 2)
	want = hostapi.AppendU16(want, 0)
	want = hostapi.AppendU16(want, 1)
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("filter response %v, want %v", out, want)
	}
	s := m.Snapshot()
	a := s.NodeByName("a")
	if a == nil || a.Requested.MilliCPU != 750 || a.Requested.Pods != 2 || a.Allocatable.Scalar["nvidia.com/gpu"] != 2 || len(a.Pods) != 2 {
		t.Fatalf("node a %+v", a)
	}
	// A stale base: resync with the guest's generation.
	out = call(t, m, hostapi.ExportScore, req{base: 3, gen: 6, cands: []uint32{0}})
	if want := hostapi.AppendU64([]byte{hostapi.SchedStatusResync}, 5); !reflect.DeepEqual(out, want) {
		t.Fatalf("stale base answered %v, want resync 5", out)
	}
	// Changes: a pod leaves a, b's labels change, then b goes away.
	out = call(t, m, hostapi.ExportScore, req{base: 5, gen: 9, ops: [][]byte{
		podRemove(0, 7), nodeSet(1, "b", map[string]string{"reject": "no"}), podAdd(1, 9, "p9", 100),
	}, cands: []uint32{0, 1}})
	// Raw pod counts a=1, b=1 -> reversed: 0 and 0, sent as "all zero".
	want = hostapi.AppendU32([]byte{hostapi.SchedStatusOK}, 0)
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("score response %v, want %v", out, want)
	}
	if a.Requested.MilliCPU != 250 || s.Pod(7) != nil || s.Generation() != 9 {
		t.Fatalf("after changes: a requested %d, pod 7 %v, generation %d", a.Requested.MilliCPU, s.Pod(7), s.Generation())
	}
	call(t, m, hostapi.ExportFilter, req{base: 9, gen: 10, ops: [][]byte{
		hostapi.AppendU32([]byte{hostapi.SchedOpNodeRemove}, 1),
	}, cands: []uint32{0}})
	wantEvents := []string{
		"reset", "add a", "add b", "pod+ p7@a", "pod+ p8@a",
		"pod- p7@a", "update b map[reject:yes]->map[reject:no]", "pod+ p9@b",
		"pod- p9@b", "remove b",
	}
	if !reflect.DeepEqual(rec.events, wantEvents) {
		t.Fatalf("hooks\n%q\nwant\n%q", rec.events, wantEvents)
	}
	if s.Len() != 1 || s.NodeByName("b") != nil || s.MaxIndex() != 1 {
		t.Fatalf("table after removal: %d nodes, max index %d", s.Len(), s.MaxIndex())
	}
	// A candidate that is not in the table is an error answer.
	out = call(t, m, hostapi.ExportFilter, req{base: 10, gen: 10, cands: []uint32{1}})
	if out[0] != hostapi.SchedStatusError {
		t.Fatalf("unknown candidate answered status %d", out[0])
	}
	// A change that does not fit the table (a pod on a missing node)
	// makes the guest start over.
	out = call(t, m, hostapi.ExportFilter, req{base: 10, gen: 11, ops: [][]byte{podAdd(5, 1, "x", 1)}, cands: []uint32{0}})
	if want := hostapi.AppendU64([]byte{hostapi.SchedStatusResync}, 0); !reflect.DeepEqual(out, want) {
		t.Fatalf("inconsistent change answered %v, want resync 0", out)
	}
}

func TestDefaultNormalize(t *testing.T) {
	for _, tc := range []struct {
		in, want []int64
		reverse  bool
	}{
		{[]int64{0, 5, 10}, []int64{0, 50, 100}, false},
		{[]int64{0, 5, 10}, []int64{100, 50, 0}, true},
		{[]int64{0, 0}, []int64{0, 0}, false},
		{[]int64{0, 0}, []int64{100, 100}, true},
	} {
		got := slices.Clone(tc.in)
		sched.DefaultNormalize(got, tc.reverse)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DefaultNormalize(%v, %v) = %v, want %v", tc.in, tc.reverse, got, tc.want)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    any
		m    sdk.Manifest
	}{
		{"nil", nil, sdk.Manifest{Name: "x"}},
		{"no name", &recorder{}, sdk.Manifest{}},
		{"neither kind", struct{}{}, sdk.Manifest{Name: "x"}},
		{"kind not implemented", struct{ sched.Filterer }{}, sdk.Manifest{Name: "x", Kinds: []string{hostapi.KindScore}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sched.New(tc.p, tc.m); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// splitter rejects node "cordoned" as unresolvable and node "busy" as
// resolvable, both with the reason "no".
type splitter struct{}

func (splitter) Filter(_ *sched.Snapshot, _ *sched.Pod, nodes []*sched.Node, res *sched.FilterResult) error {
	for i, n := range nodes {
		switch n.Name {
		case "cordoned":
			res.RejectUnresolvable(i, "no")
		case "busy":
			res.Reject(i, "no")
		}
	}
	return nil
}

// TestRejectUnresolvable: the same reason rejected as unresolvable and as
// resolvable makes two reason sets, the first flagged in its count.
func TestRejectUnresolvable(t *testing.T) {
	m, err := sched.New(splitter{}, sdk.Manifest{Name: "Splitter"})
	if err != nil {
		t.Fatal(err)
	}
	out := call(t, m, hostapi.ExportFilter, req{gen: 3,
		ops:   [][]byte{nodeSet(0, "cordoned", nil), nodeSet(1, "busy", nil), nodeSet(2, "free", nil)},
		cands: []uint32{0, 1, 2}})
	r := hostapi.NewSchedReader(out)
	if st := r.U8(); st != hostapi.SchedStatusOK {
		t.Fatalf("status %d", st)
	}
	type set struct {
		count  uint8
		reason string
	}
	var sets []set
	for range r.U32() {
		c := r.U8()
		sets = append(sets, set{c, r.Str()})
	}
	want := []set{{1 | hostapi.SchedReasonsUnresolvable, "no"}, {1, "no"}}
	if !reflect.DeepEqual(sets, want) {
		t.Fatalf("reason sets %v, want %v", sets, want)
	}
	var codes []uint16
	for range r.U32() {
		codes = append(codes, r.U16())
	}
	if !slices.Equal(codes, []uint16{1, 2, 0}) || r.Err() != nil {
		t.Fatalf("codes %v (%v), want [1 2 0]", codes, r.Err())
	}
}

// lean is a scorer that declares ResourcesOnly and records what it saw.
type lean struct {
	podCPU int64
	labels int
}

func (l *lean) ResourcesOnly() bool { return true }

func (l *lean) Score(_ *sched.Snapshot, pod *sched.Pod, nodes []*sched.Node, scores []int64) error {
	l.podCPU = pod.Requests.MilliCPU
	l.labels = len(pod.Labels)
	for i, n := range nodes {
		scores[i] = n.Requested.MilliCPU / 10
	}
	return nil
}

// TestResourcesOnly: a ResourcesOnly plugin's table keeps names and
// resources (requested sums included) but no labels or pod names.
func TestResourcesOnly(t *testing.T) {
	p := &lean{}
	m, err := sched.New(p, sdk.Manifest{Name: "Lean"})
	if err != nil {
		t.Fatal(err)
	}
	out := call(t, m, hostapi.ExportScore, req{gen: 4,
		ops:   [][]byte{nodeSet(0, "a", map[string]string{"zone": "x"}), podAdd(0, 1, "p1", 300), podAdd(0, 2, "p2", 200)},
		cands: []uint32{0}})
	r := hostapi.NewSchedReader(out)
	if st, n := r.U8(), r.U32(); st != hostapi.SchedStatusOK || n != 1 || r.I64() != 50 {
		t.Fatalf("response %v: want one score of 50 (500m requested)", out)
	}
	n := m.Snapshot().NodeByName("a")
	if n == nil || len(n.Labels) != 0 || n.Labels == nil || n.Allocatable.MilliCPU != 4000 || n.Allocatable.Get("nvidia.com/gpu") != 2 {
		t.Fatalf("node %+v: want name and resources, empty non-nil labels", n)
	}
	if pi := m.Snapshot().Pod(1); pi == nil || pi.Name != "" || pi.Requests.MilliCPU != 300 || pi.Node != n {
		t.Fatalf("pod %+v: want requests and node only", pi)
	}
	if p.podCPU != 100 || p.labels != 0 {
		t.Fatalf("pod requests %d, labels %d: want 100 and 0", p.podCPU, p.labels)
	}
}
