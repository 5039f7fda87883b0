// Package containerd is the workload runtime that runs real OCI
// containers through containerd (the v2 client; Debian's containerd 1.6
// with runc serves it). Images come from containerd's image store in the
// runtime's namespace: imported with `tugboat images import` (ImportArchive)
// or pulled as the pull policy says.
//
// A pod is a sandbox plus its containers, as in the CRI: the sandbox is a
// tiny pause process (a static busybox from the host, in a read-only
// rootfs of its own) whose PID, IPC (and, with PodNetwork, network and UTS)
// namespaces every container of the pod joins. Container processes are
// therefore never PID 1 of their namespace, so signals behave as on the
// host (a shell without a TERM trap dies of SIGTERM), like Kubernetes pods
// with shareProcessNamespace. Without PodNetwork the pod uses the host's
// network, as the exec runtime does, and the node's IP is the pod's.
//
// Output goes through two FIFOs per container that the runtime holds open
// and copies into a CRI-format log file. Each container's state (labels,
// times, exit) is kept in a JSON file under the runtime's directory and
// the containers and tasks live in containerd, so a new Runtime on the
// same directory and namespace adopts them after an agent restart.
package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	cerrdefs "github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Defaults.
const (
	DefaultAddress   = "/run/containerd/containerd.sock"
	DefaultNamespace = "tugboat"
	// DefaultPauseBinary is the static binary the pod sandbox runs
	// (Debian's busybox-static).
	DefaultPauseBinary = "/bin/busybox"
)

// Container labels the runtime adds in containerd.
const (
	labelManaged = "tugboat.dev/managed" // "container" or "sandbox"
	labelSandbox = "tugboat.dev/sandbox" // the pod's sandbox key
	labelPodUID  = "pod-uid"             // set by the agent
	labelPodName = "pod-name"            // set by the agent
)

// Options configure the runtime.
type Options struct {
	// Dir holds the containers' state, FIFOs and logs; required.
	Dir string
	// Address is containerd's socket; "" means DefaultAddress.
	Address string
	// Namespace is the containerd namespace; "" means DefaultNamespace.
	Namespace string
	// Snapshotter; "" means containerd's default (overlayfs).
	Snapshotter string
	// PullPolicy applies to every container ("" means IfNotPresent).
	PullPolicy PullPolicy
	// PullTimeout bounds a pull; 0 means 5 minutes.
	PullTimeout time.Duration
	// PauseBinary is the static binary run as each pod's sandbox
	// ("" means DefaultPauseBinary); it must offer busybox's sh and sleep.
	PauseBinary string
	// PodNetwork gives each pod a private network namespace (loopback
	// only until bridge networking passes one in) and UTS namespace;
	// false shares the host's network like the exec runtime.
	PodNetwork bool
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Runtime is the containerd runtime. It is safe for concurrent use.
type Runtime struct {
	opts    Options
	log     *slog.Logger
	client  *client.Client
	changes chan string

	// life is cancelled by Close; exit waiters run under it.
	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	ctrs      map[string]*container
	sandboxes map[string]*sandbox
	sbMu      sync.Mutex // serializes sandbox creation and removal
}

var _ dataplane.Runtime = (*Runtime)(nil)

// record is a container's persisted state.
type record struct {
	ID         string            `json:"id"`
	Labels     map[string]string `json:"labels,omitempty"`
	Image      string            `json:"image,omitempty"`
	CID        string            `json:"cid"` // containerd ID
	Sandbox    string            `json:"sandbox"`
	TTY        bool              `json:"tty,omitempty"`
	Pid        int               `json:"pid,omitempty"`
	Status     dataplane.Status  `json:"status"`
	StartedAt  time.Time         `json:"startedAt,omitzero"`
	FinishedAt time.Time         `json:"finishedAt,omitzero"`
	ExitCode   int               `json:"exitCode"`
	Reason     string            `json:"reason,omitempty"`
	Message    string            `json:"message,omitempty"`
	OOM        bool              `json:"oom,omitempty"`
}

// container is a record plus the live parts.
type container struct {
	rec    record
	task   client.Task   // nil once exited
	pipe   *logPipe      // nil once exited
	exited chan struct{} // closed once Exited
	// finishing is set by the first finish call.
	finishing bool
}

// New connects to containerd, opens (or creates) the runtime directory
// and adopts the containers recorded there.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("containerd runtime: no directory: %w", errdefs.ErrInvalid)
	}
	if opts.Address == "" {
		opts.Address = DefaultAddress
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.PauseBinary == "" {
		opts.PauseBinary = DefaultPauseBinary
	}
	if opts.PullPolicy == "" {
		opts.PullPolicy = PullIfNotPresent
	}
	if opts.PullTimeout == 0 {
		opts.PullTimeout = 5 * time.Minute
	}
	switch opts.PullPolicy {
	case PullAlways, PullIfNotPresent, PullNever:
	default:
		return nil, fmt.Errorf("containerd runtime: pull policy %q: %w", opts.PullPolicy, errdefs.ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("containerd runtime: %w", err)
	}
	c, err := client.New(opts.Address, client.WithDefaultNamespace(opts.Namespace), client.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("containerd runtime: connect to %s: %v: %w", opts.Address, err, errdefs.ErrUnavailable)
	}
	life, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), opts.Namespace))
	r := &Runtime{
		opts: opts, log: opts.Logger, client: c, changes: make(chan string, 1024),
		life: life, cancel: cancel,
		ctrs: map[string]*container{}, sandboxes: map[string]*sandbox{},
	}
	if err := r.load(r.ns(ctx)); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// ns returns ctx in the runtime's containerd namespace.
