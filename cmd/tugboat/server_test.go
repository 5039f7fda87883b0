package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/internal/testenv"
)

// get does a GET on the server with the admin credentials (admin=true) or
// with no credentials at all, trusting the server's CA.
func get(t testing.TB, s *testenv.Server, path string, admin bool) (int, string) {
	t.Helper()
	var client *http.Client
	if admin {
		var err error
		if client, err = rest.HTTPClientFor(s.RESTConfig); err != nil {
			t.Fatal(err)
		}
	} else {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(s.RESTConfig.CAData) {
			t.Fatal("no CA in the kubeconfig")
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	defer client.CloseIdleConnections()
	resp, err := client.Get(s.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestServerServesAndShutsDownOnSIGTERM(t *testing.T) {
	s := testenv.StartServer(t)

	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") || strings.HasSuffix(s.URL, ":0") {
		t.Errorf("announced URL %q, want https://127.0.0.1:<chosen port>", s.URL)
	}
	tests := []struct {
		path     string
		admin    bool
		wantCode int
		wantBody string
	}{
		{path: "/readyz", wantCode: http.StatusOK},
		{path: "/livez", wantCode: http.StatusOK},
		{path: "/metrics", wantCode: http.StatusUnauthorized, wantBody: `"reason":"Unauthorized"`},
		{path: "/metrics", admin: true, wantCode: http.StatusOK, wantBody: "go_goroutines"},
		{path: "/api", wantCode: http.StatusUnauthorized, wantBody: `"code":401`},
	}
	for _, tc := range tests {
		code, body := get(t, s, tc.path, tc.admin)
		if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
			t.Errorf("GET %s (admin %v): %d %.200q, want %d containing %q", tc.path, tc.admin, code, body, tc.wantCode, tc.wantBody)
		}
	}
	out := s.Output()
	for _, want := range []string{"msg=ready since_start=", "export KUBECONFIG=" + s.Kubeconfig, "bin/kubectl get ns"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	s.Stop(t) // SIGTERM; fails unless the exit status is 0
	out = s.Output()
	for _, want := range []string{`msg="shutting down"`, "msg=stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("output after SIGTERM lacks %q:\n%s", want, out)
		}
	}
}

// TestServerShutdownEndsWatches: SIGTERM ends open watches and the process
// exits with status 0. The shutdown timeout is far longer than testenv's
// 2-minute guard in Wait, so the test fails if shutdown waited for the watch
// instead of ending it.
func TestServerShutdownEndsWatches(t *testing.T) {
	s := testenv.StartServer(t, "--shutdown-timeout", "1h")
	client, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	w, err := client.CoreV1().Namespaces().Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// The initial ADDED events of the default namespaces show the watch is
	// established before the signal.
	if ev, ok := <-w.ResultChan(); !ok {
		t.Fatal("watch closed before the first event")
	} else if ev.Type != "ADDED" {
		t.Fatalf("first event %s, want ADDED", ev.Type)
	}
	drained := make(chan struct{})
	go func() {
		for range w.ResultChan() {
		}
		close(drained)
	}()
	s.Signal(t, syscall.SIGTERM)
	if err := s.Wait(t); err != nil {
		t.Fatalf("exit after SIGTERM with an open watch: %v\n%s", err, s.Output())
	}
	<-drained // the stream has ended; the client saw its channel close
	if !strings.Contains(s.Output(), "msg=stopped") {
		t.Errorf("no clean stop logged:\n%s", s.Output())
	}
}

func TestServerRestartReusesCertificates(t *testing.T) {
	first := testenv.StartServer(t)
	first.Signal(t, syscall.SIGINT)
	if err := first.Wait(t); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
	second := testenv.StartServer(t, "--data-dir", first.DataDir)
	if !bytes.Equal(first.RESTConfig.CAData, second.RESTConfig.CAData) ||
		!bytes.Equal(first.RESTConfig.CertData, second.RESTConfig.CertData) {
		t.Error("the restarted server wrote a kubeconfig with a different CA or admin certificate")
	}
	if code, body := get(t, second, "/metrics", true); code != http.StatusOK {
		t.Errorf("admin GET /metrics after restart: %d %.200q", code, body)
	}
}

func TestServerRejectsBadConfigAtStart(t *testing.T) {
	bin := testenv.Tugboat(t)
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{name: "bad flag value", args: []string{"--log-format", "xml"}, want: "log.format"},
		{name: "bad env value", env: []string{"TUGBOAT_SHUTDOWN_TIMEOUT=-5s"}, want: "shutdown-timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"server", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, tc.args...)...)
			cmd.Env = append(cmd.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q does not name %q", out, tc.want)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tugboat ", "go: go1.", "kubernetes api: v0."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output %q lacks %q", out.String(), want)
		}
	}
}
