package exec

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

var _ dataplane.StatsProvider = (*Runtime)(nil)

// pageSize is the unit of /proc/<pid>/stat's rss field.
var pageSize = uint64(os.Getpagesize())

// Stats implements dataplane.StatsProvider: the sums over the processes
// of the container's session (its wrapper started one), from /proc.
func (r *Runtime) Stats(id string) (dataplane.Stats, error) {
	c, err := r.get(id)
	if err != nil {
		return dataplane.Stats{}, err
	}
	r.mu.Lock()
	pid, running := c.rec.Pid, c.rec.Status == dataplane.Running
	r.mu.Unlock()
	if !running || pid == 0 {
		return dataplane.Stats{}, nil
	}
	return sessionStats(pid), nil
}

// sessionStats sums CPU time and RSS of the processes in session sid.
func sessionStats(sid int) dataplane.Stats {
	var st dataplane.Stats
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return st
	}
	want := strconv.Itoa(sid)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := procStatFields(pid)
		// After the name: state(0) ppid(1) pgrp(2) session(3) ...
		// utime(11) stime(12) ... rss(21).
		if len(f) < 22 || f[3] != want {
			continue
		}
		ut, _ := strconv.ParseUint(f[11], 10, 64)
		stt, _ := strconv.ParseUint(f[12], 10, 64)
		st.CPU += time.Duration(ut+stt) * 10 * time.Millisecond // USER_HZ = 100
		if rss, err := strconv.ParseUint(strings.TrimSpace(f[21]), 10, 64); err == nil {
			st.MemoryBytes += rss * pageSize
		}
	}
	return st
}
