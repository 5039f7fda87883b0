// Package schedtest is a minimal scheduler host for the built-in plugins'
// unit tests: it keeps nodes and bound pods, encodes the hostapi scheduler
// requests (incremental changes by generation, with resync, like the real
// host) and decodes the answers, so a test drives a plugin through the
// exact bytes path of its Wasm exports — natively through
// sdk/scheduler.Module or as Wasm through the runtime.
//
// It knows nothing about resources (requests are sent as zero), which the
// plugins tested with it do not read.
package schedtest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/runtime"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

// Caller is a scheduler plugin as the host calls it: a *scheduler.Module
// natively, a *runtime.Plugin as Wasm.
type Caller interface {
	Call(ctx context.Context, export string, req []byte) ([]byte, error)
}

type nodeRec struct {
	index uint32
	name  string
	raw   []byte
}

type podRec struct {
	id    uint32
	node  string
	ns    string
	name  string
	pod   corev1.Pod
	raw   []byte
	alive bool
}

type change struct {
	gen uint64
	op  []byte
}

// Host holds the cluster and what each plugin instance has seen. Not safe
// for concurrent use.
type Host struct {
	gen     uint64
	log     []change
	nodes   map[string]*nodeRec
	pods    map[string]*podRec // ns/name
	nextPod uint32
	free    []uint32
	next    uint32
	seen    map[Caller]uint64
	seq     uint64
}

// New returns an empty host.
func New() *Host {
	return &Host{nodes: map[string]*nodeRec{}, pods: map[string]*podRec{}, seen: map[Caller]uint64{}}
}

// ToJSON converts a YAML or JSON object to JSON.
func ToJSON(t testing.TB, doc string) []byte {
	t.Helper()
	b, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatalf("schedtest: %v", err)
	}
	return b
}

func (h *Host) record(op []byte) {
	h.gen++
	h.log = append(h.log, change{h.gen, op})
}

// SetNode adds or replaces a node (YAML or JSON Node).
func (h *Host) SetNode(t testing.TB, doc string) {
	t.Helper()
	raw := ToJSON(t, doc)
	var n corev1.Node
	if err := json.Unmarshal(raw, &n); err != nil {
		t.Fatalf("schedtest: node: %v", err)
	}
	rec := h.nodes[n.Name]
	if rec == nil {
		idx := h.next
		if len(h.free) > 0 {
			idx, h.free = h.free[0], h.free[1:]
		} else {
			h.next++
		}
		rec = &nodeRec{index: idx, name: n.Name}
		h.nodes[n.Name] = rec
	}
	rec.raw = raw
	op := []byte{hostapi.SchedOpNodeSet}
	op = hostapi.AppendU32(op, rec.index)
	op = hostapi.AppendStr(op, n.Name)
	op = append(op, 0) // no allocatable
	op = hostapi.AppendBlob(op, raw)
	h.record(op)
}

// RemoveNode removes a node and its pods.
func (h *Host) RemoveNode(name string) {
	rec := h.nodes[name]
	if rec == nil {
		return
	}
	for key, p := range h.pods {
		if p.node == name {
			delete(h.pods, key)
		}
	}
	delete(h.nodes, name)
	h.free = append(h.free, rec.index)
	h.record(hostapi.AppendU32([]byte{hostapi.SchedOpNodeRemove}, rec.index))
}

// AddPod binds a pod (YAML or JSON; spec.nodeName names the node, which
// must exist).
func (h *Host) AddPod(t testing.TB, doc string) {
	t.Helper()
	raw := ToJSON(t, doc)
	var p corev1.Pod
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("schedtest: pod: %v", err)
	}
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	if h.nodes[p.Spec.NodeName] == nil {
		t.Fatalf("schedtest: pod %s: node %q unknown", p.Name, p.Spec.NodeName)
	}
	key := p.Namespace + "/" + p.Name
	if old := h.pods[key]; old != nil {
		h.RemovePod(p.Namespace, p.Name)
	}
	h.nextPod++
	rec := &podRec{id: h.nextPod, node: p.Spec.NodeName, ns: p.Namespace, name: p.Name, pod: p, raw: raw}
	h.pods[key] = rec
	h.record(h.podAddOp(rec))
}

