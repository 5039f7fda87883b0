package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
)

// StdinAttacher is a runtime that can feed the stdin of a running
// container started with ContainerSpec.Stdin (kubectl attach -i).
// AttachStdin returns a writer to it; closing the writer detaches without
// closing the container's stdin.
type StdinAttacher interface {
	AttachStdin(id string) (io.WriteCloser, error)
}

// serveAttach attaches to a running container (kubelet's /attach): its
// output from now on, read from the container's log and sent on the
// stdout and stderr streams, and, with stdin, the client's input into the
// container's stdin. It ends when the container exits or the client goes.
// A terminal (tty) is not supported.
func (a *Agent) serveAttach(w http.ResponseWriter, r *http.Request) {
	id, err := a.containerID(r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container"), false)
	if err == nil {
		var st dataplane.State
		if st, err = a.rt.State(id); err == nil && st.Status != dataplane.Running {
			err = apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", r.PathValue("container")))
		}
	}
	o := parseStreamOptions(r)
	var stdin io.WriteCloser
	if err == nil && o.tty {
		err = apierrors.NewBadRequest("attach with a terminal (tty) is not supported by the " + a.rt.Name() + " runtime")
	}
	if err == nil && o.stdin {
		att, ok := a.rt.(StdinAttacher)
		if !ok {
			err = apierrors.NewBadRequest("the " + a.rt.Name() + " runtime cannot attach to a container's stdin")
		} else if stdin, err = att.AttachStdin(id); err != nil {
			err = apierrors.NewBadRequest(err.Error())
		}
	}
	if err != nil {
		writeStatusError(w, err)
		return
	}
	if stdin != nil {
		defer stdin.Close()
	}
	// The log's current end: attach shows output from now on.
	f, err := os.Open(a.rt.LogPath(id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		writeStatusError(w, err)
		return
	}
	var offset int64
	if f != nil {
		defer f.Close()
		if offset, err = f.Seek(0, io.SeekEnd); err != nil {
			writeStatusError(w, err)
			return
		}
	}
	s, err := upgradeStreams(w, r, o)
	if err != nil {
		a.log.Debug("agent: attach streams", "err", err)
		return // the upgrade path already answered
	}
	defer s.close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if stdin != nil && s.stdin != nil {
		go func() {
			io.Copy(stdin, s.stdin)
			// The client closed its stdin; the container's stays open
			// (no stdinOnce), and the output keeps streaming.
		}()
	}
	if f != nil {
		a.followAttached(ctx, f, offset, id, s.stdout, s.stderr)
	}
	s.writeStatus(0, nil)
}

// followAttached copies the lines appended to the CRI log f after offset
// to stdout and stderr by their stream, until the container exits (then
// drains) or ctx ends.
func (a *Agent) followAttached(ctx context.Context, f *os.File, offset int64, id string, stdout, stderr io.Writer) {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return
	}
	br := bufio.NewReader(f)
	var partial []byte
	emit := func(l []byte) bool {
		// <time> <stream> <tag> <message>\n
		p := bytes.SplitN(l, []byte{' '}, 4)
		if len(p) < 4 {
			return true
		}
		w := stdout
		if string(p[1]) == "stderr" {
			w = stderr
		}
		if w == nil {
			return true
		}
		msg := bytes.TrimSuffix(p[3], []byte{'\n'})
		if string(p[2]) != "P" {
			msg = append(msg, '\n')
		}
		_, err := w.Write(msg)
		return err == nil
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		for {
			chunk, err := br.ReadBytes('\n')
			partial = append(partial, chunk...)
			if err != nil {
				break
			}
			if !emit(partial) {
				return
			}
			partial = partial[:0]
		}
		st, err := a.rt.State(id)
		if err != nil || st.Status == dataplane.Exited {
			rest, _ := io.ReadAll(br)
			for _, l := range bytes.SplitAfter(append(partial, rest...), []byte{'\n'}) {
				if len(l) > 0 && !emit(l) {
					return
				}
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
