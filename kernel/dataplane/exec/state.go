package exec

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// save writes c's record atomically.
func (r *Runtime) save(c *container) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.saveLocked(c)
}

// saveLocked is save with r.mu held: saves of one container never
// overtake each other.
func (r *Runtime) saveLocked(c *container) error {
	b, err := json.Marshal(c.rec)
	if err != nil {
		return err
	}
	p := filepath.Join(r.ctrDir(c.rec.ID), "state.json")
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// load adopts the containers recorded in the directory.
func (r *Runtime) load() error {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return fmt.Errorf("exec runtime: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.dir, e.Name(), "state.json"))
		if err != nil {
			os.RemoveAll(filepath.Join(r.dir, e.Name())) // never started
			continue
		}
		c := &container{exited: make(chan struct{})}
		if err := json.Unmarshal(b, &c.rec); err != nil || c.rec.ID != e.Name() {
			r.log.Warn("exec runtime: bad state file; forgetting the container", "container", e.Name(), "err", err)
			continue
		}
		r.ctrs[c.rec.ID] = c
		if c.rec.Status != dataplane.Running {
			close(c.exited)
			continue
		}
		if c.rec.Pid == 0 {
			continue // placeholder
		}
		if c.logf, err = os.OpenFile(r.LogPath(c.rec.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return fmt.Errorf("exec runtime: log: %w", err)
		}
		if err := r.openFIFOs(c); err != nil {
			return err
		}
		r.startPumps(c)
		if code, done := r.exitOf(c); done {
			c.rec.Status = dataplane.Running
			r.finish(c, code)
		}
	}
	return nil
}

// procStart returns /proc/<pid>/stat's starttime (0 if pid is gone).
func procStart(pid int) uint64 {
	f := procStatFields(pid)
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

func zombie(pid int) bool {
	f := procStatFields(pid)
	return len(f) > 0 && f[0] == "Z"
}

// procStatFields returns the fields of /proc/<pid>/stat after the command
// name (state first).
func procStatFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// KillAll kills every running container recorded under dir (a Runtime's
// Options.Dir) without a Runtime: for tests and tools that must leave no
// processes behind after a server was killed.
func KillAll(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "state.json"))
		if err != nil {
			continue
		}
		var rec record
		if json.Unmarshal(b, &rec) != nil || rec.Status != dataplane.Running || rec.Pid <= 0 {
			continue
		}
		if procStart(rec.Pid) == rec.ProcStart {
			unix.Kill(-rec.Pid, unix.SIGKILL)
		}
	}
}
