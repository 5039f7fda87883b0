// Package wasi is the wasm workload runtime: a container is a WASI
// (wasip1) command module run in-process by wazero, so a node needs no
// container runtime at all. It implements dataplane.Runtime; it lives
// under runtime/ because that tree owns wazero and the kernel must not
// import it.
//
// The image is the path of a .wasm file (absolute, file://, or relative to
// Options.ModuleDir), or the reference of an OCI Wasm artifact imported
// into the runtime's ImageStore (`tugboat images import --runtime wasm`);
// there is no registry client, so an image that was not imported fails
// to start with an ErrImagePull (ErrImageNeverPull) error. The command,
// when given, is the module's argv (argv[0] included); otherwise argv is
// the image path alone. Env maps to the WASI environment, stdout and stderr
// go to a CRI-format log file, the exit code is proc_exit's, a trap is exit
// code 134 (like SIGABRT) with the trap as the message, and MemoryLimit
// caps the module's linear memory. Every container has its own wazero
// runtime (memory limits are per runtime) sharing one compilation cache.
//
// The filesystem is a private, writable directory as "/", the working
// directory (mounted at the same path when it exists on the host, and
// exported to the guest as $PWD, which Go's wasip1 port uses as its
// working directory) and the spec's mounts. WASI has no signals: Stop
// ends the module at once (exit code 137) whatever the grace period, and
// Exec is not supported. Modules run inside the agent's process, so they
// do not survive an agent restart: a new Runtime reports the containers
// that were running as exited (137, with a message saying why).
package wasi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Exit codes the runtime assigns.
const (
	exitKilled  = 137 // Stop, Remove or an agent restart ended the module
	exitTrapped = 134 // the module trapped
)

// Options configure the runtime.
type Options struct {
	// Dir holds the containers' state, root directories and logs;
	// required.
	Dir string
	// ModuleDir resolves relative image paths; "" means relative paths
	// are refused.
	ModuleDir string
	// CacheDir keeps compiled modules across restarts; "" keeps them in
	// memory only.
	CacheDir string
	// ImageDir is the ImageStore of imported OCI artifacts; "" means
	// <Dir>/images.
	ImageDir string
	// PullPolicy is PullAlways, PullIfNotPresent ("" too) or PullNever;
	// it only changes the error for an image that was not imported.
	PullPolicy string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Runtime is the wasm runtime. It is safe for concurrent use.
type Runtime struct {
	opts    Options
	images  *ImageStore
	log     *slog.Logger
	cache   wazero.CompilationCache
	changes chan string
	wg      sync.WaitGroup

	mu   sync.Mutex
	ctrs map[string]*container
}

var _ dataplane.Runtime = (*Runtime)(nil)

// record is a container's persisted state.
type record struct {
	ID         string            `json:"id"`
	Labels     map[string]string `json:"labels,omitempty"`
	Image      string            `json:"image,omitempty"`
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
	cancel context.CancelFunc // ends the running module
	exited chan struct{}      // closed once Exited
	mem    *memoryMeter       // the instance's linear memory
	tid    atomic.Int32       // the thread running the guest, 0 when none
}

// New opens (or creates) the runtime directory. Containers recorded as
// running by an earlier Runtime are reported exited: their modules died
// with that process.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("wasm runtime: no directory: %w", errdefs.ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("wasm runtime: %w", err)
	}
	switch opts.PullPolicy {
	case "", PullAlways, PullIfNotPresent, PullNever:
	default:
		return nil, fmt.Errorf("wasm runtime: pull policy %q: want %s, %s or %s: %w",
			opts.PullPolicy, PullAlways, PullIfNotPresent, PullNever, errdefs.ErrInvalid)
	}
	if opts.ImageDir == "" {
		opts.ImageDir = filepath.Join(opts.Dir, "images")
	}
	images, err := OpenImageStore(opts.ImageDir)
	if err != nil {
		return nil, fmt.Errorf("wasm runtime: %w", err)
	}
	cache := wazero.NewCompilationCache()
	if opts.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm runtime: compilation cache %s: %w", opts.CacheDir, err)
		}
		cache = c
	}
	r := &Runtime{opts: opts, images: images, log: opts.Logger, cache: cache, changes: make(chan string, 1024), ctrs: map[string]*container{}}
	if err := r.load(); err != nil {
		cache.Close(ctx)
		return nil, err
	}
	return r, nil
}