func (h *Host) podAddOp(rec *podRec) []byte {
	p := &rec.pod
	op := []byte{hostapi.SchedOpPodAdd}
	op = hostapi.AppendU32(op, h.nodes[rec.node].index)
	op = hostapi.AppendU32(op, rec.id)
	var flags uint8
	if p.DeletionTimestamp != nil {
		flags |= hostapi.SchedPodTerminating
	}
	op = append(op, flags)
	op = hostapi.AppendStr(op, string(p.UID))
	op = hostapi.AppendStr(op, p.Namespace)
	op = hostapi.AppendStr(op, p.Name)
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	op = hostapi.AppendU16(op, uint16(len(keys)))
	for _, k := range keys {
		op = hostapi.AppendStr(op, k)
		op = hostapi.AppendStr(op, p.Labels[k])
	}
	op = append(op, 0)            // no requests
	op = hostapi.AppendI64(op, 0) // nonzero cpu
	op = hostapi.AppendI64(op, 0) // nonzero memory
	var aff []byte
	if a := p.Spec.Affinity; a != nil && (a.PodAffinity != nil || a.PodAntiAffinity != nil) {
		aff, _ = json.Marshal(a)
	}
	return hostapi.AppendBlob(op, aff)
}

// RemovePod removes a bound pod.
func (h *Host) RemovePod(ns, name string) {
	key := ns + "/" + name
	rec := h.pods[key]
	if rec == nil {
		return
	}
	delete(h.pods, key)
	op := hostapi.AppendU32([]byte{hostapi.SchedOpPodRemove}, h.nodes[rec.node].index)
	h.record(hostapi.AppendU32(op, rec.id))
}

// fullOps returns the changes that build the whole table.
func (h *Host) fullOps() [][]byte {
	var ops [][]byte
	names := make([]string, 0, len(h.nodes))
	for n := range h.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		rec := h.nodes[name]
		op := []byte{hostapi.SchedOpNodeSet}
		op = hostapi.AppendU32(op, rec.index)
		op = hostapi.AppendStr(op, rec.name)
		op = append(op, 0)
		ops = append(ops, hostapi.AppendBlob(op, rec.raw))
	}
	keys := make([]string, 0, len(h.pods))
	for k := range h.pods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ops = append(ops, h.podAddOp(h.pods[k]))
	}
	return ops
}

// request encodes a request for c.
func (h *Host) request(c Caller, full bool, pod []byte, seq uint64, cands []uint32) []byte {
	base := h.seen[c]
	var ops [][]byte
	if full || base == 0 {
		base = 0
		ops = h.fullOps()
	} else {
		for _, ch := range h.log {
			if ch.gen > base {
				ops = append(ops, ch.op)
			}
		}
	}
	req := hostapi.AppendU64(nil, base)
	req = hostapi.AppendU64(req, h.gen)
	req = hostapi.AppendU32(req, uint32(len(ops)))
	for _, op := range ops {
		req = append(req, op...)
	}
	req = hostapi.AppendU64(req, seq)
	req = append(req, 0) // no requests
	req = hostapi.AppendI64(req, 0)
	req = hostapi.AppendI64(req, 0)
	req = hostapi.AppendBlob(req, pod)
	req = hostapi.AppendU32(req, uint32(len(cands)))
	for _, c := range cands {
		req = hostapi.AppendU32(req, c)
	}
	return req
}

// call sends a request (resyncing with the full table when asked) and
// returns the body after the status byte.
func (h *Host) call(t testing.TB, c Caller, export string, pod []byte, seq uint64, cands []uint32) []byte {
	t.Helper()
	if h.gen == 0 {
		h.gen = 1 // the empty table is generation 1, so base 0 always means "full"
	}
	full := false
	for attempt := 0; attempt < 2; attempt++ {
		out, err := c.Call(context.Background(), export, h.request(c, full, pod, seq, cands))
		if err != nil {
			t.Fatalf("schedtest: %s: %v", export, err)
		}
		if len(out) == 0 {
			t.Fatalf("schedtest: %s: empty response", export)
		}
		switch out[0] {
		case hostapi.SchedStatusOK:
			h.seen[c] = h.gen
			return out[1:]
		case hostapi.SchedStatusResync:
			full = true
			continue
		case hostapi.SchedStatusError:
			r := hostapi.NewSchedReader(out[1:])
			t.Fatalf("schedtest: %s: plugin error: %s", export, r.Blob())
		default:
			t.Fatalf("schedtest: %s: unknown status %d", export, out[0])
		}
	}
	t.Fatalf("schedtest: %s: resync loop", export)
	return nil
}

