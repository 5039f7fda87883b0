package wasi

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/experimental"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

var _ dataplane.StatsProvider = (*Runtime)(nil)

// Stats implements dataplane.StatsProvider: CPU is the CPU time of the
// OS thread the module runs on (it is locked to one), memory the size of
// its linear memory. Exited containers report zero use.
func (r *Runtime) Stats(id string) (dataplane.Stats, error) {
	c, err := r.get(id)
	if err != nil {
		return dataplane.Stats{}, err
	}
	var st dataplane.Stats
	if c.mem != nil && c.tid.Load() != 0 {
		st.MemoryBytes = c.mem.size.Load()
	}
	if tid := c.tid.Load(); tid != 0 {
		st.CPU = threadCPU(int(tid))
	}
	return st, nil
}

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100

// threadCPU reads utime+stime of one of this process's threads.
func threadCPU(tid int) time.Duration {
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / clockTicks
}

// memoryMeter allocates a module's linear memory on the Go heap and
// tracks its size for Stats.
type memoryMeter struct {
	size atomic.Uint64
}

// Allocate implements experimental.MemoryAllocator.
func (m *memoryMeter) Allocate(capacity, max uint64) experimental.LinearMemory {
	return &linearMemory{meter: m, buf: make([]byte, 0, capacity), max: max}
}

type linearMemory struct {
	meter *memoryMeter
	buf   []byte
	max   uint64
}

// Reallocate implements experimental.LinearMemory.
func (l *linearMemory) Reallocate(size uint64) []byte {
	if size > l.max {
		return nil
	}
	if size <= uint64(cap(l.buf)) {
		l.buf = l.buf[:size]
	} else {
		nb := make([]byte, size, min(max(size, 2*uint64(cap(l.buf))), l.max))
		copy(nb, l.buf)
		l.buf = nb
	}
	l.meter.size.Store(size)
	return l.buf
}

// Free implements experimental.LinearMemory.
func (l *linearMemory) Free() {
	l.buf = nil
	l.meter.size.Store(0)
}