// Close ends the running modules (they cannot outlive the runtime; they
// are recorded exited with code 137) and releases the compilation cache.
func (r *Runtime) Close() error {
	r.mu.Lock()
	for _, c := range r.ctrs {
		if c.cancel != nil {
			c.cancel()
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
	return r.cache.Close(context.Background())
}

// Name implements dataplane.Runtime.
func (r *Runtime) Name() string { return "wasm" }

// Changes implements dataplane.Runtime.
func (r *Runtime) Changes() <-chan string { return r.changes }

func (r *Runtime) ctrDir(id string) string { return filepath.Join(r.opts.Dir, id) }

// LogPath implements dataplane.Runtime.
func (r *Runtime) LogPath(id string) string { return filepath.Join(r.ctrDir(id), "log") }

// isModulePath reports whether image names a file rather than an OCI
// reference: file://, an absolute path, a name ending in .wasm, or a file
// under the module directory.
func (r *Runtime) isModulePath(image string) bool {
	p, file := strings.CutPrefix(image, "file://")
	if file || filepath.IsAbs(p) || strings.HasSuffix(p, ".wasm") {
		return true
	}
	if r.opts.ModuleDir == "" || p == "" {
		return false
	}
	fi, err := os.Stat(filepath.Join(r.opts.ModuleDir, p))
	return err == nil && fi.Mode().IsRegular()
}

// imagePath returns the module file of an imported OCI artifact, or an
// error that starts with the kubelet's reason: ErrImageNeverPull
// (errdefs.ErrNotFound) under PullNever, ErrImagePull
// (errdefs.ErrUnavailable) otherwise, as the containerd runtime's.
func (r *Runtime) imagePath(image string) (string, error) {
	p, err := r.images.Resolve(image)
	switch {
	case err == nil:
		return p, nil
	case !errors.Is(err, errdefs.ErrNotFound):
		return "", err
	case r.opts.PullPolicy == PullNever:
		return "", fmt.Errorf("ErrImageNeverPull: %v with pull policy Never (import it with `tugboat images import --runtime wasm`): %w", err, errdefs.ErrNotFound)
	}
	return "", fmt.Errorf("ErrImagePull: %v, and the wasm runtime has no registry to pull from (import it with `tugboat images import --runtime wasm`): %w", err, errdefs.ErrUnavailable)
}

// modulePath resolves an image path to a file.
func (r *Runtime) modulePath(image string) (string, error) {
	p := strings.TrimPrefix(image, "file://")
	switch {
	case p == "":
		return "", errors.New("no image: want the path of a .wasm module or an imported OCI artifact")
	case filepath.IsAbs(p):
		return p, nil
	case r.opts.ModuleDir == "":
		return "", fmt.Errorf("image %q: a relative module path needs the runtime's module directory", image)
	}
	p = filepath.Join(r.opts.ModuleDir, p)
	if !strings.HasPrefix(p, filepath.Clean(r.opts.ModuleDir)+string(filepath.Separator)) {
		return "", fmt.Errorf("image %q: outside the module directory", image)
	}
	return p, nil
}

// Start implements dataplane.Runtime. A module that cannot be read,
// compiled or instantiated is the StartError state.
func (r *Runtime) Start(ctx context.Context, spec dataplane.ContainerSpec) error {
	if spec.ID == "" || strings.ContainsAny(spec.ID, "/\x00") || spec.ID[0] == '.' {
		return fmt.Errorf("wasm runtime: container id %q: %w", spec.ID, errdefs.ErrInvalid)
	}
	if spec.TTY {
		return fmt.Errorf("wasm runtime: container %s: a terminal is not supported: %w", spec.ID, errdefs.ErrInvalid)
	}
	module := ""
	if spec.Image != "" && !r.isModulePath(spec.Image) {
		p, err := r.imagePath(spec.Image)
		if err != nil {
			return fmt.Errorf("wasm runtime: start %s: %w", spec.ID, err)
		}
		module = p
	}
	r.mu.Lock()
	if _, ok := r.ctrs[spec.ID]; ok {
		r.mu.Unlock()
		return fmt.Errorf("wasm runtime: container %s: %w", spec.ID, errdefs.ErrAlreadyExists)
	}
	c := &container{exited: make(chan struct{}), mem: &memoryMeter{},
		rec: record{ID: spec.ID, Labels: spec.Labels, Image: spec.Image, StartedAt: time.Now()}}
	r.ctrs[spec.ID] = c
	r.mu.Unlock()

	dir := r.ctrDir(spec.ID)
	fail := func(err error) error {
		r.mu.Lock()
		delete(r.ctrs, spec.ID)
		r.mu.Unlock()
		os.RemoveAll(dir)
		return fmt.Errorf("wasm runtime: start %s: %w", spec.ID, err)
	}
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fail(err)
	}
	logf, err := os.OpenFile(r.LogPath(spec.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fail(err)
	}
	log := &criLog{f: logf}

	startError := func(err error) error {
		log.line("stderr", "tugboat wasm runtime: "+err.Error())
		log.close()
		r.mu.Lock()
		c.rec.Status, c.rec.ExitCode, c.rec.Reason, c.rec.Message = dataplane.Exited, 128, "StartError", err.Error()
		c.rec.FinishedAt = time.Now()
		close(c.exited)
		r.mu.Unlock()
		if err := r.save(c); err != nil {
			return fail(err)
		}
		r.notify(spec.ID)
		return nil
	}
	wrt, mod, cfg, err := r.prepare(ctx, spec, module, root, log)
	if err != nil {
		return startError(err)
	}
	// Instantiate without running _start, so instantiation errors are
	// start errors and Stats can see the instance's memory.
	runCtx, cancel := context.WithCancel(experimental.WithMemoryAllocator(context.WithoutCancel(ctx), c.mem))
	inst, err := wrt.InstantiateModule(runCtx, mod, cfg.WithStartFunctions())
	var start api.Function
	if err == nil {
		if start = inst.ExportedFunction("_start"); start == nil {
			err = errors.New("the module exports no _start function: not a WASI command")
		}
	}
	if err != nil {
		cancel()
		wrt.Close(ctx)
		return startError(fmt.Errorf("instantiate module: %w", err))
	}
	r.mu.Lock()
	c.cancel = cancel
	c.rec.Status = dataplane.Running
	r.mu.Unlock()
	if err := r.save(c); err != nil {
		cancel()
		wrt.Close(ctx)
		log.close()
		return fail(err)
	}
	r.wg.Go(func() {
		defer cancel()
		// The guest runs on this thread only: its CPU time is the
		// container's (Stats).
		goruntime.LockOSThread()
		c.tid.Store(int32(unix.Gettid()))
		_, err := start.Call(runCtx)
		c.tid.Store(0)
		goruntime.UnlockOSThread()
		code, msg := exitOf(err, runCtx)
		wrt.Close(context.Background())
		log.close()
		r.finish(c, code, msg)
	})
	return nil
}

// prepare compiles the module in a wazero runtime of its own (with the
// container's memory limit) and builds its configuration.
func (r *Runtime) prepare(ctx context.Context, spec dataplane.ContainerSpec, module, root string, log *criLog) (wazero.Runtime, wazero.CompiledModule, wazero.ModuleConfig, error) {
	path := module
	if path == "" {
		var err error
		if path, err = r.modulePath(spec.Image); err != nil {
			return nil, nil, nil, err
		}
	}
	code, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read module: %w", err)
	}
	rc := wazero.NewRuntimeConfigCompiler().WithCompilationCache(r.cache).WithCloseOnContextDone(true)
	if spec.MemoryLimit > 0 {
		pages := uint32(min(max(spec.MemoryLimit/65536, 1), 65536))
		rc = rc.WithMemoryLimitPages(pages)
	}
	wrt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, wrt); err != nil {
		wrt.Close(ctx)
		return nil, nil, nil, fmt.Errorf("instantiate wasi: %w", err)
	}
	mod, err := wrt.CompileModule(ctx, code)
	if err != nil {
		wrt.Close(ctx)
		return nil, nil, nil, fmt.Errorf("compile module %s: %w", path, err)
	}
	fsc := wazero.NewFSConfig().WithDirMount(root, "/")
	wd := spec.WorkingDir
	if wd != "" && wd != "/" {
		if fi, err := os.Stat(wd); err == nil && fi.IsDir() && filepath.IsAbs(wd) {
			fsc = fsc.WithDirMount(wd, wd)
		} else if err := os.MkdirAll(filepath.Join(root, wd), 0o755); err != nil {
			wrt.Close(ctx)
			return nil, nil, nil, fmt.Errorf("working dir: %w", err)
		}
	}
	for _, m := range spec.Mounts {
		if m.ReadOnly {
			fsc = fsc.WithReadOnlyDirMount(m.HostPath, m.ContainerPath)
		} else {
			fsc = fsc.WithDirMount(m.HostPath, m.ContainerPath)
		}
	}
	args := spec.Command
	if len(args) == 0 {
		args = []string{spec.Image}
	}
	cfg := wazero.NewModuleConfig().
		WithName(""). // many instances of one module
		WithArgs(args...).
		WithStdin(eofReader{}).
		WithStdout(log.stream("stdout")).
		WithStderr(log.stream("stderr")).
		WithFSConfig(fsc).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().
		WithRandSource(rand.Reader)
	hasPWD := false
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		hasPWD = hasPWD || k == "PWD"
		cfg = cfg.WithEnv(k, v)
	}
	if wd != "" && !hasPWD {
		cfg = cfg.WithEnv("PWD", wd)
	}
	return wrt, mod, cfg, nil
}

