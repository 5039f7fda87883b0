package containerd

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"golang.org/x/sys/unix"
)

// logPipe is a container's output path: the shim writes stdout and
// stderr into two FIFOs in the container's directory, which the runtime
// holds open read-write (so the shim never sees a closed reader, even while
// the agent is away) and copies into the CRI-format log file.
type logPipe struct {
	dir   string
	mu    sync.Mutex // guards logf
	logf  *os.File
	fifos []*os.File
	pumps sync.WaitGroup
}

// fifoIO hands the shim the FIFO paths; copying is the logPipe's job.
type fifoIO struct{ cfg cio.Config }

func (f fifoIO) Config() cio.Config { return f.cfg }
func (fifoIO) Cancel()              {}
func (fifoIO) Wait()                {}
func (fifoIO) Close() error         { return nil }

// makeFIFOs creates the container's FIFOs.
func makeFIFOs(dir string) error {
	for _, s := range []string{"out", "err"} {
		if err := unix.Mkfifo(filepath.Join(dir, s), 0o600); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("fifo: %w", err)
		}
	}
	return nil
}

// fifoCreator returns the cio creator (or attach) for the container's
// FIFOs.
func fifoCreator(dir string, tty bool) func(string) (cio.IO, error) {
	cfg := cio.Config{Stdout: filepath.Join(dir, "out"), Terminal: tty}
	if !tty {
		cfg.Stderr = filepath.Join(dir, "err")
	}
	return func(string) (cio.IO, error) { return fifoIO{cfg}, nil }
}

// fifoAttach is the attach for an existing task: the FIFOs stay ours
// (containerd's own attach would delete them on Close).
func fifoAttach(dir string, tty bool) cio.Attach {
	create := fifoCreator(dir, tty)
	return func(*cio.FIFOSet) (cio.IO, error) { return create("") }
}

// openLogPipe opens the log file (appending) and the FIFOs and starts
// copying.
func openLogPipe(dir, logPath string) (*logPipe, error) {
	p := &logPipe{dir: dir}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	p.logf = f
	for _, s := range []string{"out", "err"} {
		fd, err := unix.Open(filepath.Join(dir, s), unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("open fifo: %w", err)
		}
		p.fifos = append(p.fifos, os.NewFile(uintptr(fd), s))
	}
	for i, stream := range []string{"stdout", "stderr"} {
		f := p.fifos[i]
		p.pumps.Go(func() {
			br := bufio.NewReaderSize(f, 16<<10)
			for {
				line, err := br.ReadSlice('\n')
				if len(line) > 0 {
					tag := "F"
					if errors.Is(err, bufio.ErrBufferFull) {
						tag = "P"
					}
					// A terminal ends lines with CRLF.
					p.write(stream, tag, strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r"))
				}
				if err == nil || errors.Is(err, bufio.ErrBufferFull) {
					continue
				}
				return // read deadline after exit, or closed
			}
		})
	}
	return p, nil
}

// writeLogLine appends one line to a log file without a pipe (start
// errors).
func writeLogLine(logPath, stream, msg string) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, msg)
}

func (p *logPipe) write(stream, tag, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.logf == nil {
		return
	}
	fmt.Fprintf(p.logf, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, tag, msg)
}

// finish drains the FIFOs (the container's writers are gone) and closes
// everything.
func (p *logPipe) finish() {
	for _, f := range p.fifos {
		f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
	p.pumps.Wait()
	p.close()
}

// detach stops copying without draining (the runtime closes; the
// container keeps running and a new runtime reattaches).
func (p *logPipe) detach() {
	for _, f := range p.fifos {
		f.SetReadDeadline(time.Now())
	}
	p.pumps.Wait()
	p.close()
}

func (p *logPipe) close() {
	for _, f := range p.fifos {
		f.Close()
	}
	p.fifos = nil
	p.mu.Lock()
	if p.logf != nil {
		p.logf.Close()
		p.logf = nil
	}
	p.mu.Unlock()
}
