package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	cerrdefs "github.com/containerd/errdefs"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Exec implements dataplane.Runtime: the command runs as an extra process
// of the container's task, with the container's environment, working
// directory, user and namespaces.
func (r *Runtime) Exec(ctx context.Context, id string, spec dataplane.ExecSpec) (int, error) {
	c, err := r.get(id)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	task, cid := c.task, c.rec.CID
	r.mu.Unlock()
	if task == nil {
		return 0, fmt.Errorf("containerd runtime: container %s is not running: %w", id, errdefs.ErrInvalid)
	}
	if len(spec.Command) == 0 {
		return 0, fmt.Errorf("containerd runtime: empty command: %w", errdefs.ErrInvalid)
	}
	ctx = r.ns(ctx)
	ctr, err := r.client.LoadContainer(ctx, cid)
	if err != nil {
		return 0, fmt.Errorf("containerd runtime: exec in %s: %w", id, err)
	}
	ospec, err := ctr.Spec(ctx)
	if err != nil {
		return 0, fmt.Errorf("containerd runtime: exec in %s: %w", id, err)
	}
	pspec := *ospec.Process
	pspec.Args = spec.Command
	pspec.Terminal = spec.TTY
	var stdin io.Reader
	stdinDone := make(chan struct{})
	if spec.Stdin != nil {
		stdin = &eofReader{r: spec.Stdin, done: stdinDone}
	}
	stdout, stderr := spec.Stdout, spec.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	// Both streams are copied concurrently and often share one writer.
	var outMu sync.Mutex
	stdout, stderr = &lockedWriter{w: stdout, mu: &outMu}, &lockedWriter{w: stderr, mu: &outMu}
	opts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr), cio.WithFIFODir(filepath.Join(r.opts.Dir, ".fifo"))}
	if spec.TTY {
		opts = append(opts, cio.WithTerminal)
	}
	execID := "exec-" + randomHex(8)
	proc, err := task.Exec(ctx, execID, &pspec, cio.NewCreator(opts...))
	if err != nil {
		return 0, fmt.Errorf("containerd runtime: exec in %s: %w", id, err)
	}
	dctx := r.ns(context.WithoutCancel(ctx))
	defer proc.Delete(dctx, client.WithProcessKill)
	exitCh, err := proc.Wait(dctx)
	if err != nil {
		return 0, fmt.Errorf("containerd runtime: exec in %s: %w", id, err)
	}
	if err := proc.Start(ctx); err != nil {
		if cerrdefs.IsNotFound(err) || cerrdefs.IsUnknown(err) {
			return 126, nil // the command cannot run, like a shell's 126/127
		}
		return 0, fmt.Errorf("containerd runtime: exec in %s: %w", id, err)
	}
	finished := make(chan struct{})
	defer close(finished)
	if stdin != nil {
		// The shim closes the process's stdin only when told.
		go func() {
			select {
			case <-stdinDone:
				proc.CloseIO(dctx, client.WithStdinCloser)
			case <-finished:
			}
		}()
	}
	if spec.Resize != nil && spec.TTY {
		go func() {
			for s := range spec.Resize {
				proc.Resize(dctx, uint32(s.Width), uint32(s.Height))
			}
		}()
	}
	select {
	case st := <-exitCh:
		if proc.IO() != nil {
			proc.IO().Wait() // output drained
		}
		return int(st.ExitCode()), nil
	case <-ctx.Done():
		proc.Kill(dctx, 9)
		st := <-exitCh
		return int(st.ExitCode()), ctx.Err()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// eofReader closes done once its reader ends.
type eofReader struct {
	r    io.Reader
	done chan struct{}
	once sync.Once
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.done) })
	}
	return n, err
}

// lockedWriter serializes writes to w with other writers sharing mu.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
