package scheduler

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Module is a scheduler plugin as the host sees it: its manifest, its node
// table and the entry points behind the module's exports. In a Wasm guest
// the registered Module backs the exports; natively Call runs the same
// bytes-in, bytes-out path (tests, the native benchmark).
//
// A Module is not safe for concurrent use: the host calls one instance at
// a time.
type Module struct {
	manifest     sdk.Manifest
	manifestJSON []byte
	plugin       any
	filter       Filterer
	scorer       Scorer
	parts        PartScorer
	skipFilter   FilterSkipper
	skipScore    ScoreSkipper
	norm         Normalization
	hooks        hooks
	err          error

	snap    *Snapshot
	pod     Pod
	podBuf  []byte // the pod's JSON blobs
	hasPod  bool
	nodes   []*Node
	scores  []int64
	partsV  [][]int64
	result  FilterResult
	out     []byte
	lastErr string
}

// New returns the module of plugin p, which implements Filterer, Scorer
// or both (and optionally NodeWatcher, PodWatcher, Resetter, Configurer,
// Normalizer). An empty m.Kinds is filled from what p implements; a kind
// p does not implement is an error.
func New(p any, m sdk.Manifest) (*Module, error) {
	if p == nil {
		return nil, errors.New("sdk: scheduler plugin is nil")
	}
	if m.Name == "" {
		return nil, errors.New("sdk: manifest has no name")
	}
	mod := &Module{plugin: p, snap: newSnapshot()}
	mod.filter, _ = p.(Filterer)
	mod.scorer, _ = p.(Scorer)
	mod.parts, _ = p.(PartScorer)
	mod.skipFilter, _ = p.(FilterSkipper)
	mod.skipScore, _ = p.(ScoreSkipper)
	mod.hooks.node, _ = p.(NodeWatcher)
	mod.hooks.pod, _ = p.(PodWatcher)
	mod.hooks.reset, _ = p.(Resetter)
	if r, ok := p.(RawNodes); ok {
		mod.snap.keepRaw = r.RawNodes()
	}
	if r, ok := p.(ResourcesOnly); ok {
		mod.snap.lean = r.ResourcesOnly()
	}
	if n, ok := p.(Normalizer); ok {
		mod.norm = n.Normalization()
	}
	m.Kinds = slices.Clone(m.Kinds)
	m.Rules = nil
	m.Grants = slices.Clone(m.Grants)
	if len(m.Kinds) == 0 {
		if mod.filter != nil {
			m.Kinds = append(m.Kinds, hostapi.KindFilter)
		}
		if mod.scorer != nil {
			m.Kinds = append(m.Kinds, hostapi.KindScore)
		}
		if len(m.Kinds) == 0 {
			return nil, errors.New("sdk: plugin " + m.Name + " implements neither Filter nor Score")
		}
	}
	for _, k := range m.Kinds {
		switch {
		case k == hostapi.KindFilter && mod.filter != nil:
		case k == hostapi.KindScore && mod.scorer != nil:
		default:
			return nil, errors.New("sdk: manifest of " + m.Name + ": kind " + k + " is not implemented by the plugin")
		}
	}
	if !slices.Contains(m.Kinds, hostapi.KindFilter) {
		mod.filter = nil
	}
	if !slices.Contains(m.Kinds, hostapi.KindScore) {
		mod.scorer = nil
	}
	mod.manifest = m
	mod.manifestJSON = sdk.AppendManifest(nil, m)
	return mod, nil
}

// Name returns the manifest's name.
func (m *Module) Name() string { return m.manifest.Name }

// Manifest returns the module's manifest.
func (m *Module) Manifest() sdk.Manifest { return m.manifest }

// Plugin returns the plugin behind the module.
func (m *Module) Plugin() any { return m.plugin }

// Snapshot returns the module's node table (for tests).
func (m *Module) Snapshot() *Snapshot { return m.snap }

// Configure passes settings (JSON; empty means none) to the plugin if it
// is a Configurer; other plugins accept only empty settings.
func (m *Module) Configure(settings []byte) error {
	if m.err != nil {
		return m.err
	}
	v := rawjson.Value(settings)
	empty := v.IsNull()
	if !empty && !rawjson.Valid(settings) {
		return errors.New("settings are not valid JSON")
	}
	c, ok := m.plugin.(Configurer)
	if !ok {
		if !empty && (v.Kind() != rawjson.Object || v.Len() > 0) {
			return errors.New("plugin " + m.manifest.Name + " takes no settings")
		}
		return nil
	}
	if empty {
		v = nil
	}
	return c.Configure(v)
}

