package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tugboat-dev/tugboat/kernel/agent"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/authn"
	execrt "github.com/tugboat-dev/tugboat/kernel/dataplane/exec"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/pki"
)

// joinServer serves the API over TLS with authentication, the join
// endpoints in front of it and the remote-node connector, as server.go
// wires them; it returns the URL, the server's data dir and an admin
// client.
func joinServer(t *testing.T) (string, Config, kubernetes.Interface) {
	t.Helper()
	dir := t.TempDir()
	certs, err := pki.Open(pki.Options{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := authn.New(authn.Config{})
	if err != nil {
		t.Fatal(err)
	}
	api, _ := apiservertest.Start(t, apiserver.Config{})
	connect, err := remoteConnector(certs)
	if err != nil {
		t.Fatal(err)
	}
	api.SetNodeConnector(connect)
	cfg := Config{DataDir: dir}
	join, err := JoinHandler(cfg, certs)
	if err != nil {
		t.Fatal(err)
	}
	authed := auth.Middleware(api.Handler())
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/tugboat/v1/join") {
			join.ServeHTTP(w, r)
			return
		}
		authed.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, TLSConfig: certs.ServerTLSConfig()}
	go srv.Serve(tls.NewListener(ln, srv.TLSConfig))
	t.Cleanup(func() { srv.Close() })
	url, err := pki.ServerURL(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(dir, "admin.kubeconfig")
	if err := certs.WriteAdminKubeconfig(kc, url); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return url, cfg, cs
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAgentJoinsAndServesLogs(t *testing.T) {
	url, cfg, admin := joinServer(t)
	ctx := context.Background()
	tokBytes, err := os.ReadFile(nodeTokenFile(cfg))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokBytes))

	t.Run("bad token", func(t *testing.T) {
		bad := token[:len(token)-4] + "0000"
		if _, err := agent.Join(ctx, url, bad, "x"); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("join with a wrong secret: %v, want 401", err)
		}
		wrongCA := "tb1." + strings.Repeat("0", 32) + token[strings.LastIndex(token, "."):]
		if _, err := agent.Join(ctx, url, wrongCA, "x"); !errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("join with another CA's hash: %v, want ErrConflict", err)
		}
		if _, err := agent.Join(ctx, url, "garbage", "x"); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("join with a malformed token: %v, want ErrInvalid", err)
		}
	})

	agentDir := t.TempDir()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- runAgent(runCtx, agentFlags{server: url, token: token, nodeName: "joined", dataDir: agentDir,
			runtime: "exec", logLevel: "warn", logFormat: "text"}, io.Discard)
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		execrt.KillAll(filepath.Join(agentDir, "containers"))
	})
	waitUntil(t, "node joined Ready", func() bool {
		n, err := admin.CoreV1().Nodes().Get(ctx, "joined", metav1.GetOptions{})
		return err == nil && len(n.Status.Conditions) > 0 && n.Status.DaemonEndpoints.KubeletEndpoint.Port != 0
	})

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "remote", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "joined", Containers: []corev1.Container{{
			Name: "c", Image: "busybox", Command: []string{"sh", "-c", "echo from-the-joined-node; exec sleep 60"}}}},
	}
	if _, err := admin.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var logs string
	waitUntil(t, "logs through the API server", func() bool {
		b, err := admin.CoreV1().Pods("default").GetLogs("remote", &corev1.PodLogOptions{}).DoRaw(ctx)
		logs = string(b)
		return err == nil && strings.Contains(logs, "from-the-joined-node")
	})

	// The node's credentials are its own: node authorization applies.
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(agentDir, "node.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	nodeCS, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "other"}}
	if _, err := nodeCS.CoreV1().Nodes().Create(ctx, other, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("joined node creating another node: %v, want Forbidden", err)
	}
	if err := admin.CoreV1().Pods("default").Delete(ctx, "remote", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "pod removed by the joined agent", func() bool {
		_, err := admin.CoreV1().Pods("default").Get(ctx, "remote", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}

func TestAgentOptionParsing(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func() error
		ok   bool
	}{
		{"taint with value", func() error { _, err := parseTaints([]string{"dedicated=gpu:NoSchedule"}); return err }, true},
		{"taint without value", func() error { _, err := parseTaints([]string{"spot:PreferNoSchedule"}); return err }, true},
		{"taint without effect", func() error { _, err := parseTaints([]string{"a=b"}); return err }, false},
		{"taint bad effect", func() error { _, err := parseTaints([]string{"a=b:Sometimes"}); return err }, false},
		{"label", func() error { _, err := parseLabels([]string{"disktype=ssd", "example.com/tier="}); return err }, true},
		{"label without =", func() error { _, err := parseLabels([]string{"disktype"}); return err }, false},
		{"label bad key", func() error { _, err := parseLabels([]string{"-x=1"}); return err }, false},
		{"capacity", func() error {
			_, err := parseResources([]string{"cpu=32", "memory=256Gi", "nvidia.com/gpu=8"})
			return err
		}, true},
		{"capacity bad quantity", func() error { _, err := parseResources([]string{"cpu=lots"}); return err }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.fn(); (err == nil) != tc.ok {
				t.Errorf("error %v, want ok=%v", err, tc.ok)
			}
		})
	}
	taints, _ := parseTaints([]string{"dedicated=gpu:NoSchedule"})
	if len(taints) != 1 || taints[0].Key != "dedicated" || taints[0].Value != "gpu" || taints[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("parsed taints %+v", taints)
	}
	for _, tc := range []struct {
		flags []string
		key   string
	}{
		{[]string{"--runtime", "docker"}, "runtime"},
		{[]string{"--containerd-pull-policy", "Sometimes"}, "containerd.pull-policy"},
		{[]string{"--node-name", "Not_DNS"}, "node-name"},
		{[]string{"--sim-nodes", "-1"}, "sim.nodes"},
		{[]string{"--sim-exit-after", "0s"}, "sim.exit-after"},
		{[]string{"--register-with-taints", "x"}, "register-with-taints"},
	} {
		t.Run(strings.Join(tc.flags, " "), func(t *testing.T) {
			clearEnv(t)
			_, err := loadConfig(parseFlags(t, tc.flags...))
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("loadConfig(%v) = %v, want an error naming %s", tc.flags, err, tc.key)
			}
		})
	}
}
