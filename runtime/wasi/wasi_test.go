package wasi_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/runtime/wasi"
)

// workload is the test program, built once by TestMain; cacheDir keeps
// its compiled code for every runtime the tests open.
var workload, cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tb-wasi-")
	if err != nil {
		panic(err)
	}
	workload = filepath.Join(dir, "workload.wasm")
	cacheDir = filepath.Join(dir, "cache")
	cmd := exec.Command("go", "build", "-o", workload, "./testdata/workload")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic("build the test workload: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// trapModule is a hand-written module whose _start traps (unreachable).
var trapModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: func()
	0x03, 0x02, 0x01, 0x00, // func 0: type 0
	0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00, // export _start
	0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b, // code: unreachable
}

func open(t testing.TB, dir string) *wasi.Runtime {
	t.Helper()
	rt, err := wasi.New(context.Background(), wasi.Options{Dir: dir, ModuleDir: filepath.Dir(workload), CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func fresh(t *testing.T) *wasi.Runtime {
	t.Helper()
	rt := open(t, t.TempDir())
	t.Cleanup(func() {
		list, _ := rt.List()
		for _, st := range list {
			rt.Remove(context.Background(), st.ID)
		}
		rt.Close()
	})
	return rt
}

func start(t testing.TB, rt dataplane.Runtime, spec dataplane.ContainerSpec) {
	t.Helper()
	if spec.Image == "" {
		spec.Image = workload
	}
	if err := rt.Start(context.Background(), spec); err != nil {
		t.Fatalf("start %s: %v", spec.ID, err)
	}
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

func readLog(t testing.TB, rt dataplane.Runtime, id string) string {
	t.Helper()
	b, err := os.ReadFile(rt.LogPath(id))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func waitLog(t testing.TB, rt dataplane.Runtime, id, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(readLog(t, rt, id), want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("log of %s never got %q:\n%s", id, want, readLog(t, rt, id))
}

func TestExitCodes(t *testing.T) {
	rt := fresh(t)
	for _, tc := range []struct {
		id     string
		spec   dataplane.ContainerSpec
		code   int
		reason string
		msg    string
	}{
		{"zero", dataplane.ContainerSpec{Command: []string{"w", "exit", "0"}}, 0, "Completed", ""},
		{"three", dataplane.ContainerSpec{Command: []string{"w", "exit", "3"}}, 3, "Error", ""},
		{"default-args", dataplane.ContainerSpec{}, 0, "Completed", ""},
		{"relative-image", dataplane.ContainerSpec{Image: filepath.Base(workload), Command: []string{"w", "exit", "4"}}, 4, "Error", ""},
		{"missing", dataplane.ContainerSpec{Image: "/no/such/module.wasm"}, 128, "StartError", "no such file"},
		{"escape", dataplane.ContainerSpec{Image: "../outside.wasm"}, 128, "StartError", "outside the module directory"},
		{"not-wasm", dataplane.ContainerSpec{Image: "/etc/hostname"}, 128, "StartError", "compile module"},
		{"trap", dataplane.ContainerSpec{Image: writeFile(t, "trap.wasm", trapModule)}, 134, "Error", "unreachable"},
		{"no-start", dataplane.ContainerSpec{Image: writeFile(t, "empty.wasm", trapModule[:8])}, 128, "StartError", "no _start"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			start(t, rt, dataplane.ContainerSpec{ID: tc.id, Image: tc.spec.Image, Command: tc.spec.Command})
			st := waitExited(t, rt, tc.id)
			if st.ExitCode != tc.code || st.Reason != tc.reason || !strings.Contains(st.Message, tc.msg) {
				t.Errorf("exit %d %q %q, want %d %q with %q", st.ExitCode, st.Reason, st.Message, tc.code, tc.reason, tc.msg)
			}
			if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
				t.Errorf("times %v %v", st.StartedAt, st.FinishedAt)
			}
		})
	}
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEnvWorkdirArgsAndLogs(t *testing.T) {
	rt := fresh(t)
	dir := t.TempDir()
	start(t, rt, dataplane.ContainerSpec{ID: "env", Command: []string{"w", "env"}, Env: []string{"V=hello world"}, WorkingDir: dir})
	if st := waitExited(t, rt, "env"); st.ExitCode != 0 {
		t.Fatalf("state %+v", st)
	}
	logs := readLog(t, rt, "env")
	for _, want := range []string{"stdout F v=hello world", "stdout F " + dir + " <nil>", "stderr F oops", "stdout F no newline"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	line := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) [FP] `)
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !line.MatchString(l) {
			t.Errorf("log line %q is not in CRI format", l)
		}
	}
	start(t, rt, dataplane.ContainerSpec{ID: "args", Command: []string{"prog"}})
	waitExited(t, rt, "args")
	if logs := readLog(t, rt, "args"); !strings.Contains(logs, "stdout F args: [prog]") {
		t.Errorf("argv not passed:\n%s", logs)
	}
}

func TestMounts(t *testing.T) {
	rt := fresh(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "in.txt"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id       string
		readOnly bool
		cmd      []string
		code     int
		log      string
	}{
		{"read", true, []string{"w", "cat", "/data/in.txt"}, 0, "stdout F from the host"},
		{"write", false, []string{"w", "write", "/data/out.txt", "hi"}, 0, ""},
		{"write-ro", true, []string{"w", "write", "/data/ro.txt", "hi"}, 1, "stderr F "},
		{"private-root", false, []string{"w", "write", "/scratch.txt", "mine"}, 0, ""},
	} {
		t.Run(tc.id, func(t *testing.T) {
			start(t, rt, dataplane.ContainerSpec{ID: tc.id, Command: tc.cmd,
				Mounts: []dataplane.Mount{{HostPath: host, ContainerPath: "/data", ReadOnly: tc.readOnly}}})
			st := waitExited(t, rt, tc.id)
			if logs := readLog(t, rt, tc.id); st.ExitCode != tc.code || !strings.Contains(logs, tc.log) {
				t.Errorf("exit %d, log:\n%s\nwant %d and %q", st.ExitCode, logs, tc.code, tc.log)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(host, "out.txt")); err != nil || string(b) != "hi" {
		t.Errorf("write through the mount: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(host, "ro.txt")); err == nil {
		t.Error("a read-only mount was written")
	}
	if _, err := os.Stat("/scratch.txt"); err == nil {
		t.Error("the module's / is the host's /")
	}
}

func TestStopAndRemove(t *testing.T) {
	rt := fresh(t)
	ctx := context.Background()
	for _, mode := range []string{"loop", "spin"} {
		t.Run(mode, func(t *testing.T) {
			start(t, rt, dataplane.ContainerSpec{ID: mode, Command: []string{"w", mode}})
			waitLog(t, rt, mode, "stdout F up")
			if st, _ := rt.State(mode); st.Status != dataplane.Running {
				t.Fatalf("state %+v, want running", st)
			}
			if use, err := rt.Stats(mode); err != nil || use.MemoryBytes == 0 {
				t.Errorf("Stats = %+v %v, want the module's memory", use, err)
			}
			if mode == "spin" { // burns CPU until stopped
				var use dataplane.Stats
				for i := 0; i < 200 && use.CPU == 0; i++ {
					use, _ = rt.Stats(mode)
					time.Sleep(10 * time.Millisecond)
				}
				if use.CPU == 0 {
					t.Errorf("a spinning module used no CPU time: %+v", use)
				}
			}
			if err := rt.Stop(ctx, mode, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			st, err := rt.State(mode)
			if err != nil || st.Status != dataplane.Exited || st.ExitCode != 137 {
				t.Errorf("state %+v %v, want exited 137", st, err)
			}
			if err := rt.Stop(ctx, mode, time.Second); err != nil {
				t.Errorf("stopping an exited container: %v", err)
			}
		})
	}
	start(t, rt, dataplane.ContainerSpec{ID: "gone", Command: []string{"w", "loop"}})
	if err := rt.Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.State("gone"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("State after Remove: %v, want ErrNotFound", err)
	}
	if use, err := rt.Stats("loop"); err != nil || use != (dataplane.Stats{}) {
		t.Errorf("Stats of an exited container = %+v %v, want zero", use, err)
	}
	if _, err := rt.Stats("gone"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Stats after Remove: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(rt.LogPath("gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("log kept after Remove: %v", err)
	}
}

func TestErrors(t *testing.T) {
	rt := fresh(t)
	ctx := context.Background()
	start(t, rt, dataplane.ContainerSpec{ID: "dup", Command: []string{"w", "loop"}})
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"duplicate id", rt.Start(ctx, dataplane.ContainerSpec{ID: "dup", Image: workload}), errdefs.ErrAlreadyExists},
		{"bad id", rt.Start(ctx, dataplane.ContainerSpec{ID: "a/b", Image: workload}), errdefs.ErrInvalid},
		{"tty", rt.Start(ctx, dataplane.ContainerSpec{ID: "tty", Image: workload, TTY: true}), errdefs.ErrInvalid},
		{"exec", func() error { _, err := rt.Exec(ctx, "dup", dataplane.ExecSpec{Command: []string{"sh"}}); return err }(), errdefs.ErrInvalid},
		{"exec unknown", func() error { _, err := rt.Exec(ctx, "nope", dataplane.ExecSpec{Command: []string{"sh"}}); return err }(), errdefs.ErrNotFound},
		{"state unknown", func() error { _, err := rt.State("nope"); return err }(), errdefs.ErrNotFound},
		{"stop unknown", rt.Stop(ctx, "nope", 0), errdefs.ErrNotFound},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	rt := fresh(t)
	for _, tc := range []struct {
		id    string
		limit int64
		mib   string
		ok    bool
	}{
		{"fits", 256 << 20, "32", true},
		{"over", 64 << 20, "128", false},
	} {
		t.Run(tc.id, func(t *testing.T) {
			start(t, rt, dataplane.ContainerSpec{ID: tc.id, Command: []string{"w", "alloc", tc.mib}, MemoryLimit: tc.limit})
			st := waitExited(t, rt, tc.id)
			logs := readLog(t, rt, tc.id)
			if ok := st.ExitCode == 0 && strings.Contains(logs, "allocated "+tc.mib); ok != tc.ok {
				t.Errorf("allocating %s MiB under %d MiB: exit %d, log:\n%s", tc.mib, tc.limit>>20, st.ExitCode, logs)
			}
		})
	}
}

func TestRestartReportsRunningAsExited(t *testing.T) {
	dir := t.TempDir()
	rt := open(t, dir)
	start(t, rt, dataplane.ContainerSpec{ID: "done", Labels: map[string]string{"pod": "p"}, Command: []string{"w", "exit", "5"}})
	waitExited(t, rt, "done")
	start(t, rt, dataplane.ContainerSpec{ID: "long", Labels: map[string]string{"pod": "p"}, Command: []string{"w", "loop"}})
	waitLog(t, rt, "long", "stdout F up")
	rt.Close()

	rt2 := open(t, dir)
	defer rt2.Close()
	list, err := rt2.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v %v, want two containers", list, err)
	}
	for _, st := range list {
		if st.Status != dataplane.Exited || st.Labels["pod"] != "p" {
			t.Errorf("after restart %+v, want exited with its labels", st)
		}
	}
	if st, _ := rt2.State("done"); st.ExitCode != 5 {
		t.Errorf("finished container %+v, want its exit code 5 kept", st)
	}
	if st, _ := rt2.State("long"); st.ExitCode != 137 {
		t.Errorf("running container %+v, want 137 after the restart", st)
	}
	if logs := readLog(t, rt2, "long"); !strings.Contains(logs, "stdout F up") {
		t.Errorf("log lost across restart:\n%s", logs)
	}
}