// Call runs the entry point behind a hostapi export name with input and
// returns the bytes the Wasm export would return (a copy). ctx is unused
// natively; it is there so a Module satisfies the host's plugin
// interface.
func (m *Module) Call(_ context.Context, export string, input []byte) ([]byte, error) {
	switch export {
	case hostapi.ExportManifest:
		return slices.Clone(m.manifestJSON), nil
	case hostapi.ExportConfigure:
		if err := m.Configure(input); err != nil {
			return []byte(err.Error()), nil
		}
		return nil, nil
	case hostapi.ExportFilter, hostapi.ExportScore:
		return slices.Clone(m.Serve(export, input)), nil
	case hostapi.ExportSchedRelevance:
		return m.appendRelevance(nil), nil
	}
	return nil, errors.New("sdk: module " + m.manifest.Name + " has no export " + export)
}

// Serve answers one filter or score request; the result is the module's
// buffer, valid until the next call.
func (m *Module) Serve(export string, in []byte) []byte {
	m.out = m.out[:0]
	if cap(m.out) > 1<<20 {
		m.out = nil
	}
	if err := m.serve(export, in); err != nil {
		m.out = append(m.out[:0], hostapi.SchedStatusError)
		m.out = hostapi.AppendBlob(m.out, []byte(err.Error()))
	}
	return m.out
}

// resync answers that the table is not at the request's base.
func (m *Module) resync() {
	m.out = append(m.out[:0], hostapi.SchedStatusResync)
	m.out = hostapi.AppendU64(m.out, m.snap.gen)
}

func (m *Module) serve(export string, in []byte) error {
	if m.err != nil {
		return m.err
	}
	var isFilter bool
	switch export {
	case hostapi.ExportFilter:
		if m.filter == nil {
			return errors.New("plugin " + m.manifest.Name + " is not a filter")
		}
		isFilter = true
	case hostapi.ExportScore:
		if m.scorer == nil {
			return errors.New("plugin " + m.manifest.Name + " is not a scorer")
		}
	}
	r := hostapi.NewSchedReader(in)
	base, gen, nops := r.U64(), r.U64(), r.U32()
	if err := r.Err(); err != nil {
		return err
	}
	if base == 0 {
		m.snap.reset(&m.hooks)
	} else if base != m.snap.gen {
		m.resync()
		return nil
	}
	if err := m.snap.apply(&r, nops, &m.hooks); err != nil {
		// The table is now in an unknown state: start over.
		m.snap.reset(&m.hooks)
		m.resync()
		return nil
	}
	m.snap.gen = gen
	if err := m.readPod(&r); err != nil {
		return err
	}
	if isFilter && m.skipFilter != nil && m.skipFilter.SkipFilter(m.snap, &m.pod) ||
		!isFilter && m.skipScore != nil && m.skipScore.SkipScore(m.snap, &m.pod) {
		m.out = append(m.out[:0], hostapi.SchedStatusSkip)
		return nil
	}
	n := int(r.U32())
	idx := r.Rest()
	if r.Err() != nil || len(idx) != 4*n {
		return hostapi.ErrSchedMessage()
	}
	if err := m.resolve(idx, n); err != nil {
		return err
	}
	if isFilter {
		return m.runFilter()
	}
	return m.runScore()
}

// resolve turns the packed candidate indexes into m.nodes.
func (m *Module) resolve(idx []byte, n int) error {
	if cap(m.nodes) < n {
		m.nodes = make([]*Node, n)
	}
	nodes := m.nodes[:n]
	table := m.snap.nodes
	for i := range nodes {
		j := binary.LittleEndian.Uint32(idx[4*i:])
		if int(j) >= len(table) || table[j] == nil {
			return errors.New("sdk: candidate node index not in the table")
		}
		nodes[i] = table[j]
	}
	m.nodes = nodes
	return nil
}

// readPod reads the pod part of a request, decoding the pod only for a new
// attempt.
func (m *Module) readPod(r *hostapi.SchedReader) error {
	seq := r.U64()
	if m.hasPod && m.pod.Seq == seq {
		skipPod(r)
		return r.Err()
	}
	m.hasPod = false
	m.pod.Seq = seq
	m.pod.State = nil
	aff, spread, raw := readPodFields(r, &m.pod, m.snap.lean)
	if err := r.Err(); err != nil {
		return err
	}
	m.podBuf = setBlobs(&m.pod, m.podBuf, aff, spread, raw)
	m.hasPod = true
	return nil
}

