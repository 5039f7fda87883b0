package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Exec implements dataplane.Runtime: the command runs with the
// container's environment and working directory (in its mount namespace
// when it has one, in its network namespace when it has one).
func (r *Runtime) Exec(ctx context.Context, id string, spec dataplane.ExecSpec) (int, error) {
	c, err := r.get(id)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	rec := c.rec
	r.mu.Unlock()
	if rec.Status != dataplane.Running {
		return 0, fmt.Errorf("exec runtime: container %s is not running: %w", id, errdefs.ErrInvalid)
	}
	if len(spec.Command) == 0 {
		return 0, fmt.Errorf("exec runtime: empty command: %w", errdefs.ErrInvalid)
	}
	argv := spec.Command
	if rec.MountNS && rec.Pid > 0 {
		argv = append([]string{"nsenter", "-t", strconv.Itoa(rec.Pid), "-m", "--"}, argv...)
	}
	path, err := lookPath(argv[0], rec.Env, rec.WorkingDir)
	if err != nil {
		return 126, nil
	}
	cmd := osexec.CommandContext(ctx, path, argv[1:]...)
	cmd.Env = rec.Env
	cmd.Dir = rec.WorkingDir
	cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = time.Second
	var closeAfter []*os.File
	defer func() {
		for _, f := range closeAfter {
			f.Close()
		}
	}()
	if spec.TTY {
		master, slave, err := openPTY()
		if err != nil {
			return 0, fmt.Errorf("exec runtime: exec in %s: %w", id, err)
		}
		closeAfter = append(closeAfter, master)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		cmd.Cancel = func() error { return unix.Kill(cmd.Process.Pid, unix.SIGKILL) }
		if spec.Stdin != nil {
			go io.Copy(master, spec.Stdin)
		}
		copied := make(chan struct{})
		if spec.Stdout != nil {
			go func() {
				defer close(copied)
				io.Copy(spec.Stdout, master) // ends with EIO once the slave side is closed
			}()
		} else {
			close(copied)
		}
		if spec.Resize != nil {
			go func() {
				for s := range spec.Resize {
					resize(master, s)
				}
			}()
		}
		if err := inNetNS(rec.NetNS, cmd.Start); err != nil {
			slave.Close()
			return 0, fmt.Errorf("exec runtime: exec in %s: %w", id, err)
		}
		slave.Close()
		err = cmd.Wait()
		select { // let the output drain
		case <-copied:
		case <-time.After(time.Second):
		}
	} else {
		if spec.Stdin != nil {
			// A pipe whose copier Wait does not wait for: an open
			// stdin must not hold the exit back.
			pr, pw, err := os.Pipe()
			if err != nil {
				return 0, fmt.Errorf("exec runtime: exec in %s: %w", id, err)
			}
			closeAfter = append(closeAfter, pw)
			cmd.Stdin = pr
			go func() {
				io.Copy(pw, spec.Stdin)
				pw.Close()
			}()
			err = inNetNS(rec.NetNS, cmd.Start)
			pr.Close()
			if err == nil {
				err = cmd.Wait()
			}
		} else if err = inNetNS(rec.NetNS, cmd.Start); err == nil {
			err = cmd.Wait()
		}
	}
	var ee *osexec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), ctx.Err()
		}
		return ee.ExitCode(), nil
	default:
		return 0, fmt.Errorf("exec runtime: exec in %s: %w", id, err)
	}
}