func (r *Runtime) ns(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.opts.Namespace)
}

// Close stops watching the containers and disconnects; the containers
// keep running (a new Runtime on the same directory adopts them).
func (r *Runtime) Close() error {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	for _, c := range r.ctrs {
		if c.pipe != nil {
			c.pipe.detach()
			c.pipe = nil
		}
	}
	r.mu.Unlock()
	return r.client.Close()
}

// Name implements dataplane.Runtime.
func (r *Runtime) Name() string { return "containerd" }

// Changes implements dataplane.Runtime.
func (r *Runtime) Changes() <-chan string { return r.changes }

func (r *Runtime) ctrDir(id string) string { return filepath.Join(r.opts.Dir, id) }

// LogPath implements dataplane.Runtime.
func (r *Runtime) LogPath(id string) string { return filepath.Join(r.ctrDir(id), "log") }

// validID accepts IDs that are directory names.
func validID(id string) bool {
	return id != "" && !strings.ContainsAny(id, "/\x00") && id[0] != '.' && !strings.HasPrefix(id, sandboxPrefix)
}

// containerdIDPattern is containerd's identifier syntax (at most 76
// characters).
var containerdIDPattern = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// containerdID is the containerd ID for one of ours: the same when
// containerd accepts it, else a hash.
func containerdID(id string) string {
	if len(id) <= 76 && containerdIDPattern.MatchString(id) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "tugboat-" + hex.EncodeToString(sum[:16])
}

