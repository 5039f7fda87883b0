package exec_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/exec"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// TestAttachStdin: a container started with Stdin reads what an attached
// writer sends, across two attaches; one started without it refuses.
func TestAttachStdin(t *testing.T) {
	rt, err := exec.New(exec.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	script := `read a; echo "got $a"; read b; echo "got $b" >&2`
	if err := rt.Start(ctx, dataplane.ContainerSpec{ID: "in", Stdin: true, Command: []string{"/bin/sh", "-c", script}}); err != nil {
		t.Fatal(err)
	}
	defer rt.Remove(ctx, "in")
	for _, line := range []string{"one\n", "two\n"} {
		w, err := rt.AttachStdin("in")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := rt.State("in")
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == dataplane.Exited {
			if st.ExitCode != 0 {
				t.Fatalf("exit %d: %s", st.ExitCode, st.Message)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container never read its input")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(rt.LogPath("in"))
	if !strings.Contains(string(b), "stdout F got one") || !strings.Contains(string(b), "stderr F got two") {
		t.Errorf("log %q lacks the echoed input", b)
	}
	if _, err := rt.AttachStdin("in"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("attach to an exited container: %v, want ErrConflict", err)
	}
	if err := rt.Start(ctx, dataplane.ContainerSpec{ID: "plain", Command: []string{"sleep", "30"}}); err != nil {
		t.Fatal(err)
	}
	defer rt.Remove(ctx, "plain")
	if _, err := rt.AttachStdin("plain"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("attach to a container without stdin: %v, want ErrInvalid", err)
	}
}
