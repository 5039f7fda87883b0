package exec_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/dataplanetest"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/exec"
)

func TestConformance(t *testing.T) {
	dataplanetest.Run(t, func(t testing.TB, dir string) (dataplane.Runtime, func()) {
		t.Helper()
		rt, err := exec.New(exec.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return rt, func() { rt.Close() }
	}, dataplanetest.Commands{Shell: []string{"/bin/sh", "-c"}})
}

func TestPlaceholderAndKillAll(t *testing.T) {
	dir := t.TempDir()
	rt, err := exec.New(exec.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	if err := rt.Start(ctx, dataplane.ContainerSpec{ID: "img", Image: "nginx"}); err != nil {
		t.Fatal(err)
	}
	if st, err := rt.State("img"); err != nil || st.Status != dataplane.Running || st.Pid != 0 {
		t.Fatalf("placeholder state %+v %v, want running without a process", st, err)
	}
	if err := rt.Stop(ctx, "img", time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ := rt.State("img"); st.Status != dataplane.Exited || st.ExitCode != 0 {
		t.Fatalf("stopped placeholder %+v, want exited 0", st)
	}

	if err := rt.Start(ctx, dataplane.ContainerSpec{ID: "proc", Command: []string{"sleep", "60"}}); err != nil {
		t.Fatal(err)
	}
	st, err := rt.State("proc")
	if err != nil || st.Pid <= 0 {
		t.Fatalf("state %+v %v", st, err)
	}
	exec.KillAll(dir)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, _ := rt.State("proc"); st.Status == dataplane.Exited {
			if st.ExitCode != 137 {
				t.Errorf("exit %d after KillAll, want 137", st.ExitCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("KillAll did not kill the container")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStats(t *testing.T) {
	rt, err := exec.New(exec.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	// Burns CPU until stopped.
	if err := rt.Start(ctx, dataplane.ContainerSpec{ID: "busy", Command: []string{"/bin/sh", "-c", "while :; do :; done"}}); err != nil {
		t.Fatal(err)
	}
	defer rt.Remove(ctx, "busy")
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := rt.Stats("busy")
		if err != nil {
			t.Fatal(err)
		}
		if st.CPU > 0 && st.MemoryBytes > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: no CPU time or memory seen", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMemoryLimit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cgroup limits need root")
	}
	rt, err := exec.New(exec.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		id, script string
		code       int
		reason     string
	}{
		{"fits", "exit 0", 0, "Completed"},
		{"hog", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}", 137, "OOMKilled"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			err := rt.Start(ctx, dataplane.ContainerSpec{ID: tc.id, Command: []string{"/bin/sh", "-c", tc.script}, MemoryLimit: 32 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Remove(ctx, tc.id)
			deadline := time.Now().Add(60 * time.Second)
			for {
				st, err := rt.State(tc.id)
				if err != nil {
					t.Fatal(err)
				}
				if st.Status == dataplane.Exited {
					if tc.reason == "OOMKilled" && st.Reason == "Completed" {
						t.Skip("no memory cgroup available here: the limit was not applied")
					}
					if st.ExitCode != tc.code || st.Reason != tc.reason {
						t.Errorf("exit %d %q, want %d %q", st.ExitCode, st.Reason, tc.code, tc.reason)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("container did not exit")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
