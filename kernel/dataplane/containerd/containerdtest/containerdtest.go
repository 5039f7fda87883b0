// Package containerdtest starts a private containerd for tests and builds
// a tiny OCI image from Debian's busybox-static, so tests of the
// containerd runtime need neither a system daemon nor a registry.
package containerdtest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BusyboxRef is the name WriteBusyboxImage gives the image.
const BusyboxRef = "tugboat.test/busybox:latest"

// busyboxApplets are linked to /bin/busybox in the image.
var busyboxApplets = []string{"sh", "sleep", "echo", "cat", "nc", "ls", "ps", "kill", "true", "false",
	"env", "pwd", "mkdir", "rm", "touch", "id", "hostname", "ip", "ifconfig", "head", "tail", "grep", "wc", "dd", "yes"}

// Daemon is a containerd started by Start.
type Daemon struct {
	// Address is the containerd socket.
	Address string
	// Dir holds the daemon's root, state and config.
	Dir string

	cmd    *exec.Cmd
	exited chan error
	logf   *os.File
}

// Start starts a containerd with its root, state and socket under a new
// short directory in /tmp (unix socket paths are limited to 108 bytes),
// waits for its socket and stops it in t.Cleanup, killing the runc shims
// and containers it left. It skips the test when containerd or runc is not
// installed or containerd cannot start, saying why.
func Start(t testing.TB) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containerd runtime tests need root (containerd and runc run containers)")
	}
	for _, bin := range []string{"containerd", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("containerd runtime tests need %s (Debian packages containerd and runc): %v", bin, err)
		}
	}
	dir, err := os.MkdirTemp("/tmp", "tb-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Address: filepath.Join(dir, "c.sock"), Dir: dir}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.Address, d.Address+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Logf("containerd log (tail):\n%s", tail(b, 4000))
		}
		d.stop()
		killShims(dir)
		unmountUnder(dir)
		os.RemoveAll(dir)
	})
	if err := d.launch(); err != nil {
		t.Skipf("containerd cannot start: %v", err)
	}
	return d
}

// Restart stops containerd (its shims and containers keep running) and
// starts it again on the same directory.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	d.stop()
	if err := d.launch(); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
}

// launch starts the daemon and waits for its socket.
func (d *Daemon) launch() error {
	logf, err := os.OpenFile(filepath.Join(d.Dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	os.Remove(d.Address)
	cmd := exec.Command("containerd", "--config", filepath.Join(d.Dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that started the child exits, not
	// the process. Go ends a thread whenever a goroutine exits while locked
	// to it (the netns code does that on purpose), so a launcher thread
	// that returned to the pool could be ended by an unrelated test and
	// take containerd with it. One goroutine starts the daemon and waits
	// for it, keeping its thread locked, and so alive, for the daemon's
	// whole life.
	started, exited := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		logf.Close()
		return err
	}
	d.cmd, d.logf, d.exited = cmd, logf, exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", d.Address); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-d.exited:
			d.exited <- err
			b, _ := os.ReadFile(filepath.Join(d.Dir, "containerd.log"))
			return fmt.Errorf("%v:\n%s", err, tail(b, 2000))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(d.Dir, "containerd.log"))
			return fmt.Errorf("socket %s never appeared:\n%s", d.Address, tail(b, 2000))
		}
	}
}

// stop terminates the daemon (SIGKILL after 10 s).
func (d *Daemon) stop() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
	d.logf.Close()
	d.cmd = nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// killShims kills the shims whose command line names the daemon's
// directory (their -address flag) and the containers they ran: each
// shim's process group holds the shim only, so the containers are found
// as the shim's children.
func killShims(dir string) {
	procs, _ := os.ReadDir("/proc")
	var shims []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && strings.HasSuffix(args[0], "containerd-shim-runc-v2") && strings.Contains(string(b), dir) {
			shims = append(shims, pid)
		}
	}
	for _, shim := range shims {
		for _, child := range children(shim) {
			syscall.Kill(child, syscall.SIGKILL)
		}
		syscall.Kill(shim, syscall.SIGKILL)
	}
}

// children lists the direct children of pid.
func children(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	for _, tk := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", tk.Name(), "children"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// unmountUnder unmounts what the daemon left mounted under dir (rootfs
// and snapshot mounts of killed containers), deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// WriteBusyboxImage writes an OCI image layout tarball (oci-layout,
// index.json, blobs/sha256/...) at path: one uncompressed layer with
// Debian's static /bin/busybox and symlinks for common applets, named ref
// (BusyboxRef when empty). It skips the test when busybox-static is not
// installed.
func WriteBusyboxImage(t testing.TB, path, ref string) {
	t.Helper()
	if ref == "" {
		ref = BusyboxRef
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("the test image needs Debian's busybox-static: %v", err)
	}
	if err := checkStatic(bb); err != nil {
		t.Skipf("the test image needs Debian's busybox-static: /bin/busybox %v", err)
	}
	if err := os.WriteFile(path, BusyboxImage(bb, ref), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkStatic refuses an ELF binary with a program interpreter (a
// dynamically linked busybox cannot run in an empty image).
func checkStatic(b []byte) error {
	if bytes.Contains(b[:min(len(b), 4096)], []byte("/lib64/ld-linux")) || bytes.Contains(b[:min(len(b), 4096)], []byte("/lib/ld-linux")) {
		return fmt.Errorf("is dynamically linked")
	}
	return nil
}

// BusyboxImage returns an OCI image layout tarball with busybox (the
// binary's bytes) as /bin/busybox, named ref.
func BusyboxImage(busybox []byte, ref string) []byte {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	mtime := time.Unix(0, 0)
	for _, d := range []string{"bin/", "tmp/", "etc/", "proc/", "sys/", "dev/", "root/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		lw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: mtime})
	}
	lw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(busybox)), ModTime: mtime})
	lw.Write(busybox)
	for _, a := range busyboxApplets {
		lw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mtime})
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
	lw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd)), ModTime: mtime})
	lw.Write(passwd)
	lw.Close()

	diffID := digest(layer.Bytes())
	config := mustJSON(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config": map[string]any{
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Cmd":        []string{"sh"},
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	manifest := mustJSON(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", config, nil),
		"layers":        []any{descriptor("application/vnd.oci.image.layer.v1.tar", layer.Bytes(), nil)},
	})
	index := mustJSON(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{descriptor("application/vnd.oci.image.manifest.v1+json", manifest, map[string]string{
			"io.containerd.image.name":          ref,
			"org.opencontainers.image.ref.name": ref,
		})},
	})

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	file := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: mtime})
		tw.Write(b)
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "blobs/", Mode: 0o755, ModTime: mtime})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "blobs/sha256/", Mode: 0o755, ModTime: mtime})
	for _, b := range [][]byte{layer.Bytes(), config, manifest} {
		file("blobs/sha256/"+strings.TrimPrefix(digest(b), "sha256:"), b)
	}
	file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	file("index.json", index)
	tw.Close()
	return out.Bytes()
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func descriptor(mediaType string, b []byte, annotations map[string]string) map[string]any {
	d := map[string]any{"mediaType": mediaType, "digest": digest(b), "size": len(b)}
	if annotations != nil {
		d["annotations"] = annotations
	}
	return d
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
