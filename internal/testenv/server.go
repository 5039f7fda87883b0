package testenv

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	execrt "github.com/tugboat-dev/tugboat/kernel/dataplane/exec"
)

// readyBanner starts the line tugboat server prints on stdout once it is
// ready; the URL follows it.
const readyBanner = "Tugboat is serving the Kubernetes API at "

// startTimeout bounds the wait for a server to become ready; it only
// guards against a hung test, it asserts nothing about speed.
const startTimeout = 2 * time.Minute

// Server is a running `tugboat server` process.
type Server struct {
	// URL is the https base URL the server announced.
	URL string
	// Kubeconfig is the path of the admin kubeconfig the server wrote.
	Kubeconfig string
	// DataDir is the server's data directory.
	DataDir string
	// RESTConfig is a client-go configuration from Kubeconfig (admin).
	RESTConfig *rest.Config

	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
	err    error // the process's exit status, valid after exited closes
}

// StartServer builds bin/tugboat and runs `tugboat server --listen
// 127.0.0.1:0 --data-dir <t.TempDir()> --write-kubeconfig <t.TempDir()>/...
// args...`, so args may override any of those (a later flag wins; pass
// --data-dir to restart on an existing directory). It waits until the server
// announces it is ready, and then checks /readyz through RESTConfig. The
// server is killed when the test ends; its output is logged if the test
// failed.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := Tugboat(t)
	tmp := t.TempDir()
	s := &Server{
		DataDir:    filepath.Join(tmp, "data"),
		Kubeconfig: filepath.Join(tmp, "admin.kubeconfig"),
		out:        &lockedBuffer{},
		exited:     make(chan struct{}),
	}
	if v := lastFlag(args, "data-dir"); v != "" {
		s.DataDir = v
	}
	if v := lastFlag(args, "write-kubeconfig"); v != "" {
		s.Kubeconfig = v
	}
	full := append([]string{"server",
		"--listen", "127.0.0.1:0",
		"--data-dir", s.DataDir,
		"--write-kubeconfig", s.Kubeconfig,
		"--log-level", "debug",
		// Every test server shares one plugin compilation cache (its
		// writes are atomic), so each module is compiled once, not once
		// per server start (about 20 s of CPU each on 2 cores).
		"--wasm-cache-dir", filepath.Join(RepoRoot(t), "bin", "test-wasm-cache"),
	}, args...)
	s.cmd = exec.Command(bin, full...)
	s.cmd.Stderr = s.out
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		s.Kill()
		<-s.exited
		// Pods of the local node outlive a killed server, as they outlive
		// a kubelet (a restarted agent adopts them); a test leaves none.
		execrt.KillAll(filepath.Join(s.DataDir, "agent", "containers"))
		if t.Failed() {
			t.Logf("tugboat server output:\n%s", s.Output())
		}
	})

	announced := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			s.out.WriteString(line + "\n")
			if url, ok := strings.CutPrefix(line, readyBanner); ok {
				select {
				case announced <- strings.TrimSpace(url):
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
		s.err = s.cmd.Wait()
		close(s.exited)
	}()

	select {
	case s.URL = <-announced:
	case <-s.exited:
		t.Fatalf("testenv: tugboat server exited before it was ready (%v):\n%s", s.err, s.Output())
	case <-time.After(startTimeout):
		t.Fatalf("testenv: tugboat server not ready after %v:\n%s", startTimeout, s.Output())
	}
	s.RESTConfig, err = clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		t.Fatalf("testenv: kubeconfig %s: %v", s.Kubeconfig, err)
	}
	if s.RESTConfig.Host != s.URL {
		t.Fatalf("testenv: kubeconfig server %q, announced %q", s.RESTConfig.Host, s.URL)
	}
	s.checkReady(t)
	return s
}

// checkReady fails t unless GET /readyz answers 200 with the admin
// credentials.
func (s *Server) checkReady(t testing.TB) {
	t.Helper()
	client, err := rest.HTTPClientFor(s.RESTConfig)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer client.CloseIdleConnections()
	resp, err := client.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatalf("testenv: GET /readyz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("testenv: GET /readyz: %d %s", resp.StatusCode, body)
	}
}

// Signal sends sig to the server process.
func (s *Server) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("testenv: signal %v: %v", sig, err)
	}
}

// Kill ends the server with SIGKILL (like kill -9) if it is still running.
func (s *Server) Kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
}

// Wait waits for the process to exit and returns its exit error (nil for
// status 0). It fails t if the process does not exit within the start
// timeout.
func (s *Server) Wait(t testing.TB) error {
	t.Helper()
	select {
	case <-s.exited:
		return s.err
	case <-time.After(startTimeout):
		t.Fatalf("testenv: tugboat server did not exit within %v:\n%s", startTimeout, s.Output())
		return nil
	}
}

// Stop sends SIGTERM and waits for a clean exit, failing t otherwise.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.Signal(t, syscall.SIGTERM)
	if err := s.Wait(t); err != nil {
		t.Fatalf("testenv: tugboat server exit after SIGTERM: %v\n%s", err, s.Output())
	}
}

// Output returns what the server wrote to stdout and stderr so far.
func (s *Server) Output() string { return s.out.String() }

// lastFlag returns the value of the last --name or --name=value in args.
func lastFlag(args []string, name string) string {
	var v string
	for i, a := range args {
		if val, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			v = val
		} else if a == "--"+name && i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}

// lockedBuffer is a strings.Builder safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.WriteString(s)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