// skipPod steps over a pod part already decoded, without allocating.
func skipPod(r *hostapi.SchedReader) {
	n := int(r.U8())
	for range n {
		r.Resource()
	}
	r.I64()
	r.I64()
	for range 5 {
		r.StrBytes()
	}
	r.I64()
	skipPodDetails(r)
	r.Blob()
	r.Blob()
	r.Blob()
}

// skipPodDetails steps over the pod part's labels, node selector,
// tolerations, images and host ports.
func skipPodDetails(r *hostapi.SchedReader) {
	for _, strs := range [...]int{2, 2, 4, 1} {
		k := int(r.U16())
		for range k * strs {
			r.StrBytes()
		}
	}
	for range int(r.U16()) {
		r.StrBytes()
		r.StrBytes()
		r.U32()
	}
}

func (m *Module) runFilter() error {
	res := &m.result
	res.reset(len(m.nodes))
	if len(m.nodes) > 0 {
		if err := m.filter.Filter(m.snap, &m.pod, m.nodes, res); err != nil {
			return err
		}
	}
	out := append(m.out[:0], hostapi.SchedStatusOK)
	out = hostapi.AppendU32(out, uint32(len(res.sets)))
	for k, set := range res.sets {
		count := uint8(min(len(set), 0x7f))
		if res.unresolvable[k] {
			count |= hostapi.SchedReasonsUnresolvable
		}
		out = append(out, count)
		for _, s := range set[:count&0x7f] {
			out = hostapi.AppendStr(out, s)
		}
	}
	if !res.any {
		out = hostapi.AppendU32(out, 0)
	} else {
		out = hostapi.AppendU32(out, uint32(len(res.codes)))
		out = slices.Grow(out, 2*len(res.codes))
		at := len(out)
		out = out[:at+2*len(res.codes)]
		for i, c := range res.codes {
			binary.LittleEndian.PutUint16(out[at+2*i:], c)
		}
	}
	m.out = out
	return nil
}

// ScoreParts returns the number of score vectors the module's scorer
// answers with (hostapi's score parts; 1 for a plain Scorer).
func (m *Module) ScoreParts() int {
	if m.parts != nil {
		return max(m.parts.ScoreParts(), 1)
	}
	return 1
}

func (m *Module) runScore() error {
	n := len(m.nodes)
	k := m.ScoreParts()
	if cap(m.scores) < k*n {
		m.scores = make([]int64, k*n)
	}
	all := m.scores[:k*n]
	clear(all)
	if k == 1 {
		if n > 0 {
			if err := m.scorer.Score(m.snap, &m.pod, m.nodes, all); err != nil {
				return err
			}
		}
	} else {
		m.partsV = m.partsV[:0]
		for j := range k {
			m.partsV = append(m.partsV, all[j*n:(j+1)*n:(j+1)*n])
		}
		if n > 0 {
			if err := m.parts.ScoreAll(m.snap, &m.pod, m.nodes, m.partsV); err != nil {
				return err
			}
		}
	}
	out := append(m.out[:0], hostapi.SchedStatusOK)
	for j := range k {
		out = appendScores(out, all[j*n:(j+1)*n], m.norm)
	}
	m.out = out
	return nil
}

// appendScores normalises scores and appends them as one vector.
func appendScores(out []byte, scores []int64, norm Normalization) []byte {
	switch norm {
	case NormalizeMax:
		DefaultNormalize(scores, false)
	case NormalizeMaxReverse:
		DefaultNormalize(scores, true)
	}
	// A plain loop: a func value called per node is a real call in Wasm.
	nonzero := false
	for _, s := range scores {
		if s != 0 {
			nonzero = true
			break
		}
	}
	if !nonzero {
		return hostapi.AppendU32(out, 0) // all zero
	}
	n := len(scores)
	out = hostapi.AppendU32(out, uint32(n))
	out = slices.Grow(out, 8*n)
	at := len(out)
	out = out[:at+8*n]
	for i, s := range scores {
		binary.LittleEndian.PutUint64(out[at+8*i:], uint64(s))
	}
	return out
}

// FilterResult collects a filter's rejections. Candidates not rejected
// pass.
type FilterResult struct {
	codes []uint16
	sets  [][]string
	// unresolvable flags each set (RejectUnresolvable).
	unresolvable []bool
	intern       map[string]uint16
	any          bool
	// last is the last single reason and its code: filters reject many
	// nodes with the same constant, compared by pointer and length.
	last     string
	lastCode uint16
}

