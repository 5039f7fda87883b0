package containerd

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

var _ dataplane.StatsProvider = (*Runtime)(nil)

// Stats implements dataplane.StatsProvider from the container's cgroup
// (found through /proc/<pid>/cgroup; v1 cpuacct and memory controllers or
// the v2 unified hierarchy). Exited containers and unreadable cgroups
// report zero use.
func (r *Runtime) Stats(id string) (dataplane.Stats, error) {
	c, err := r.get(id)
	if err != nil {
		return dataplane.Stats{}, err
	}
	r.mu.Lock()
	pid, running := c.rec.Pid, c.task != nil
	r.mu.Unlock()
	if !running || pid <= 0 {
		return dataplane.Stats{}, nil
	}
	return cgroupStats(pid), nil
}

// cgroupStats reads the CPU time and memory use of pid's cgroup.
func cgroupStats(pid int) dataplane.Stats {
	var st dataplane.Stats
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return st
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		ctrls := strings.Split(f[1], ",")
		switch {
		case slices.Contains(ctrls, "cpuacct"):
			if n, ok := readUint(filepath.Join("/sys/fs/cgroup/cpuacct", f[2], "cpuacct.usage")); ok {
				st.CPU = time.Duration(n)
			}
		case slices.Contains(ctrls, "memory"):
			if n, ok := readUint(filepath.Join("/sys/fs/cgroup/memory", f[2], "memory.usage_in_bytes")); ok {
				st.MemoryBytes = n
			}
		case f[1] == "" && f[0] == "0":
			dir := filepath.Join("/sys/fs/cgroup", f[2])
			if n, ok := readUint(filepath.Join(dir, "memory.current")); ok && st.MemoryBytes == 0 {
				st.MemoryBytes = n
			}
			if b, err := os.ReadFile(filepath.Join(dir, "cpu.stat")); err == nil && st.CPU == 0 {
				for _, l := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
						if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
							st.CPU = time.Duration(n) * time.Microsecond
						}
					}
				}
			}
		}
	}
	return st
}

func readUint(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}
