package exec

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

var _ dataplane.StatsProvider = (*Runtime)(nil)

// pageSize is the unit of /proc/<pid>/stat's rss field.
var pageSize = uint64(os.Getpagesize())

// scanMaxAge is how long one scan of /proc answers Stats calls. A stats
// summary asks for every container in a burst; scanning /proc once per
// container made a 100-pod summary read /proc/*/stat 100 times over.
const scanMaxAge = 250 * time.Millisecond

// procScan is the per-session sums from one pass over /proc.
type procScan struct {
	mu       sync.Mutex
	at       time.Time
	sessions map[int]dataplane.Stats
}

// sessionStats returns the sums for session sid, rescanning /proc when
// the last scan is older than scanMaxAge.
func (p *procScan) sessionStats(sid int) dataplane.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions == nil || time.Since(p.at) > scanMaxAge {
		p.sessions, p.at = scanSessions(), time.Now()
	}
	return p.sessions[sid]
}

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
	return r.scan.sessionStats(pid), nil
}

// scanSessions sums CPU time and RSS of every process on the machine by
// session id, in one pass over /proc.
func scanSessions() map[int]dataplane.Stats {
	out := make(map[int]dataplane.Stats)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := procStatFields(pid)
		// After the name: state(0) ppid(1) pgrp(2) session(3) ...
		// utime(11) stime(12) ... rss(21).
		if len(f) < 22 {
			continue
		}
		sid, err := strconv.Atoi(f[3])
		if err != nil || sid <= 0 {
			continue
		}
		st := out[sid]
		ut, _ := strconv.ParseUint(f[11], 10, 64)
		stt, _ := strconv.ParseUint(f[12], 10, 64)
		st.CPU += time.Duration(ut+stt) * 10 * time.Millisecond // USER_HZ = 100
		if rss, err := strconv.ParseUint(strings.TrimSpace(f[21]), 10, 64); err == nil {
			st.MemoryBytes += rss * pageSize
		}
		out[sid] = st
	}
	return out
}
