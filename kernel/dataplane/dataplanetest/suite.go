// Package dataplanetest is the conformance suite every workload runtime
// passes: start, exit codes, graceful and forced stop, logs, environment,
// working directory, start errors, exec, removal, adoption by a new
// runtime instance on the same state directory, and (as root) containers
// and execs joining a pod's network namespace.
package dataplanetest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
)

// Factory opens a runtime on dir; opening it again on the same dir must
// adopt the containers the first instance started. The returned close
// function releases the instance without stopping containers.
type Factory func(t testing.TB, dir string) (rt dataplane.Runtime, close func())

// Commands gives the suite commands the runtime can run (the exec runtime
// runs host binaries; an image-based runtime passes commands valid in its
// test image).
type Commands struct {
	// Shell runs a /bin/sh script: []string{"/bin/sh", "-c"}.
	Shell []string
	// Skip names subtests the runtime cannot pass by design, with the
	// reason each is skipped (the wasm runtime: WASI has no signals).
	Skip map[string]string
}

// Run runs the suite.
func Run(t *testing.T, open Factory, cmds Commands) {
	sh := func(script string) []string { return append(append([]string(nil), cmds.Shell...), script) }
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			if why, ok := cmds.Skip[name]; ok {
				t.Skip(why)
			}
			f(t)
		})
	}

	run("exit codes", func(t *testing.T) {
		rt := openFresh(t, open)
		for _, tc := range []struct {
			script string
			code   int
			reason string
		}{
			{"exit 0", 0, "Completed"},
			{"exit 3", 3, "Error"},
			{"kill -9 $$", 137, "Error"},
		} {
			t.Run(tc.script, func(t *testing.T) {
				id := "c-" + strings.NewReplacer(" ", "-", "$", "", "-", "").Replace(tc.script)
				start(t, rt, dataplane.ContainerSpec{ID: id, Command: sh(tc.script)})
				st := waitExited(t, rt, id)
				if st.ExitCode != tc.code || st.Reason != tc.reason {
					t.Errorf("exit %d %q, want %d %q", st.ExitCode, st.Reason, tc.code, tc.reason)
				}
				if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
					t.Errorf("times %v %v", st.StartedAt, st.FinishedAt)
				}
			})
		}
	})

	run("start error", func(t *testing.T) {
		rt := openFresh(t, open)
		start(t, rt, dataplane.ContainerSpec{ID: "missing", Command: []string{"/no/such/binary"}})
		st := waitExited(t, rt, "missing")
		if st.ExitCode != 128 || st.Reason != "StartError" || st.Message == "" {
			t.Errorf("state %+v, want StartError 128 with a message", st)
		}
	})

	run("duplicate id", func(t *testing.T) {
		rt := openFresh(t, open)
		start(t, rt, dataplane.ContainerSpec{ID: "dup", Command: sh("sleep 30")})
		err := rt.Start(context.Background(), dataplane.ContainerSpec{ID: "dup", Command: sh("true")})
		if !errors.Is(err, errdefs.ErrAlreadyExists) {
			t.Errorf("second start: %v, want ErrAlreadyExists", err)
		}
		if _, err := rt.State("nope"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("State(unknown): %v, want ErrNotFound", err)
		}
	})

	run("env, workdir and logs", func(t *testing.T) {
		rt := openFresh(t, open)
		dir := t.TempDir()
		start(t, rt, dataplane.ContainerSpec{ID: "env", Command: sh(`echo "v=$V"; pwd; echo oops >&2`),
			Env: []string{"V=hello world", "PATH=/usr/bin:/bin"}, WorkingDir: dir})
		waitExited(t, rt, "env")
		logs := readLog(t, rt, "env")
		for _, want := range []string{"stdout F v=hello world", "stdout F " + dir, "stderr F oops"} {
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
	})

	run("graceful stop", func(t *testing.T) {
		rt := openFresh(t, open)
		start(t, rt, dataplane.ContainerSpec{ID: "term", Command: sh(`trap 'echo bye; exit 7' TERM; echo up; while :; do sleep 0.05; done`)})
		waitLog(t, rt, "term", "stdout F up")
		if err := rt.Stop(context.Background(), "term", 20*time.Second); err != nil {
			t.Fatal(err)
		}
		st, err := rt.State("term")
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != dataplane.Exited || st.ExitCode != 7 {
			t.Errorf("state %+v, want exited 7 from the TERM trap", st)
		}
		if logs := readLog(t, rt, "term"); !strings.Contains(logs, "stdout F bye") {
			t.Errorf("log lacks the trap's output:\n%s", logs)
		}
	})

	run("forced stop", func(t *testing.T) {
		rt := openFresh(t, open)
		start(t, rt, dataplane.ContainerSpec{ID: "stubborn", Command: sh(`trap '' TERM; echo up; while :; do sleep 0.05; done`)})
		waitLog(t, rt, "stubborn", "stdout F up")
		if err := rt.Stop(context.Background(), "stubborn", 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		st, err := rt.State("stubborn")
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != dataplane.Exited || st.ExitCode != 137 {
			t.Errorf("state %+v, want exited 137 (SIGKILL)", st)
		}
	})

	run("exec", func(t *testing.T) {
		rt := openFresh(t, open)
		start(t, rt, dataplane.ContainerSpec{ID: "svc", Command: sh("sleep 30"), Env: []string{"X=42", "PATH=/usr/bin:/bin"}})
		for _, tc := range []struct {
			script string
			code   int
			out    string
		}{
			{`echo "x=$X"`, 0, "x=42\n"},
			{"exit 5", 5, ""},
		} {
			var out bytes.Buffer
			code, err := rt.Exec(context.Background(), "svc", dataplane.ExecSpec{Command: sh(tc.script), Stdout: &out, Stderr: &out})
			if err != nil || code != tc.code || out.String() != tc.out {
				t.Errorf("exec %q = %d %q %v, want %d %q", tc.script, code, out.String(), err, tc.code, tc.out)
			}
		}
		var out bytes.Buffer
		code, err := rt.Exec(context.Background(), "svc", dataplane.ExecSpec{Command: sh("cat"), Stdin: strings.NewReader("in"), Stdout: &out})
		if err != nil || code != 0 || out.String() != "in" {
			t.Errorf("exec with stdin = %d %q %v", code, out.String(), err)
		}
	})

	run("remove", func(t *testing.T) {
		rt := openFresh(t, open)
		start(t, rt, dataplane.ContainerSpec{ID: "gone", Command: sh("sleep 30")})
		st, err := rt.State("gone")
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Remove(context.Background(), "gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.State("gone"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("State after Remove: %v, want ErrNotFound", err)
		}
		if st.Pid > 0 && processAlive(st.Pid) {
			t.Errorf("process %d still alive after Remove", st.Pid)
		}
		list, err := rt.List()
		if err != nil || len(list) != 0 {
			t.Errorf("List after Remove = %v %v", list, err)
		}
	})

	run("network namespace", func(t *testing.T) {
		if uid := os.Geteuid(); uid != 0 {
			t.Skipf("creating a network namespace needs root (CAP_SYS_ADMIN); running as uid %d", uid)
		}
		nsPath := filepath.Join(t.TempDir(), "pod-netns")
		if err := bridge.NewNetNS(nsPath); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := bridge.DeleteNetNS(nsPath); err != nil {
				t.Error(err)
			}
		})
		var fi syscall.Stat_t
		if err := syscall.Stat(nsPath, &fi); err != nil {
			t.Fatal(err)
		}
		want := "net:[" + strconv.FormatUint(fi.Ino, 10) + "]"
		rt := openFresh(t, open)
		pod := map[string]string{"pod-uid": "netns-pod"}
		start(t, rt, dataplane.ContainerSpec{ID: "in-pod", Labels: pod, NetNS: nsPath,
			Command: sh("readlink /proc/self/ns/net; sleep 30")})
		waitLog(t, rt, "in-pod", "stdout F "+want)
		var out bytes.Buffer
		code, err := rt.Exec(context.Background(), "in-pod", dataplane.ExecSpec{Command: sh("readlink /proc/self/ns/net"), Stdout: &out, Stderr: &out})
		if err != nil || code != 0 || strings.TrimSpace(out.String()) != want {
			t.Errorf("exec in the pod's namespace = %d %q %v, want %s", code, out.String(), err, want)
		}
		start(t, rt, dataplane.ContainerSpec{ID: "host", Command: sh("readlink /proc/self/ns/net")})
		waitExited(t, rt, "host")
		if logs := readLog(t, rt, "host"); strings.Contains(logs, want) || !strings.Contains(logs, "stdout F net:[") {
			t.Errorf("a container without NetNS logged %q, want a namespace other than %s", logs, want)
		}
	})

	run("adoption", func(t *testing.T) {
		dir := t.TempDir()
		rt, closeRT := open(t, dir)
		labels := map[string]string{"pod": "p1"}
		start(t, rt, dataplane.ContainerSpec{ID: "long", Labels: labels, Command: sh(`echo one; sleep 30; exit 4`)})
		start(t, rt, dataplane.ContainerSpec{ID: "short", Command: sh(`sleep 30; exit 9`)})
		waitLog(t, rt, "long", "stdout F one")
		st, err := rt.State("long")
		if err != nil {
			t.Fatal(err)
		}
		shortSt, err := rt.State("short")
		if err != nil {
			t.Fatal(err)
		}
		closeRT()
		// While no runtime watches, one container exits.
		killGroup(shortSt.Pid)
		rt2, close2 := open(t, dir)
		t.Cleanup(close2)
		t.Cleanup(func() {
			for _, id := range []string{"long", "short"} {
				rt2.Remove(context.Background(), id)
			}
		})
		got, err := rt2.State("long")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != dataplane.Running || got.Pid != st.Pid || got.Labels["pod"] != "p1" {
			t.Errorf("adopted state %+v, want the same running process with its labels", got)
		}
		s := waitExited(t, rt2, "short")
		if s.ExitCode == 0 {
			t.Errorf("short exited %d while away, want non-zero", s.ExitCode)
		}
		if err := rt2.Stop(context.Background(), "long", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if st := waitExited(t, rt2, "long"); st.ExitCode != 143 {
			t.Errorf("adopted container stopped with %d, want 143 (SIGTERM)", st.ExitCode)
		}
		if logs := readLog(t, rt2, "long"); !strings.Contains(logs, "stdout F one") {
			t.Errorf("log lost across adoption:\n%s", logs)
		}
	})
}

func openFresh(t *testing.T, open Factory) dataplane.Runtime {
	t.Helper()
	rt, closeRT := open(t, t.TempDir())
	t.Cleanup(func() {
		list, _ := rt.List()
		for _, st := range list {
			rt.Remove(context.Background(), st.ID)
		}
		closeRT()
	})
	return rt
}

func start(t testing.TB, rt dataplane.Runtime, spec dataplane.ContainerSpec) {
	t.Helper()
	if err := rt.Start(context.Background(), spec); err != nil {
		t.Fatalf("start %s: %v", spec.ID, err)
	}
}

// waitExited waits for the container to exit; the deadline guards against
// a hung test only.
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

func processAlive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// killGroup kills a process group behind the runtime's back.
func killGroup(pid int) {
	if pid > 0 {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}
