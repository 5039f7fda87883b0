// Package exec is the embedded workload runtime: a container is its
// command run as a host process group, with its own environment and
// working directory, needing neither root nor images (the image is only
// recorded). It is what `tugboat server` uses by default.
//
// Each container runs under a small /bin/sh wrapper in a new session. The
// wrapper keeps the container's stdout and stderr FIFOs open, so output
// never fails while the agent is away (it blocks once a FIFO is full),
// defers SIGTERM until the command has exited, and writes the command's
// exit code to a file. The runtime reads the FIFOs into a CRI-format log
// file, reaps its children on SIGCHLD, and keeps each container's state in
// a JSON file under its directory: a restarted runtime adopts containers
// that are still running, and learns the exit code of those that ended
// meanwhile from the exit file. As root, containers with mounts get a
// private mount namespace with bind mounts; without root a mount becomes a
// symlink at the container path when nothing is there yet. A container
// with ContainerSpec.NetNS is started (and exec'd into) inside that network
// namespace: the process is forked from a thread that joined it (netns.go).
package exec

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Options configure the runtime.
type Options struct {
	// Dir holds the containers' state, FIFOs and logs; required.
	Dir string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Runtime is the exec runtime. It is safe for concurrent use.
type Runtime struct {
	dir     string
	log     *slog.Logger
	root    bool
	changes chan string

	mu   sync.Mutex
	ctrs map[string]*container
	// starting reserves the IDs of containers Start is still setting up;
	// they join ctrs (and so List and State) once their record is
	// complete, so no reader sees a record being written.
	starting map[string]struct{}

	reapMu sync.Mutex // one reaper at a time: Wait4 must not race

	scan procScan // /proc sums shared by a burst of Stats calls

	stop chan struct{}
	wg   sync.WaitGroup
}

var _ dataplane.Runtime = (*Runtime)(nil)

// record is a container's persisted state.
type record struct {
	ID         string            `json:"id"`
	Labels     map[string]string `json:"labels,omitempty"`
	Image      string            `json:"image,omitempty"`
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"workingDir"`
	Pid        int               `json:"pid,omitempty"`
	ProcStart  uint64            `json:"procStart,omitempty"` // /proc/<pid>/stat starttime
	MountNS    bool              `json:"mountNS,omitempty"`
	NetNS      string            `json:"netns,omitempty"`
	Symlinks   []string          `json:"symlinks,omitempty"`
	Cgroups    []string          `json:"cgroups,omitempty"`
	Status     dataplane.Status  `json:"status"`
	StartedAt  time.Time         `json:"startedAt,omitzero"`
	FinishedAt time.Time         `json:"finishedAt,omitzero"`
	ExitCode   int               `json:"exitCode"`
	Reason     string            `json:"reason,omitempty"`
	Message    string            `json:"message,omitempty"`
}

// container is a record plus the live parts.
type container struct {
	rec    record
	child  bool          // a child of this process (else adopted)
	exited chan struct{} // closed once Exited
	pumps  sync.WaitGroup
	logMu  sync.Mutex
	logf   *os.File
	fifos  []*os.File
}

// New opens (or creates) the runtime directory and adopts the containers
// recorded there.
func New(opts Options) (*Runtime, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("exec runtime: no directory: %w", errdefs.ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("exec runtime: %w", err)
	}
	r := &Runtime{
		dir:      opts.Dir,
		log:      opts.Logger,
		root:     os.Geteuid() == 0,
		changes:  make(chan string, 1024),
		ctrs:     make(map[string]*container),
		starting: make(map[string]struct{}),
		stop:     make(chan struct{}),
	}
	if err := r.load(); err != nil {
		return nil, err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	r.wg.Go(func() {
		defer signal.Stop(sigs)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-sigs:
			case <-t.C:
			}
			r.reap()
		}
	})
	return r, nil
}

// Close stops watching the containers; they keep running (a new Runtime
// on the same directory adopts them).
func (r *Runtime) Close() error {
	close(r.stop)
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.ctrs {
		for _, f := range c.fifos {
			f.Close()
		}
	}
	return nil
}

// Name implements dataplane.Runtime.
func (r *Runtime) Name() string { return "exec" }

// Changes implements dataplane.Runtime.
func (r *Runtime) Changes() <-chan string { return r.changes }

func (r *Runtime) ctrDir(id string) string { return filepath.Join(r.dir, id) }

// LogPath implements dataplane.Runtime.
func (r *Runtime) LogPath(id string) string { return filepath.Join(r.ctrDir(id), "log") }

// wrapper is the container's /bin/sh parent; $1 and $2 are the stdout and
// stderr FIFOs, $3 the exit code file, $4 the mount setup script (may be
// empty), $5 the container's stdin (/dev/null, or with ContainerSpec.Stdin
// the FIFO that AttachStdin writes to), the rest the command.
const wrapper = `exec 3<>"$1" 4<>"$2" >&3 2>&4 0<>"$5"
x=$3
if [ -n "$4" ]; then eval "$4" || exit 128; fi
shift 5
trap : TERM INT HUP QUIT
"$@" 3>&- 4>&-
c=$?
echo "$c" >"$x"
exit "$c"
`

// Start implements dataplane.Runtime.
func (r *Runtime) Start(ctx context.Context, spec dataplane.ContainerSpec) error {
	if spec.ID == "" || strings.ContainsAny(spec.ID, "/\x00") || spec.ID == "." || spec.ID == ".." {
		return fmt.Errorf("exec runtime: container id %q: %w", spec.ID, errdefs.ErrInvalid)
	}
	r.mu.Lock()
	_, exists := r.ctrs[spec.ID]
	if _, busy := r.starting[spec.ID]; exists || busy {
		r.mu.Unlock()
		return fmt.Errorf("exec runtime: container %s: %w", spec.ID, errdefs.ErrAlreadyExists)
	}
	c := &container{exited: make(chan struct{}), child: true}
	r.starting[spec.ID] = struct{}{}
	r.mu.Unlock()
	// publish makes c visible; the caller holds r.mu.
	publish := func() {
		delete(r.starting, spec.ID)
		r.ctrs[spec.ID] = c
	}

	dir := r.ctrDir(spec.ID)
	c.rec = record{ID: spec.ID, Labels: spec.Labels, Image: spec.Image, Env: spec.Env, WorkingDir: spec.WorkingDir, NetNS: spec.NetNS}
	if c.rec.WorkingDir == "" {
		c.rec.WorkingDir = filepath.Join(dir, "work")
	}
	fail := func(err error) error {
		r.mu.Lock()
		delete(r.starting, spec.ID)
		delete(r.ctrs, spec.ID)
		r.mu.Unlock()
		os.RemoveAll(dir)
		return err
	}
	if spec.NetNS != "" {
		if _, err := os.Stat(spec.NetNS); err != nil {
			return fail(fmt.Errorf("exec runtime: network namespace %s: %w", spec.NetNS, errdefs.ErrInvalid))
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(fmt.Errorf("exec runtime: %w", err))
	}
	if err := os.MkdirAll(c.rec.WorkingDir, 0o755); err != nil {
		return fail(fmt.Errorf("exec runtime: working dir: %w", err))
	}
	for _, s := range []string{"out", "err"} {
		if err := unix.Mkfifo(filepath.Join(dir, s), 0o600); err != nil && !errors.Is(err, os.ErrExist) {
			return fail(fmt.Errorf("exec runtime: fifo: %w", err))
		}
	}
	logf, err := os.OpenFile(r.LogPath(spec.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fail(fmt.Errorf("exec runtime: log: %w", err))
	}
	c.logf = logf

	argv := spec.Command
	if len(argv) == 0 {
		// No image to take an entrypoint from: the container is a
		// placeholder without a process that runs until stopped, so
		// image-only manifests behave like long-running services.
		c.writeLog("stderr", fmt.Sprintf("tugboat exec runtime: image %q has no command here; the container is a placeholder without a process", spec.Image))
		logf.Close()
		c.logf = nil
		c.rec.Status, c.rec.StartedAt = dataplane.Running, time.Now()
		r.mu.Lock()
		err := r.saveLocked(c)
		if err == nil {
			publish()
		}
		r.mu.Unlock()
		if err != nil {
			return fail(err)
		}
		return nil
	}
	path, err := lookPath(argv[0], spec.Env, c.rec.WorkingDir)
	if err != nil {
		c.rec.Status, c.rec.ExitCode, c.rec.Reason = dataplane.Exited, 128, "StartError"
		c.rec.Message = err.Error()
		c.rec.StartedAt, c.rec.FinishedAt = time.Now(), time.Now()
		c.writeLog("stderr", "tugboat exec runtime: "+err.Error())
		close(c.exited)
		logf.Close()
		r.mu.Lock()
		err := r.saveLocked(c)
		if err == nil {
			publish()
		}
		r.mu.Unlock()
		if err != nil {
			return fail(err)
		}
		r.notify(spec.ID)
		return nil
	}
	mountScript, symlinks, err := r.mounts(spec.Mounts)
	if err != nil {
		return fail(err)
	}
	c.rec.Symlinks = symlinks
	c.rec.MountNS = mountScript != ""
	if r.root {
		c.rec.Cgroups = cgroupDirs(spec.ID, spec)
	}
	setup := mountScript
	if len(c.rec.Cgroups) > 0 {
		setup = cgroupScript(c.rec.Cgroups) + cmp.Or(mountScript, "true")
	}

	if err := r.openFIFOs(c); err != nil {
		removeCgroups(c.rec.Cgroups)
		return fail(err)
	}
	stdin := os.DevNull
	if spec.Stdin { // a FIFO that attach writes to (attach.go)
		stdin = filepath.Join(dir, "in")
		if err := unix.Mkfifo(stdin, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
			c.closeFIFOs()
			removeCgroups(c.rec.Cgroups)
			return fail(fmt.Errorf("exec runtime: fifo: %w", err))
		}
	}
	args := append([]string{"-c", wrapper, "tugboat-exec", filepath.Join(dir, "out"), filepath.Join(dir, "err"),
		filepath.Join(dir, "exit"), setup, stdin, path}, argv[1:]...)
	cmd := osexec.Command("/bin/sh", args...)
	cmd.Env = spec.Env
	cmd.Dir = c.rec.WorkingDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if c.rec.MountNS {
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	// The pumps run before the command can write (or exit and be
	// reaped).
	r.startPumps(c)
	// Hold the lock so the reaper cannot see the child before its pid is
	// recorded, and the Running state is saved before any exit is.
	r.mu.Lock()
	err = inNetNS(spec.NetNS, cmd.Start)
	if err != nil {
		r.mu.Unlock()
		c.finishLogs()
		removeCgroups(c.rec.Cgroups)
		return fail(fmt.Errorf("exec runtime: start %s: %w", spec.ID, err))
	}
	c.rec.Pid = cmd.Process.Pid
	c.rec.ProcStart = procStart(c.rec.Pid)
	c.rec.Status = dataplane.Running
	c.rec.StartedAt = time.Now()
	publish()
	err = r.saveLocked(c)
	r.mu.Unlock()
	cmd.Process.Release() // reaped by pid in reap
	if err != nil {
		r.log.Warn("exec runtime: save state", "container", spec.ID, "err", err)
	}
	return nil
}

// lookPath resolves argv0 with the container's PATH (the agent's if the
// container sets none), relative to dir for relative paths.
func lookPath(argv0 string, env []string, dir string) (string, error) {
	if strings.Contains(argv0, "/") {
		p := argv0
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("exec: %q: no such executable file", argv0)
		}
		return p, nil
	}
	path := os.Getenv("PATH")
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, argv0)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", argv0)
}

// mounts returns the wrapper's mount script (root) or creates symlinks
// (not root).
func (r *Runtime) mounts(ms []dataplane.Mount) (string, []string, error) {
	if len(ms) == 0 {
		return "", nil, nil
	}
	if r.root {
		var b strings.Builder
		b.WriteString("mount --make-rprivate / && ")
		for _, m := range ms {
			src, dst := shellQuote(m.HostPath), shellQuote(m.ContainerPath)
			fmt.Fprintf(&b, "{ [ -d %s ] && mkdir -p %s || { mkdir -p \"$(dirname %s)\" && touch %s; }; } && mount --bind %s %s && ", src, dst, dst, dst, src, dst)
			if m.ReadOnly {
				fmt.Fprintf(&b, "mount -o remount,bind,ro %s && ", dst)
			}
		}
		b.WriteString("true")
		return b.String(), nil, nil
	}
	var links []string
	for _, m := range ms {
		if _, err := os.Lstat(m.ContainerPath); err == nil {
			continue // something is there: leave it (no mount namespace without root)
		}
		if err := os.MkdirAll(filepath.Dir(m.ContainerPath), 0o755); err != nil {
			return "", links, fmt.Errorf("exec runtime: mount %s: %w", m.ContainerPath, err)
		}
		if err := os.Symlink(m.HostPath, m.ContainerPath); err != nil {
			return "", links, fmt.Errorf("exec runtime: mount %s: %w", m.ContainerPath, err)
		}
		links = append(links, m.ContainerPath)
	}
	return "", links, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// openFIFOs opens the container's FIFOs for reading (read-write, so the
// open never blocks and a reader always exists).
func (r *Runtime) openFIFOs(c *container) error {
	for _, s := range []string{"out", "err"} {
		fd, err := unix.Open(filepath.Join(r.ctrDir(c.rec.ID), s), unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			c.closeFIFOs()
			return fmt.Errorf("exec runtime: open fifo: %w", err)
		}
		c.fifos = append(c.fifos, os.NewFile(uintptr(fd), s))
	}
	return nil
}

func (c *container) closeFIFOs() {
	for _, f := range c.fifos {
		f.Close()
	}
	c.fifos = nil
}

// startPumps copies the FIFOs into the log until the container exits.
func (r *Runtime) startPumps(c *container) {
	for i, stream := range []string{"stdout", "stderr"} {
		f := c.fifos[i]
		c.pumps.Go(func() {
			br := bufio.NewReaderSize(f, 16<<10)
			for {
				line, err := br.ReadSlice('\n')
				if len(line) > 0 {
					tag := "F"
					if errors.Is(err, bufio.ErrBufferFull) {
						tag = "P"
					}
					c.writeLogTag(stream, tag, strings.TrimSuffix(string(line), "\n"))
				}
				if err == nil || errors.Is(err, bufio.ErrBufferFull) {
					continue
				}
				return // deadline after exit, or closed
			}
		})
	}
}

func (c *container) writeLog(stream, msg string) { c.writeLogTag(stream, "F", msg) }

func (c *container) writeLogTag(stream, tag, msg string) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	if c.logf == nil {
		return
	}
	fmt.Fprintf(c.logf, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, tag, msg)
}

// finishLogs drains the FIFOs (their writers are gone) and closes the log.
func (c *container) finishLogs() {
	for _, f := range c.fifos {
		f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
	c.pumps.Wait()
	c.closeFIFOs()
	c.logMu.Lock()
	if c.logf != nil {
		c.logf.Close()
		c.logf = nil
	}
	c.logMu.Unlock()
}

// reap finds exited containers.
func (r *Runtime) reap() {
	r.reapMu.Lock()
	defer r.reapMu.Unlock()
	r.mu.Lock()
	var running []*container
	for _, c := range r.ctrs {
		if c.rec.Status == dataplane.Running && c.rec.Pid > 0 {
			running = append(running, c)
		}
	}
	r.mu.Unlock()
	for _, c := range running {
		code, done := r.exitOf(c)
		if done {
			r.finish(c, code)
		}
	}
}

// exitOf reports whether c's main process has ended and its exit code.
func (r *Runtime) exitOf(c *container) (int, bool) {
	pid := c.rec.Pid
	if c.child {
		var ws unix.WaitStatus
		// Kill stragglers in the group before reaping, while the
		// zombie still pins the group id.
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err == nil && info.Signo == 0 {
			return 0, false
		}
		unix.Kill(-pid, unix.SIGKILL)
		n, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil && !errors.Is(err, unix.ECHILD) {
			return 0, false
		}
		if n == pid {
			switch {
			case ws.Exited():
				return r.exitFile(c, ws.ExitStatus()), true
			case ws.Signaled():
				return r.exitFile(c, 128+int(ws.Signal())), true
			}
			return 0, false
		}
		if n == 0 {
			return 0, false
		}
		return r.exitFile(c, 137), true // ECHILD: reaped elsewhere
	}
	if procStart(pid) == c.rec.ProcStart && c.rec.ProcStart != 0 && !zombie(pid) {
		return 0, false
	}
	return r.exitFile(c, 137), true
}

// exitFile returns the code the wrapper recorded, else def.
func (r *Runtime) exitFile(c *container, def int) int {
	b, err := os.ReadFile(filepath.Join(r.ctrDir(c.rec.ID), "exit"))
	if err != nil {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return def
	}
	return n
}

// finish records c's exit.
func (r *Runtime) finish(c *container, code int) {
	c.finishLogs()
	r.mu.Lock()
	if c.rec.Status != dataplane.Running {
		r.mu.Unlock()
		return
	}
	c.rec.Status = dataplane.Exited
	c.rec.FinishedAt = time.Now()
	c.rec.ExitCode = code
	c.rec.Reason = "Completed"
	if code != 0 {
		c.rec.Reason = "Error"
		if oomKilled(c.rec.Cgroups) {
			c.rec.Reason = "OOMKilled"
		}
	}
	close(c.exited)
	r.mu.Unlock()
	if err := r.save(c); err != nil {
		r.log.Warn("exec runtime: save state", "container", c.rec.ID, "err", err)
	}
	r.notify(c.rec.ID)
}

func (r *Runtime) notify(id string) {
	select {
	case r.changes <- id:
	default: // the agent resyncs periodically
	}
}

// Stop implements dataplane.Runtime.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	r.mu.Lock()
	running, pid := c.rec.Status == dataplane.Running, c.rec.Pid
	r.mu.Unlock()
	if !running {
		return nil
	}
	if pid == 0 { // placeholder
		r.finish(c, 0)
		return nil
	}
	unix.Kill(-pid, unix.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.exited:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	unix.Kill(-pid, unix.SIGKILL)
	for {
		r.reap()
		select {
		case <-c.exited:
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *Runtime) get(id string) (*container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok {
		return nil, fmt.Errorf("exec runtime: container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// State implements dataplane.Runtime.
func (r *Runtime) State(id string) (dataplane.State, error) {
	c, err := r.get(id)
	if err != nil {
		return dataplane.State{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.state(), nil
}

func (c *container) state() dataplane.State {
	rec := c.rec
	return dataplane.State{
		ID: rec.ID, Labels: rec.Labels, Image: rec.Image, Status: rec.Status, Pid: rec.Pid,
		StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt, ExitCode: rec.ExitCode, Reason: rec.Reason, Message: rec.Message,
	}
}

// List implements dataplane.Runtime.
func (r *Runtime) List() ([]dataplane.State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]dataplane.State, 0, len(r.ctrs))
	for _, c := range r.ctrs {
		out = append(out, c.state())
	}
	slices.SortFunc(out, func(a, b dataplane.State) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Remove implements dataplane.Runtime.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if err := r.Stop(ctx, id, 0); err != nil {
		return err
	}
	removeCgroups(c.rec.Cgroups)
	for _, l := range c.rec.Symlinks {
		if fi, err := os.Lstat(l); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			os.Remove(l)
		}
	}
	r.mu.Lock()
	delete(r.ctrs, id)
	r.mu.Unlock()
	if err := os.RemoveAll(r.ctrDir(id)); err != nil {
		return fmt.Errorf("exec runtime: remove %s: %w", id, err)
	}
	return nil
}