// candidates resolves node names (all nodes, by name, when none given).
func (h *Host) candidates(t testing.TB, names []string) ([]string, []uint32) {
	t.Helper()
	if len(names) == 0 {
		for n := range h.nodes {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	idx := make([]uint32, len(names))
	for i, n := range names {
		rec := h.nodes[n]
		if rec == nil {
			t.Fatalf("schedtest: node %q unknown", n)
		}
		idx[i] = rec.index
	}
	return names, idx
}

// Attempt is one scheduling attempt of a pod: Filter and Score calls of
// one attempt share the pod's sequence number, like the real host's.
type Attempt struct {
	h   *Host
	pod []byte
	seq uint64
}

// Pod starts an attempt for a pod (YAML or JSON).
func (h *Host) Pod(t testing.TB, doc string) *Attempt {
	t.Helper()
	h.seq++
	return &Attempt{h: h, pod: ToJSON(t, doc), seq: h.seq}
}

// Filter calls c's filter export with the named candidates (all nodes when
// none are named) and returns the reasons per rejected node.
func (a *Attempt) Filter(t testing.TB, c Caller, nodes ...string) map[string][]string {
	t.Helper()
	names, idx := a.h.candidates(t, nodes)
	body := a.h.call(t, c, hostapi.ExportFilter, a.pod, a.seq, idx)
	r := hostapi.NewSchedReader(body)
	nsets := int(r.U32())
	sets := make([][]string, nsets)
	for i := range sets {
		cnt := int(r.U8())
		for range cnt {
			sets[i] = append(sets[i], r.Str())
		}
	}
	n := int(r.U32())
	out := map[string][]string{}
	for i := 0; i < n; i++ {
		code := int(r.U16())
		if code == 0 {
			continue
		}
		if code > len(sets) || i >= len(names) {
			t.Fatalf("schedtest: filter: bad code %d for candidate %d", code, i)
		}
		out[names[i]] = slices.Clone(sets[code-1])
	}
	if err := r.Err(); err != nil {
		t.Fatalf("schedtest: filter response: %v", err)
	}
	if n != 0 && n != len(names) {
		t.Fatalf("schedtest: filter: %d codes for %d candidates", n, len(names))
	}
	return out
}

// Score calls c's score export with the named candidates (all nodes when
// none are named) and returns the score per node.
func (a *Attempt) Score(t testing.TB, c Caller, nodes ...string) map[string]int64 {
	t.Helper()
	names, idx := a.h.candidates(t, nodes)
	body := a.h.call(t, c, hostapi.ExportScore, a.pod, a.seq, idx)
	r := hostapi.NewSchedReader(body)
	n := int(r.U32())
	if n != len(names) {
		t.Fatalf("schedtest: score: %d scores for %d candidates", n, len(names))
	}
	out := make(map[string]int64, n)
	for i := 0; i < n; i++ {
		out[names[i]] = r.I64()
	}
	if err := r.Err(); err != nil {
		t.Fatalf("schedtest: score response: %v", err)
	}
	return out
}

// Forget makes the host send c the full table on its next call, as after
// a restart of the instance.
func (h *Host) Forget(c Caller) { delete(h.seen, c) }

// LoadWasm builds the plugin main package in dir to Wasm (once per test
// binary), loads it with the Tugboat runtime with settings (JSON, "" for
// none) and closes it when the test ends.
func LoadWasm(t testing.TB, dir, settings string) *runtime.Plugin {
	t.Helper()
	path := plugintest.BuildWasm(t, dir)
	ctx := context.Background()
	eng, err := runtime.NewEngine(ctx, runtime.Config{CacheDir: filepath.Join(os.TempDir(), "tugboat-schedtest-"+strconv.Itoa(os.Getuid()), "wazero-cache")})
	if err != nil {
		t.Fatalf("schedtest: new engine: %v", err)
	}
	t.Cleanup(func() { _ = eng.Close(ctx) })
	var s []byte
	if settings != "" {
		s = []byte(settings)
	}
	plug, err := eng.Load(ctx, runtime.PluginConfig{Name: filepath.Base(dir), Path: path, Settings: s})
	if err != nil {
		t.Fatalf("schedtest: load %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = plug.Close(ctx) })
	return plug
}