// exitOf maps the module's end to an exit code and a message.
func exitOf(err error, ctx context.Context) (int, string) {
	var ee *sys.ExitError
	switch {
	case err == nil:
		return 0, ""
	case errors.As(err, &ee) && ctx.Err() == nil:
		return int(ee.ExitCode()), ""
	case ctx.Err() != nil:
		return exitKilled, "stopped"
	default:
		return exitTrapped, err.Error()
	}
}

// finish records c's exit.
func (r *Runtime) finish(c *container, code int, msg string) {
	r.mu.Lock()
	c.rec.Status = dataplane.Exited
	c.rec.FinishedAt = time.Now()
	c.rec.ExitCode = code
	c.rec.Reason = "Completed"
	if code != 0 {
		c.rec.Reason = "Error"
	}
	if code == exitTrapped {
		c.rec.Message = msg
	}
	c.cancel = nil
	r.mu.Unlock()
	// Saved before Stop and Remove see the exit, so Remove never races
	// the state file.
	if err := r.save(c); err != nil {
		r.log.Warn("wasm runtime: save state", "container", c.rec.ID, "err", err)
	}
	close(c.exited)
	r.notify(c.rec.ID)
}

func (r *Runtime) notify(id string) {
	select {
	case r.changes <- id:
	default: // the agent resyncs periodically
	}
}