// Start implements dataplane.Runtime. An image that is missing (and
// cannot be pulled) is an error wrapping errdefs.ErrNotFound or
// errdefs.ErrUnavailable whose message starts with the kubelet's reason
// (ErrImageNeverPull, ErrImagePull); a command runc cannot start is the
// StartError state.
func (r *Runtime) Start(ctx context.Context, spec dataplane.ContainerSpec) error {
	ctx = r.ns(ctx)
	cleanup := context.WithoutCancel(ctx) // undoing a half start must not be cancelled
	if !validID(spec.ID) {
		return fmt.Errorf("containerd runtime: container id %q: %w", spec.ID, errdefs.ErrInvalid)
	}
	r.mu.Lock()
	if _, ok := r.ctrs[spec.ID]; ok {
		r.mu.Unlock()
		return fmt.Errorf("containerd runtime: container %s: %w", spec.ID, errdefs.ErrAlreadyExists)
	}
	c := &container{exited: make(chan struct{}),
		rec: record{ID: spec.ID, CID: containerdID(spec.ID), Labels: spec.Labels, Image: spec.Image, Sandbox: sandboxKey(spec), TTY: spec.TTY}}
	r.ctrs[spec.ID] = c
	r.mu.Unlock()

	dir := r.ctrDir(spec.ID)
	fail := func(err error) error {
		r.mu.Lock()
		delete(r.ctrs, spec.ID)
		r.mu.Unlock()
		os.RemoveAll(dir)
		return fmt.Errorf("containerd runtime: start %s: %w", spec.ID, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	if err := makeFIFOs(dir); err != nil {
		return fail(err)
	}
	ctr, err := r.create(ctx, c.rec, spec)
	if err != nil {
		return fail(err)
	}
	pipe, err := openLogPipe(dir, r.LogPath(spec.ID))
	if err != nil {
		r.deleteContainer(cleanup, ctr)
		return fail(err)
	}
	r.mu.Lock()
	c.pipe = pipe
	r.mu.Unlock()
	startErr := func(err error) error {
		r.deleteContainer(cleanup, ctr)
		r.mu.Lock()
		c.pipe = nil
		r.mu.Unlock()
		pipe.finish()
		msg := runcMessage(err)
		writeLogLine(r.LogPath(spec.ID), "stderr", "tugboat containerd runtime: "+msg)
		r.mu.Lock()
		c.rec.Status, c.rec.ExitCode, c.rec.Reason, c.rec.Message = dataplane.Exited, 128, "StartError", msg
		c.rec.StartedAt, c.rec.FinishedAt = time.Now(), time.Now()
		close(c.exited)
		r.mu.Unlock()
		if err := r.save(c); err != nil {
			return fail(err)
		}
		r.notify(spec.ID)
		return nil
	}
	task, err := ctr.NewTask(ctx, fifoCreator(dir, spec.TTY))
	if err != nil {
		return startErr(err)
	}
	exitCh, err := task.Wait(r.life)
	if err != nil {
		task.Delete(cleanup, client.WithProcessKill)
		return startErr(err)
	}
	started := time.Now()
	if err := task.Start(ctx); err != nil {
		task.Delete(cleanup, client.WithProcessKill)
		return startErr(err)
	}
	r.mu.Lock()
	c.task = task
	c.rec.Pid = int(task.Pid())
	c.rec.Status, c.rec.StartedAt = dataplane.Running, started
	r.mu.Unlock()
	if err := r.save(c); err != nil {
		r.log.Warn("containerd runtime: save state", "container", spec.ID, "err", err)
	}
	r.watch(c, exitCh)
	return nil
}

// create makes sure the image and the pod's sandbox are there and creates
// the containerd container (with its snapshot and OCI spec).
func (r *Runtime) create(ctx context.Context, rec record, spec dataplane.ContainerSpec) (client.Container, error) {
	img, err := r.ensureImage(ctx, spec.Image, r.opts.PullPolicy)
	if err != nil {
		return nil, err
	}
	sb, err := r.ensureSandboxIn(ctx, rec.Sandbox, spec.Labels[labelPodName], spec.NetNS)
	if err != nil {
		return nil, err
	}
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[labelManaged], labels[labelSandbox] = "container", rec.Sandbox
	// A container left by an earlier runtime that lost its directory.
	if old, err := r.client.LoadContainer(ctx, rec.CID); err == nil {
		r.deleteContainer(context.WithoutCancel(ctx), old)
	}
	ctr, err := r.client.NewContainer(ctx, rec.CID,
		client.WithImage(img),
		client.WithSnapshotter(r.opts.Snapshotter),
		client.WithNewSnapshot(rec.CID, img),
		client.WithContainerLabels(labels),
		client.WithNewSpec(r.specOpts(img, spec, sb)...))
	if cerrdefs.IsAlreadyExists(err) {
		err = fmt.Errorf("%v: %w", err, errdefs.ErrAlreadyExists)
	}
	return ctr, err
}

// runcMessage shortens a task creation error to what runc said.
func runcMessage(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "runc create failed: "); i >= 0 {
		msg = msg[i+len("runc create failed: "):]
	}
	return strings.TrimSuffix(strings.TrimSpace(msg), ": unknown")
}

// specOpts builds the OCI spec of a container from the image config and
// the container spec, joining the pod sandbox's namespaces.
func (r *Runtime) specOpts(img client.Image, spec dataplane.ContainerSpec, sb *sandbox) []oci.SpecOpts {
	opts := []oci.SpecOpts{oci.WithImageConfig(img)}
	if len(spec.Command) > 0 {
		opts = append(opts, oci.WithProcessArgs(spec.Command...))
	}
	if len(spec.Env) > 0 {
		opts = append(opts, oci.WithEnv(spec.Env))
	}
	if spec.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(spec.WorkingDir))
	}
	if spec.TTY {
		opts = append(opts, oci.WithTTY)
	}
	var mounts []specs.Mount
	for _, m := range spec.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		mounts = append(mounts, specs.Mount{Type: "bind", Source: m.HostPath, Destination: m.ContainerPath, Options: []string{"rbind", "rprivate", mode}})
	}
	if len(mounts) > 0 {
		opts = append(opts, oci.WithMounts(mounts))
	}
	if spec.MemoryLimit > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(spec.MemoryLimit)))
	}
	if spec.CPUMilli > 0 {
		const period = 100000
		opts = append(opts, oci.WithCPUCFS(spec.CPUMilli*period/1000, period))
	}
	opts = append(opts, sb.joinOpts(r.opts.PodNetwork)...)
	return opts
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
		return nil, fmt.Errorf("containerd runtime: container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// Stop implements dataplane.Runtime.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	r.mu.Lock()
	task := c.task
	r.mu.Unlock()
	if task == nil {
		return nil
	}
	kctx := r.ns(context.WithoutCancel(ctx))
	if grace > 0 {
		if err := task.Kill(kctx, syscall.SIGTERM); err != nil && !cerrdefs.IsNotFound(err) {
			r.log.Debug("containerd runtime: SIGTERM", "container", id, "err", err)
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-c.exited:
			return nil
		case <-t.C:
		case <-ctx.Done():
		}
	}
	if err := task.Kill(kctx, syscall.SIGKILL); err != nil && !cerrdefs.IsNotFound(err) {
		r.log.Debug("containerd runtime: SIGKILL", "container", id, "err", err)
	}
	select {
	case <-c.exited:
		return nil
	case <-r.life.Done():
		return fmt.Errorf("containerd runtime: stop %s: runtime closed: %w", id, errdefs.ErrUnavailable)
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

// Remove implements dataplane.Runtime: it also removes the pod's sandbox
// once no container of the pod is left.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if err := r.Stop(ctx, id, 0); err != nil {
		return err
	}
	// Once started, removal completes even if the caller gives up.
	ctx, cancel := context.WithTimeout(r.ns(context.WithoutCancel(ctx)), time.Minute)
	defer cancel()
	if ctr, err := r.client.LoadContainer(ctx, c.rec.CID); err == nil {
		if err := r.deleteContainer(ctx, ctr); err != nil {
			return fmt.Errorf("containerd runtime: remove %s: %w", id, err)
		}
	}
	r.mu.Lock()
	delete(r.ctrs, id)
	inUse := false
	for _, o := range r.ctrs {
		inUse = inUse || o.rec.Sandbox == c.rec.Sandbox
	}
	r.mu.Unlock()
	if err := os.RemoveAll(r.ctrDir(id)); err != nil {
		return fmt.Errorf("containerd runtime: remove %s: %w", id, err)
	}
	if !inUse {
		r.removeSandbox(ctx, c.rec.Sandbox)
	}
	return nil
}

// deleteContainer deletes a container, its task and its snapshot.
func (r *Runtime) deleteContainer(ctx context.Context, ctr client.Container) error {
	if task, err := ctr.Task(ctx, nil); err == nil {
		task.Delete(ctx, client.WithProcessKill)
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return nil
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
