package runtime

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// A snapshot is the state of a plugin's first instance once it is
// initialized and configured: its linear memory and the values of its
// mutable globals. A Wasm instance has no other state (Go guests run one
// thread; the host keeps no per-instance WASI state for a plugin without
// clock or randomness), so writing a snapshot into a freshly instantiated
// module gives an instance in the same state without running the Go
// runtime's initialization and the plugin's configure again, which is most
// of the cost of a new instance. Plugins granted the clock or randomness
// start every instance the long way: their initialization may depend on
// what those return.
type snapshot struct {
	size     uint32                       // of the memory
	data     []byte                       // the bytes of runs, one after the other
	alloc    experimental.MemoryAllocator // see allocator
	runs     []memRun                     // the parts of the memory that differ from a new instance's
	globals  []uint64                     // in the order of instance.globals
	reuseMax uint32
}

// bindGlobals finds the mutable globals the rewrite exported
// (globalExportPrefix).
func (in *instance) bindGlobals(mod api.Module) {
	for i := 0; ; i++ {
		g := mod.ExportedGlobal(globalExportPrefix + strconv.Itoa(i))
		if g == nil {
			return
		}
		if mg, ok := g.(api.MutableGlobal); ok {
			in.globals = append(in.globals, mg)
		}
	}
}

// takeSnapshot records the state of in, an idle configured instance; nil
// when the plugin's instances must start the long way.
func (p *Plugin) takeSnapshot(ctx context.Context, in *instance) *snapshot {
	if len(p.grants) > 0 || len(in.globals) == 0 {
		return nil
	}
	view, ok := in.mem.Read(0, in.mem.Size())
	if !ok {
		return nil
	}
	// A new instance's memory holds the data segments and zeros: only the
	// blocks the snapshot changes need writing (about half of a Go
	// guest's; the others are never touched, so they cost neither time
	// nor resident memory).
	fresh, err := p.e.rt.InstantiateModule(ctx, p.compiled, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil
	}
	defer fresh.Close(context.WithoutCancel(ctx))
	base, ok := fresh.Memory().Read(0, fresh.Memory().Size())
	if !ok {
		return nil
	}
	s := &snapshot{size: uint32(len(view)), globals: make([]uint64, len(in.globals)), reuseMax: in.reuseMax}
	s.alloc = s.allocator()
	for i, g := range in.globals {
		s.globals[i] = g.Get()
	}
	for off := 0; off < len(view); off += snapshotBlock {
		blk := view[off:min(off+snapshotBlock, len(view))]
		var was []byte
		if off < len(base) {
			was = base[off:min(off+snapshotBlock, len(base))]
		}
		if bytes.Equal(blk[:len(was)], was) && allZero(blk[len(was):]) {
			continue
		}
		if n := len(s.runs); n > 0 && s.runs[n-1].end == uint32(off) {
			s.runs[n-1].end = uint32(off + len(blk))
		} else {
			s.runs = append(s.runs, memRun{uint32(off), uint32(off + len(blk))})
		}
		s.data = append(s.data, blk...)
	}
	s.data = slices.Clip(s.data)
	return s
}

// snapshotBlock is the unit in which a snapshot is compared with a new
// instance's memory (a page of the host).
const snapshotBlock = 4 << 10

// memRun is a range of memory a restore writes.
type memRun struct{ start, end uint32 }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// restore writes s into in, a new instance that has not run anything.
func (in *instance) restore(s *snapshot) error {
	if len(in.globals) != len(s.globals) {
		return fmt.Errorf("snapshot of %d globals for an instance of %d: %w", len(s.globals), len(in.globals), errdefs.ErrInvalid)
	}
	if size := in.mem.Size(); s.size > size {
		if _, ok := in.mem.Grow((s.size - size + wasmPageSize - 1) / wasmPageSize); !ok {
			return fmt.Errorf("snapshot of %d bytes above the memory limit: %w", s.size, errdefs.ErrInvalid)
		}
	}
	data := s.data
	for _, r := range s.runs {
		n := r.end - r.start
		if !in.mem.Write(r.start, data[:n]) {
			return fmt.Errorf("snapshot of %d bytes outside memory: %w", s.size, errdefs.ErrInvalid)
		}
		data = data[n:]
	}
	for i, g := range in.globals {
		g.Set(s.globals[i])
	}
	in.reuseMax = s.reuseMax
	in.restored = true
	return nil
}

// allocator backs the linear memory of instances restored from s: the
// first buffer has the snapshot's size as its capacity, so growing the
// memory to it copies nothing (growing a fresh instance's memory to the
// size of an initialized Go guest reallocates it, which cost as much as
// the initialization saved).
func (s *snapshot) allocator() experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capBytes, maxBytes uint64) experimental.LinearMemory {
		return &linearMemory{buf: make([]byte, 0, min(max(capBytes, uint64(s.size)), maxBytes)), max: maxBytes}
	})
}

// linearMemory is a Wasm linear memory in a Go slice.
type linearMemory struct {
	buf []byte
	max uint64
}

// Reallocate implements experimental.LinearMemory: it grows within the
// capacity in place, beyond it into a copy with room to grow.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		buf := make([]byte, size, min(max(size, uint64(cap(m.buf))*5/4), m.max))
		copy(buf, m.buf)
		m.buf = buf
	}
	m.buf = m.buf[:size]
	return m.buf
}

// Free implements experimental.LinearMemory; the garbage collector frees
// the buffer.
func (m *linearMemory) Free() {}
