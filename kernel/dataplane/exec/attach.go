package exec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// AttachStdin returns a writer to the stdin of running container id,
// which must have been started with ContainerSpec.Stdin (its stdin is a
// FIFO in the container's directory that the wrapper holds open for
// reading and writing). Closing the writer detaches; the container's
// stdin stays open, so it never sees end of file (the kubelet's
// stdinOnce is not supported).
func (r *Runtime) AttachStdin(id string) (io.WriteCloser, error) {
	st, err := r.State(id)
	if err != nil {
		return nil, err
	}
	if st.Status != dataplane.Running {
		return nil, fmt.Errorf("exec runtime: attach %s: container is not running: %w", id, errdefs.ErrConflict)
	}
	p := filepath.Join(r.ctrDir(id), "in")
	// Non-blocking so that a FIFO nobody reads fails (ENXIO) instead of
	// hanging. The wrapper holds a reader while the container runs, from
	// just after it starts: wait briefly for that.
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	for deadline := time.Now().Add(5 * time.Second); errors.Is(err, unix.ENXIO) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		fd, err = unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	}
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("exec runtime: attach %s: the container was not started with stdin: %w", id, errdefs.ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("exec runtime: attach %s: %w", id, err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("exec runtime: attach %s: %w", id, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}
