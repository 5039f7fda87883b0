package scheduler

import (
	"context"
	"errors"
	"sync"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// fakePlugin is a guest written against the wire format alone (the SDK
// may not be imported by kernel tests): it keeps the node table as names
// and pod counts, rejects nodes listed in deny ("denied") and nodes
// holding maxPods pods ("full"), and scores 100 - 10 × pods.
type fakePlugin struct {
	name    string
	deny    map[string]bool
	maxPods int

	mu    sync.Mutex
	gen   uint64
	nodes map[uint32]string
	pods  map[uint32]uint32 // pod id -> node index
	count map[uint32]int    // node index -> pods
	calls int
	fulls int
}

func newFake(name string, maxPods int, deny ...string) *fakePlugin {
	f := &fakePlugin{name: name, maxPods: maxPods, deny: map[string]bool{}}
	for _, d := range deny {
		f.deny[d] = true
	}
	f.reset()
	return f
}

func (f *fakePlugin) reset() {
	f.gen = 0
	f.nodes = map[uint32]string{}
	f.pods = map[uint32]uint32{}
	f.count = map[uint32]int{}
}

func (f *fakePlugin) Name() string { return f.name }

// lose makes the fake behave like a replaced instance.
func (f *fakePlugin) lose() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reset()
}

var errFakeMessage = errors.New("fake: malformed request")

func (f *fakePlugin) Call(_ context.Context, export string, req []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	r := hostapi.NewSchedReader(req)
	base, gen, nops := r.U64(), r.U64(), r.U32()
	if base == 0 {
		f.reset()
		f.fulls++
	} else if base != f.gen {
		return hostapi.AppendU64([]byte{hostapi.SchedStatusResync}, f.gen), nil
	}
	for range nops {
		switch r.U8() {
		case hostapi.SchedOpNodeSet:
			idx, name := r.U32(), r.Str()
			for range int(r.U8()) {
				r.Resource()
			}
			r.U8()
			for range int(r.U16()) {
				r.Str()
				r.Str()
			}
			for range int(r.U16()) {
				r.Str()
				r.Str()
				r.Str()
			}
			for range int(r.U16()) {
				for range int(r.U16()) {
					r.Str()
				}
				r.I64()
			}
			r.Blob()
			f.nodes[idx] = name
		case hostapi.SchedOpNodeRemove:
			idx := r.U32()
			delete(f.nodes, idx)
			for id, n := range f.pods {
				if n == idx {
					delete(f.pods, id)
				}
			}
			delete(f.count, idx)
		case hostapi.SchedOpPodAdd:
			idx, id := r.U32(), r.U32()
			r.U8()
			r.Str()
			r.Str()
			r.Str()
			for range int(r.U16()) {
				r.Str()
				r.Str()
			}
			for range int(r.U8()) {
				r.Resource()
			}
			r.I64()
			r.I64()
			r.Blob()
			if old, ok := f.pods[id]; ok {
				f.count[old]--
			}
			f.pods[id] = idx
			f.count[idx]++
		case hostapi.SchedOpPodRemove:
			idx, id := r.U32(), r.U32()
			if f.pods[id] != idx {
				return nil, errFakeMessage
			}
			delete(f.pods, id)
			f.count[idx]--
		default:
			return nil, errFakeMessage
		}
	}
	if r.Err() != nil {
		return nil, errFakeMessage
	}
	f.gen = gen
	skipPodPart(&r)
	n := int(r.U32())
	cands := make([]uint32, n)
	for i := range cands {
		cands[i] = r.U32()
		if _, ok := f.nodes[cands[i]]; !ok {
			return nil, errFakeMessage
		}
	}
	if r.Err() != nil || r.Remaining() != 0 {
		return nil, errFakeMessage
	}
	out := []byte{hostapi.SchedStatusOK}
	if export == hostapi.ExportScore {
		out = hostapi.AppendU32(out, uint32(n))
		for _, c := range cands {
			out = hostapi.AppendI64(out, int64(100-10*f.count[c]))
		}
		return out, nil
	}
	out = hostapi.AppendU32(out, 2)
	out = append(out, 1|hostapi.SchedReasonsUnresolvable) // removing pods does not help
	out = hostapi.AppendStr(out, "denied")
	out = append(out, 1)
	out = hostapi.AppendStr(out, "full")
	out = hostapi.AppendU32(out, uint32(n))
	for _, c := range cands {
		code := uint16(0)
		switch {
		case f.deny[f.nodes[c]]:
			code = 1
		case f.maxPods > 0 && f.count[c] >= f.maxPods:
			code = 2
		}
		out = hostapi.AppendU16(out, code)
	}
	return out, nil
}

// skipPodPart steps over the pod part of a request.
func skipPodPart(r *hostapi.SchedReader) {
	r.U64()
	for range int(r.U8()) {
		r.Resource()
	}
	r.I64()
	r.I64()
	for range 5 {
		r.Str()
	}
	r.I64()
	for _, k := range []int{2, 2, 4, 1} {
		for range int(r.U16()) * k {
			r.Str()
		}
	}
	for range int(r.U16()) {
		r.Str()
		r.Str()
		r.U32()
	}
	r.Blob()
	r.Blob()
	r.Blob()
}

// counts returns the fake's view of pods per node name.
func (f *fakePlugin) counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for idx, c := range f.count {
		if c > 0 {
			out[f.nodes[idx]] = c
		}
	}
	return out
}
