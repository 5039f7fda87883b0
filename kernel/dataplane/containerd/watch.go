package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	cerrdefs "github.com/containerd/errdefs"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// This file follows containers to their exit: the exit watchers, adoption
// by a new Runtime and the exit record.

// watch waits for the container's exit in the background. A broken wait
// (containerd restarted) is resumed on the reloaded task; a task that is
// gone by then ended unseen (exit 137).
func (r *Runtime) watch(c *container, exitCh <-chan client.ExitStatus) {
	r.wg.Go(func() {
		for {
			select {
			case st := <-exitCh:
				if st.Error() == nil {
					r.finish(c, st)
					return
				}
				if r.life.Err() != nil {
					return // closing: the next runtime watches
				}
				r.log.Warn("containerd runtime: wait for exit; retrying", "container", c.rec.ID, "err", st.Error())
				select {
				case <-time.After(time.Second):
				case <-r.life.Done():
					return
				}
				ch, gone := r.rewait(c)
				if gone {
					r.finish(c, exitStatus(137))
					return
				}
				if ch != nil {
					exitCh = ch
				} else {
					exitCh = brokenWait()
				}
			case <-r.life.Done():
				return
			}
		}
	})
}

// rewait reloads c's task and waits on it again; gone reports a task that
// no longer exists.
func (r *Runtime) rewait(c *container) (ch <-chan client.ExitStatus, gone bool) {
	ctr, err := r.client.LoadContainer(r.life, c.rec.CID)
	if cerrdefs.IsNotFound(err) {
		return nil, true
	}
	if err != nil {
		return nil, false
	}
	task, err := ctr.Task(r.life, fifoAttach(r.ctrDir(c.rec.ID), c.rec.TTY))
	if cerrdefs.IsNotFound(err) {
		return nil, true
	}
	if err != nil {
		return nil, false
	}
	ch, err = task.Wait(r.life)
	if err != nil {
		return nil, false
	}
	r.mu.Lock()
	if c.task != nil {
		c.task = task
	}
	r.mu.Unlock()
	return ch, false
}

// brokenWait is a wait that failed at once, to be retried.
func brokenWait() <-chan client.ExitStatus {
	ch := make(chan client.ExitStatus, 1)
	ch <- *client.NewExitStatus(client.UnknownExitStatus, time.Time{}, errors.New("wait unavailable"))
	return ch
}

// finish records c's exit and deletes its task.
func (r *Runtime) finish(c *container, st client.ExitStatus) {
	r.mu.Lock()
	if c.rec.Status != dataplane.Running || c.finishing {
		r.mu.Unlock()
		return
	}
	c.finishing = true
	task, pipe := c.task, c.pipe
	c.task, c.pipe = nil, nil
	r.mu.Unlock()
	if pipe != nil {
		pipe.finish()
	}
	code := int(st.ExitCode())
	oom := code == 137 && r.oomKilled(c.rec.CID)
	ctx := r.life
	if task != nil {
		if _, err := task.Delete(ctx); err != nil && !cerrdefs.IsNotFound(err) {
			task.Delete(ctx, client.WithProcessKill)
		}
	}
	r.mu.Lock()
	c.rec.Status = dataplane.Exited
	c.rec.FinishedAt = st.ExitTime()
	if c.rec.FinishedAt.IsZero() || c.rec.FinishedAt.Before(c.rec.StartedAt) || c.rec.FinishedAt.Year() < 2000 {
		c.rec.FinishedAt = time.Now()
	}
	c.rec.ExitCode, c.rec.OOM = code, oom
	switch {
	case oom:
		c.rec.Reason = "OOMKilled"
	case code == 0:
		c.rec.Reason = "Completed"
	default:
		c.rec.Reason = "Error"
	}
	r.mu.Unlock()
	// Saved before Stop and Remove see the exit, so Remove never races
	// the state file.
	if err := r.save(c); err != nil {
		r.log.Warn("containerd runtime: save state", "container", c.rec.ID, "err", err)
	}
	close(c.exited)
	r.notify(c.rec.ID)
}

// load adopts the containers recorded in the directory: running ones get
// their task and FIFOs back, those that exited meanwhile are finished
// with the exit status containerd kept.
func (r *Runtime) load(ctx context.Context) error {
	if err := r.loadSandboxes(ctx); err != nil {
		return err
	}
	ents, err := os.ReadDir(r.opts.Dir)
	if err != nil {
		return fmt.Errorf("containerd runtime: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.opts.Dir, e.Name(), "state.json"))
		if err != nil {
			os.RemoveAll(filepath.Join(r.opts.Dir, e.Name())) // never started
			continue
		}
		c := &container{exited: make(chan struct{})}
		if err := json.Unmarshal(b, &c.rec); err != nil || c.rec.ID != e.Name() {
			r.log.Warn("containerd runtime: bad state file; forgetting the container", "container", e.Name(), "err", err)
			continue
		}
		r.ctrs[c.rec.ID] = c
		if c.rec.Status != dataplane.Running {
			close(c.exited)
			continue
		}
		if err := r.adopt(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// adopt reattaches a running container's task.
func (r *Runtime) adopt(ctx context.Context, c *container) error {
	id := c.rec.ID
	ctr, err := r.client.LoadContainer(ctx, c.rec.CID)
	if err != nil {
		r.log.Warn("containerd runtime: container vanished", "container", id, "err", err)
		r.finish(c, exitStatus(137))
		return nil
	}
	task, err := ctr.Task(ctx, fifoAttach(r.ctrDir(id), c.rec.TTY))
	if err != nil {
		r.log.Warn("containerd runtime: task vanished", "container", id, "err", err)
		r.finish(c, exitStatus(137))
		return nil
	}
	pipe, err := openLogPipe(r.ctrDir(id), r.LogPath(id))
	if err != nil {
		return fmt.Errorf("containerd runtime: adopt %s: %w", id, err)
	}
	c.task, c.pipe = task, pipe
	exitCh, err := task.Wait(r.life)
	if err != nil {
		r.finish(c, exitStatus(137))
		return nil
	}
	r.watch(c, exitCh)
	return nil
}

// exitStatus is an exit status for a container whose end was not seen.
func exitStatus(code uint32) client.ExitStatus {
	return *client.NewExitStatus(code, time.Now(), nil)
}

// oomKilled reports whether the container's cgroup hit its memory limit
// (cgroup v1 memory.failcnt or v2 memory.events oom_kill).
func (r *Runtime) oomKilled(id string) bool {
	// containerd's default cgroup path is /<namespace>/<id>.
	rel := filepath.Join(r.opts.Namespace, id)
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", rel, "memory.oom_control")); err == nil {
		return hasNonZero(string(b), "oom_kill ")
	}
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", rel, "memory.events")); err == nil {
		return hasNonZero(string(b), "oom_kill ")
	}
	return false
}

func hasNonZero(s, key string) bool {
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			return strings.TrimSpace(v) != "0"
		}
	}
	return false
}
