package containerd_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/containerd"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/containerd/containerdtest"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/dataplanetest"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// withImage runs the suite's image-less specs in the test image.
type withImage struct {
	*containerd.Runtime
	image string
}

func (w withImage) Start(ctx context.Context, spec dataplane.ContainerSpec) error {
	if spec.Image == "" {
		spec.Image = w.image
	}
	return w.Runtime.Start(ctx, spec)
}

// env is a containerd with the busybox image at a path.
type env struct {
	d     *containerdtest.Daemon
	image string // OCI archive
}

func newEnv(t testing.TB) *env {
	t.Helper()
	d := containerdtest.Start(t)
	image := filepath.Join(t.TempDir(), "busybox.tar")
	containerdtest.WriteBusyboxImage(t, image, "")
	return &env{d: d, image: image}
}

// namespace is a containerd namespace per runtime directory, so the
// suite's fresh runtimes do not see each other's containers.
func namespace(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return "t" + hex.EncodeToString(sum[:6])
}

// importImage imports the busybox archive into ns.
func (e *env) importImage(t testing.TB, ns string) {
	t.Helper()
	f, err := os.Open(e.image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := containerd.ImportArchive(context.Background(), containerd.ImportOptions{Address: e.d.Address, Namespace: ns}, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != containerdtest.BusyboxRef {
		t.Fatalf("imported %v, want [%s]", names, containerdtest.BusyboxRef)
	}
}

// open opens a runtime on dir with the image imported.
func (e *env) open(t testing.TB, dir string, mod func(*containerd.Options)) (*containerd.Runtime, func()) {
	t.Helper()
	ns := namespace(dir)
	e.importImage(t, ns)
	opts := containerd.Options{Dir: dir, Address: e.d.Address, Namespace: ns}
	if mod != nil {
		mod(&opts)
	}
	rt, err := containerd.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return rt, func() { rt.Close() }
}

func TestConformance(t *testing.T) {
	e := newEnv(t)
	dataplanetest.Run(t, func(t testing.TB, dir string) (dataplane.Runtime, func()) {
		t.Helper()
		rt, closeRT := e.open(t, dir, nil)
		return withImage{rt, containerdtest.BusyboxRef}, closeRT
	}, dataplanetest.Commands{Shell: []string{"/bin/sh", "-c"}})
}

// fresh opens a runtime on a new directory and removes its containers at
// the end.
func (e *env) fresh(t *testing.T, mod func(*containerd.Options)) *containerd.Runtime {
	t.Helper()
	rt, closeRT := e.open(t, t.TempDir(), mod)
	t.Cleanup(func() {
		list, _ := rt.List()
		for _, st := range list {
			rt.Remove(context.Background(), st.ID)
		}
		closeRT()
	})
	return rt
}

func waitExited(t testing.TB, rt dataplane.Runtime, id string) dataplane.State {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := rt.State(id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == dataplane.Exited {
			return st
		}
		select {
		case <-rt.Changes():
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("container %s did not exit", id)
	return dataplane.State{}
}

func run(t testing.TB, rt dataplane.Runtime, spec dataplane.ContainerSpec) (dataplane.State, string) {
	t.Helper()
	if err := rt.Start(context.Background(), spec); err != nil {
		t.Fatalf("start %s: %v", spec.ID, err)
	}
	st := waitExited(t, rt, spec.ID)
	b, err := os.ReadFile(rt.LogPath(spec.ID))
	if err != nil {
		t.Fatal(err)
	}
	return st, string(b)
}

func TestPullPolicy(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		policy containerd.PullPolicy
		image  string
		err    error  // from Start
		reason string // in the message
	}{
		{containerd.PullNever, containerdtest.BusyboxRef, nil, ""},
		{containerd.PullIfNotPresent, containerdtest.BusyboxRef, nil, ""},
		{containerd.PullNever, "127.0.0.1:1/missing:v1", errdefs.ErrNotFound, "ErrImageNeverPull"},
		{containerd.PullIfNotPresent, "127.0.0.1:1/missing:v1", errdefs.ErrUnavailable, "ErrImagePull"},
		// Always pulls even a present image; no registry answers here.
		{containerd.PullAlways, containerdtest.BusyboxRef, errdefs.ErrUnavailable, "ErrImagePull"},
		{containerd.PullIfNotPresent, "Not A Reference", errdefs.ErrInvalid, "image"},
	} {
		t.Run(string(tc.policy)+" "+tc.image, func(t *testing.T) {
			rt := e.fresh(t, func(o *containerd.Options) {
				o.PullPolicy, o.PullTimeout = tc.policy, 10*time.Second
			})
			err := rt.Start(context.Background(), dataplane.ContainerSpec{ID: "c", Image: tc.image, Command: []string{"true"}})
			if tc.err == nil {
				if err != nil {
					t.Fatalf("start: %v", err)
				}
				if st := waitExited(t, rt, "c"); st.ExitCode != 0 {
					t.Errorf("state %+v, want exit 0", st)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("start: %v, want %v mentioning %s", err, tc.err, tc.reason)
			}
			if _, serr := rt.State("c"); !errors.Is(serr, errdefs.ErrNotFound) {
				t.Errorf("a container that could not start is known: %v", serr)
			}
		})
	}
}

func TestImageDefaultCommandAndLimits(t *testing.T) {
	e := newEnv(t)
	rt := e.fresh(t, nil)
	// The image's default command is sh: with stdin closed it exits 0.
	st, _ := run(t, rt, dataplane.ContainerSpec{ID: "default", Image: containerdtest.BusyboxRef})
	if st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("image default command: %+v", st)
	}
	// Limits land in the container's cgroup (read from the host: the
	// container has no cgroup mount).
	if err := rt.Start(context.Background(), dataplane.ContainerSpec{ID: "limits", Image: containerdtest.BusyboxRef,
		MemoryLimit: 64 << 20, CPUMilli: 250, Command: []string{"sleep", "60"}}); err != nil {
		t.Fatal(err)
	}
	st, err := rt.State("limits")
	if err != nil || st.Pid <= 0 {
		t.Fatalf("state %+v %v", st, err)
	}
	mem := cgroupFile(t, st.Pid, "memory", "memory.limit_in_bytes", "memory.max")
	cpu := cgroupFile(t, st.Pid, "cpu", "cpu.cfs_quota_us", "cpu.max")
	if mem != "67108864" || !strings.HasPrefix(cpu, "25000") {
		t.Errorf("cgroup limits: memory %q, cpu %q; want 67108864 and 25000", mem, cpu)
	}
	// The same cgroup gives the container's resource use.
	use, err := rt.Stats("limits")
	if err != nil || use.CPU <= 0 || use.MemoryBytes == 0 {
		t.Errorf("Stats = %+v %v, want CPU time and memory in use", use, err)
	}
	if _, err := rt.Stats("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Stats(unknown): %v, want ErrNotFound", err)
	}
}

// cgroupFile reads a cgroup v1 (controller/v1) or v2 (v2) file of pid.
func cgroupFile(t testing.TB, pid int, controller, v1, v2 string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		var p string
		switch {
		case slices.Contains(strings.Split(f[1], ","), controller):
			p = filepath.Join("/sys/fs/cgroup", controller, f[2], v1)
		case f[1] == "":
			p = filepath.Join("/sys/fs/cgroup", f[2], v2)
		default:
			continue
		}
		if b, err := os.ReadFile(p); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("no %s cgroup file for pid %d:\n%s", controller, pid, b)
	return ""
}

func TestOOMKilled(t *testing.T) {
	e := newEnv(t)
	rt := e.fresh(t, nil)
	// dd holds a 64 MiB block in memory: over a 16 MiB limit.
	st, logs := run(t, rt, dataplane.ContainerSpec{ID: "oom", Image: containerdtest.BusyboxRef, MemoryLimit: 16 << 20,
		Command: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"}})
	if st.ExitCode != 137 || st.Reason != "OOMKilled" {
		t.Errorf("state %+v, want 137 OOMKilled\n%s", st, logs)
	}
}

func TestPodSharesNamespaces(t *testing.T) {
	for _, podNetwork := range []bool{false, true} {
		t.Run(map[bool]string{false: "host network", true: "pod network"}[podNetwork], func(t *testing.T) {
			e := newEnv(t)
			rt := e.fresh(t, func(o *containerd.Options) { o.PodNetwork = podNetwork })
			ctx := context.Background()
			pod := func(uid, name string) dataplane.ContainerSpec {
				return dataplane.ContainerSpec{ID: uid + "-" + name, Image: containerdtest.BusyboxRef,
					Labels:  map[string]string{"pod-uid": uid, "pod-name": "pod-" + uid},
					Command: []string{"sleep", "60"}}
			}
			for _, s := range []dataplane.ContainerSpec{pod("a", "one"), pod("a", "two"), pod("b", "one")} {
				if err := rt.Start(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			ns := func(id, which string) string {
				t.Helper()
				var out bytes.Buffer
				code, err := rt.Exec(ctx, id, dataplane.ExecSpec{Command: []string{"ls", "-l", "/proc/self/ns/" + which}, Stdout: &out})
				if err != nil || code != 0 {
					t.Fatalf("exec in %s: %d %v", id, code, err)
				}
				f := strings.Fields(out.String())
				return f[len(f)-1]
			}
			host := func(which string) string {
				l, err := os.Readlink("/proc/self/ns/" + which)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			for _, which := range []string{"pid", "ipc", "net"} {
				a1, a2, b1 := ns("a-one", which), ns("a-two", which), ns("b-one", which)
				if a1 != a2 {
					t.Errorf("%s namespace of one pod differs: %s %s", which, a1, a2)
				}
				shared := which == "net" && !podNetwork
				if !shared && (a1 == b1 || a1 == host(which)) {
					t.Errorf("%s namespace %s shared across pods or with the host (%s, host %s)", which, a1, b1, host(which))
				}
				if shared && a1 != host(which) {
					t.Errorf("net namespace %s, want the host's %s", a1, host(which))
				}
			}
			// A container's process sees its pod's sandbox as PID 1.
			var out bytes.Buffer
			if code, err := rt.Exec(ctx, "a-two", dataplane.ExecSpec{Command: []string{"cat", "/proc/1/cmdline"}, Stdout: &out}); err != nil || code != 0 {
				t.Fatalf("exec: %d %v", code, err)
			}
			if !strings.Contains(out.String(), "pause") {
				t.Errorf("pid 1 of the pod is %q, want the pause process", out.String())
			}
			if podNetwork {
				// Containers of one pod talk over loopback.
				if err := rt.Start(ctx, dataplane.ContainerSpec{ID: "a-server", Image: containerdtest.BusyboxRef,
					Labels: map[string]string{"pod-uid": "a"}, Command: []string{"sh", "-c", "echo hello | nc -l -p 8080"}}); err != nil {
					t.Fatal(err)
				}
				var got string
				for i := 0; i < 100 && !strings.Contains(got, "hello"); i++ {
					out.Reset()
					rt.Exec(ctx, "a-one", dataplane.ExecSpec{Command: []string{"sh", "-c", "nc 127.0.0.1 8080 </dev/null"}, Stdout: &out})
					got = out.String()
					if !strings.Contains(got, "hello") {
						time.Sleep(50 * time.Millisecond)
					}
				}
				if !strings.Contains(got, "hello") {
					t.Errorf("container a-one cannot reach a-server over loopback: %q", got)
				}
			}
		})
	}
}

func TestExecErrors(t *testing.T) {
	e := newEnv(t)
	rt := e.fresh(t, nil)
	ctx := context.Background()
	if _, err := rt.Exec(ctx, "nope", dataplane.ExecSpec{Command: []string{"true"}}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("exec in unknown container: %v, want ErrNotFound", err)
	}
	st, _ := run(t, rt, dataplane.ContainerSpec{ID: "done", Image: containerdtest.BusyboxRef, Command: []string{"true"}})
	if st.ExitCode != 0 {
		t.Fatalf("state %+v", st)
	}
	if _, err := rt.Exec(ctx, "done", dataplane.ExecSpec{Command: []string{"true"}}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("exec in exited container: %v, want ErrInvalid", err)
	}
	if err := rt.Start(ctx, dataplane.ContainerSpec{ID: "up", Image: containerdtest.BusyboxRef, Command: []string{"sleep", "60"}}); err != nil {
		t.Fatal(err)
	}
	code, err := rt.Exec(ctx, "up", dataplane.ExecSpec{Command: []string{"/no/such/binary"}})
	if err != nil || code == 0 {
		t.Errorf("exec of a missing binary = %d %v, want a non-zero code", code, err)
	}
}

func TestContainerdRestart(t *testing.T) {
	e := newEnv(t)
	rt := e.fresh(t, nil)
	ctx := context.Background()
	if err := rt.Start(ctx, dataplane.ContainerSpec{ID: "survivor", Image: containerdtest.BusyboxRef,
		Command: []string{"sh", "-c", "echo up; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done; exit 6"}}); err != nil {
		t.Fatal(err)
	}
	before, err := rt.State("survivor")
	if err != nil {
		t.Fatal(err)
	}
	e.d.Restart(t)
	// The task kept running under its shim; the runtime reconnects for exec
	// and resumes waiting for the exit.
	var code int
	for i := 0; i < 100; i++ {
		if code, err = rt.Exec(ctx, "survivor", dataplane.ExecSpec{Command: []string{"touch", "/tmp/go"}}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // the client reconnects
	}
	if err != nil || code != 0 {
		t.Fatalf("exec after the restart: %d %v", code, err)
	}
	st := waitExited(t, rt, "survivor")
	if st.ExitCode != 6 || st.Pid != before.Pid {
		t.Errorf("state %+v, want the same process exiting 6", st)
	}
	b, _ := os.ReadFile(rt.LogPath("survivor"))
	if !strings.Contains(string(b), "stdout F up") || !strings.Contains(string(b), "stdout F done") {
		t.Errorf("log across the restart:\n%s", b)
	}
}

func TestRemoveCleansContainerd(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	rt, closeRT := e.open(t, dir, nil)
	defer closeRT()
	ctx := context.Background()
	long := strings.Repeat("x", 90) + "-long" // over containerd's 76 characters: hashed
	pod := map[string]string{"pod-uid": "p1"}
	for _, id := range []string{long, "second"} {
		if err := rt.Start(ctx, dataplane.ContainerSpec{ID: id, Labels: pod, Image: containerdtest.BusyboxRef, Command: []string{"sleep", "60"}}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(e.d.Address, client.WithDefaultNamespace(namespace(dir)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	count := func() int {
		t.Helper()
		ctrs, err := c.Containers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(ctrs)
	}
	if n := count(); n != 3 {
		t.Errorf("%d containerd containers, want 3 (two containers and the pod's sandbox)", n)
	}
	if err := rt.Remove(ctx, long); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Errorf("%d containerd containers after removing one, want 2 (the sandbox stays for the other)", n)
	}
	if err := rt.Remove(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Errorf("%d containerd containers after removing the pod's last container, want 0", n)
	}
	// Only the image's committed layer is left: no container snapshot.
	active := 0
	if err := c.SnapshotService("").Walk(namespaces.WithNamespace(ctx, namespace(dir)), func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			active++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if active != 0 {
		t.Errorf("%d container snapshots left", active)
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 1 { // .pause stays
		t.Errorf("runtime directory keeps %d entries", len(ents))
	}
}

func TestTTY(t *testing.T) {
	e := newEnv(t)
	rt := e.fresh(t, nil)
	ctx := context.Background()
	// A container with a terminal: its output reaches the log as lines.
	st, logs := run(t, rt, dataplane.ContainerSpec{ID: "tty", Image: containerdtest.BusyboxRef, TTY: true,
		Command: []string{"sh", "-c", "[ -t 1 ] && echo on a terminal"}})
	if st.ExitCode != 0 || !strings.Contains(logs, "stdout F on a terminal\n") {
		t.Errorf("tty container: %+v\n%q", st, logs)
	}
	// exec -it: a terminal with input and output (busybox's stty cannot
	// read the size here, so resizes are sent but not checked).
	if err := rt.Start(ctx, dataplane.ContainerSpec{ID: "svc", Image: containerdtest.BusyboxRef, Command: []string{"sleep", "60"}}); err != nil {
		t.Fatal(err)
	}
	resize := make(chan dataplane.TermSize, 1)
	resize <- dataplane.TermSize{Width: 91, Height: 17}
	var out bytes.Buffer
	// Input typed on the terminal; stdin stays open (its end hangs the
	// terminal up, as closing `kubectl exec -it` does).
	stdin, typing := io.Pipe()
	go typing.Write([]byte("typed\n"))
	code, err := rt.Exec(ctx, "svc", dataplane.ExecSpec{Command: []string{"sh", "-c", "read line; [ -t 0 ] && [ -t 1 ] && echo got $line"},
		TTY: true, Stdin: stdin, Stdout: &out, Resize: resize})
	close(resize)
	typing.Close()
	if err != nil || code != 0 || !strings.Contains(out.String(), "got typed") {
		t.Errorf("exec -t = %d %v %q, want the typed line echoed on a terminal", code, err, out.String())
	}
}