func (r *FilterResult) reset(n int) {
	if cap(r.codes) < n {
		r.codes = make([]uint16, n)
	}
	r.codes = r.codes[:n]
	clear(r.codes)
	r.sets = r.sets[:0]
	r.unresolvable = r.unresolvable[:0]
	if r.intern == nil {
		r.intern = map[string]uint16{}
	}
	clear(r.intern)
	r.any = false
	r.last, r.lastCode = "", 0
}

// Reject marks candidate i (an index into the nodes Filter got) as
// unable to run the pod, with one or more reasons (the strings
// kube-scheduler's message counts, e.g. "Insufficient cpu",
// "node(s) didn't match Pod's node affinity/selector"). A later Reject of
// the same candidate replaces the reasons.
func (r *FilterResult) Reject(i int, reasons ...string) { r.reject(i, false, reasons) }

// RejectUnresolvable is Reject for reasons that removing pods from the
// node cannot change (kube-scheduler's UnschedulableAndUnresolvable: node
// name, cordon, node affinity, taints): preemption does not consider the
// node.
func (r *FilterResult) RejectUnresolvable(i int, reasons ...string) { r.reject(i, true, reasons) }

func (r *FilterResult) reject(i int, unresolvable bool, reasons []string) {
	if i < 0 || i >= len(r.codes) {
		return
	}
	if !unresolvable && len(reasons) == 1 && r.lastCode != 0 && reasons[0] == r.last {
		r.codes[i] = r.lastCode
		return
	}
	if len(reasons) == 0 {
		reasons = []string{"rejected"}
	}
	key := reasons[0]
	if len(reasons) > 1 {
		key = strings.Join(reasons, "\x00")
	}
	if unresolvable {
		key = "\x01" + key
	}
	code, ok := r.intern[key]
	if !ok {
		if len(r.sets) >= 0xfffe {
			code = uint16(len(r.sets))
		} else {
			r.sets = append(r.sets, slices.Clone(reasons))
			r.unresolvable = append(r.unresolvable, unresolvable)
			code = uint16(len(r.sets))
			r.intern[key] = code
		}
	}
	r.codes[i] = code
	r.any = true
	if !unresolvable && len(reasons) == 1 && code != 0 {
		r.last, r.lastCode = reasons[0], code
	}
}

// RejectAll rejects every candidate with the same reasons.
func (r *FilterResult) RejectAll(reasons ...string) {
	for i := range r.codes {
		r.Reject(i, reasons...)
	}
}

// RejectAllUnresolvable rejects every candidate with the same
// unresolvable reasons (see RejectUnresolvable).
func (r *FilterResult) RejectAllUnresolvable(reasons ...string) {
	for i := range r.codes {
		r.RejectUnresolvable(i, reasons...)
	}
}

// Rejected reports whether candidate i has been rejected.
func (r *FilterResult) Rejected(i int) bool { return i >= 0 && i < len(r.codes) && r.codes[i] != 0 }

// errNoPlugin: the main package registered nothing.
var errNoPlugin = errors.New("sdk: no scheduler plugin registered (call scheduler.Register from init)")

// registered is the module Register installed.
var registered *Module

// Register installs p as the module's scheduler plugin. Call it once,
// from an init function of the plugin's main package; a registration
// error is reported by the configure export, which stops the server.
func Register(p any, m sdk.Manifest) {
	if registered != nil {
		registered = &Module{manifest: registered.manifest, manifestJSON: registered.manifestJSON, snap: newSnapshot(),
			err: errors.New("sdk: more than one plugin registered in module " + registered.manifest.Name)}
	} else {
		mod, err := New(p, m)
		if err != nil {
			mod = &Module{manifest: m, manifestJSON: sdk.AppendManifest(nil, m), snap: newSnapshot(), err: err}
		}
		registered = mod
	}
	sdk.RegisterEntry(entry{registered})
}

// Registered returns the module installed by Register.
func Registered() (*Module, error) {
	if registered == nil {
		return nil, errNoPlugin
	}
	if registered.err != nil {
		return nil, registered.err
	}
	return registered, nil
}

// entry adapts the registered module to sdk.Entry (the exports).
type entry struct{ m *Module }

func (e entry) ManifestJSON() []byte                  { return e.m.manifestJSON }
func (e entry) Configure(settings []byte) error       { return e.m.Configure(settings) }
func (e entry) Serve(export string, in []byte) []byte { return e.m.Serve(export, in) }
