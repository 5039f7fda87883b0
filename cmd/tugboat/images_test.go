package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/containerd"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/containerd/containerdtest"
)

func TestImagesImport(t *testing.T) {
	d := containerdtest.Start(t)
	dir := t.TempDir()
	image := filepath.Join(dir, "busybox.tar")
	containerdtest.WriteBusyboxImage(t, image, "example.com/tools/busybox:1.35")
	garbage := filepath.Join(dir, "garbage.tar")
	if err := os.WriteFile(garbage, []byte("not a tarball"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args    []string
		wantOut string
		wantErr string
	}{
		{[]string{image}, "example.com/tools/busybox:1.35\n", ""},
		{[]string{image}, "example.com/tools/busybox:1.35\n", ""}, // again: idempotent
		{[]string{garbage}, "", "images import " + garbage},
		{[]string{filepath.Join(dir, "missing.tar")}, "", "no such file"},
	} {
		t.Run(filepath.Base(tc.args[0]), func(t *testing.T) {
			var out bytes.Buffer
			cmd := newRootCommand()
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(append([]string{"images", "import", "--address", d.Address}, tc.args...))
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || out.String() != tc.wantOut {
				t.Errorf("output %q, error %v; want %q", out.String(), err, tc.wantOut)
			}
		})
	}
	// The imported image runs under pull policy Never in the default
	// namespace.
	rt, err := containerd.New(context.Background(), containerd.Options{Dir: t.TempDir(), Address: d.Address, PullPolicy: containerd.PullNever})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	if err := rt.Start(ctx, dataplane.ContainerSpec{ID: "c", Image: "example.com/tools/busybox:1.35", Command: []string{"echo", "imported"}}); err != nil {
		t.Fatal(err)
	}
	defer rt.Remove(ctx, "c")
	for {
		st, err := rt.State("c")
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == dataplane.Exited {
			if st.ExitCode != 0 {
				t.Errorf("container exited %d: %s", st.ExitCode, st.Message)
			}
			break
		}
		<-rt.Changes()
	}
	if b, _ := os.ReadFile(rt.LogPath("c")); !strings.Contains(string(b), "stdout F imported") {
		t.Errorf("log %q lacks the output", b)
	}
}