func (r *Runtime) get(id string) (*container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok {
		return nil, fmt.Errorf("wasm runtime: container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// Stop implements dataplane.Runtime: WASI has no signals, so the module
// ends at once whatever grace is.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	r.mu.Lock()
	cancel := c.cancel
	r.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-c.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wasm runtime: stop %s: %w", id, ctx.Err())
	}
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
		ID: rec.ID, Labels: rec.Labels, Image: rec.Image, Status: rec.Status,
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
	if err := r.Stop(ctx, id, 0); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.ctrs, id)
	r.mu.Unlock()
	if err := os.RemoveAll(r.ctrDir(id)); err != nil {
		return fmt.Errorf("wasm runtime: remove %s: %w", id, err)
	}
	return nil
}

// Exec implements dataplane.Runtime: a WASI module has no way to run a
// second command in its context.
func (r *Runtime) Exec(ctx context.Context, id string, spec dataplane.ExecSpec) (int, error) {
	if _, err := r.get(id); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("wasm runtime: exec is not supported by the wasm runtime: %w", errdefs.ErrInvalid)
}

// save writes c's record atomically.
func (r *Runtime) save(c *container) error {
	r.mu.Lock()
	b, err := json.Marshal(c.rec)
	r.mu.Unlock()
	if err != nil {
		return err
	}
	p := filepath.Join(r.ctrDir(c.rec.ID), "state.json")
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// load reads the recorded containers; running ones died with their
// runtime.
func (r *Runtime) load() error {
	ents, err := os.ReadDir(r.opts.Dir)
	if err != nil {
		return fmt.Errorf("wasm runtime: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.opts.Dir, e.Name(), "state.json"))
		if err != nil {
			os.RemoveAll(filepath.Join(r.opts.Dir, e.Name())) // never started
			continue
		}
		c := &container{exited: make(chan struct{})}
		if err := json.Unmarshal(b, &c.rec); err != nil || c.rec.ID != e.Name() {
			r.log.Warn("wasm runtime: bad state file; forgetting the container", "container", e.Name(), "err", err)
			continue
		}
		close(c.exited)
		r.ctrs[c.rec.ID] = c
		if c.rec.Status == dataplane.Running {
			c.rec.Status, c.rec.ExitCode, c.rec.Reason = dataplane.Exited, exitKilled, "Error"
			c.rec.FinishedAt = time.Now()
			c.rec.Message = "the wasm module ran inside the agent, which restarted"
			if err := r.save(c); err != nil {
				r.log.Warn("wasm runtime: save state", "container", c.rec.ID, "err", err)
			}
		}
	}
	return nil
}

// eofReader is an empty stdin.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// criLog writes a container's streams as CRI log lines.
type criLog struct {
	mu      sync.Mutex
	f       *os.File
	streams []*lineWriter
}

func (l *criLog) line(stream, msg string) { l.tagged(stream, "F", msg) }

func (l *criLog) tagged(stream, tag, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	fmt.Fprintf(l.f, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, tag, msg)
}

// close writes what is left of unfinished lines and closes the file.
func (l *criLog) close() {
	l.mu.Lock()
	streams := l.streams
	l.mu.Unlock()
	for _, w := range streams {
		if len(w.buf) > 0 {
			l.line(w.stream, string(w.buf))
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// stream returns a writer that splits the guest's writes into lines; a
// line longer than 16 KiB is written in parts tagged P.
func (l *criLog) stream(name string) io.Writer {
	w := &lineWriter{log: l, stream: name}
	l.mu.Lock()
	l.streams = append(l.streams, w)
	l.mu.Unlock()
	return w
}

type lineWriter struct {
	log    *criLog
	stream string
	buf    []byte
}

const maxLine = 16 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := slices.Index(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= maxLine {
				w.log.tagged(w.stream, "P", string(w.buf[:maxLine]))
				w.buf = append(w.buf[:0], w.buf[maxLine:]...)
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.log.line(w.stream, string(w.buf))
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}
