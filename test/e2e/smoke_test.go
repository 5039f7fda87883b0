// Package e2e drives real binaries end to end: `tugboat server` on
// 127.0.0.1 (internal/testenv) and the pinned upstream kubectl (bin/kubectl,
// built from tools/kubectl when missing).
package e2e

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tugboat-dev/tugboat/internal/testenv"
)

// kubectl runs bin/kubectl against s with a fresh discovery cache and
// returns its stdout, failing t on a non-zero exit.
type kubectl struct {
	bin, kubeconfig, cacheDir string
}

func newKubectl(t testing.TB, s *testenv.Server) kubectl {
	t.Helper()
	return kubectl{bin: testenv.Kubectl(t), kubeconfig: s.Kubeconfig, cacheDir: t.TempDir()}
}

func (k kubectl) run(t testing.TB, args ...string) string {
	t.Helper()
	full := append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir}, args...)
	cmd := exec.Command(k.bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: builds and runs tugboat and kubectl")
	}
	s := testenv.StartServer(t)
	k := newKubectl(t, s)

	out := k.run(t, "get", "ns")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "NAME STATUS AGE" {
		t.Errorf("kubectl get ns header: %q, want NAME STATUS AGE", out)
	}
	for _, ns := range []string{"default", "kube-system", "kube-node-lease"} {
		if !hasRow(lines, ns, "Active") {
			t.Errorf("kubectl get ns lacks an Active %s row:\n%s", ns, out)
		}
	}

	if out := k.run(t, "create", "namespace", "demo"); strings.TrimSpace(out) != "namespace/demo created" {
		t.Errorf("kubectl create namespace demo: %q", out)
	}
	var ns corev1.Namespace
	if err := json.Unmarshal([]byte(k.run(t, "get", "ns", "demo", "-o", "json")), &ns); err != nil {
		t.Fatalf("decode kubectl get ns demo -o json: %v", err)
	}
	if ns.Kind != "Namespace" || ns.APIVersion != "v1" || ns.Name != "demo" {
		t.Errorf("got %s %s %q, want v1 Namespace demo", ns.APIVersion, ns.Kind, ns.Name)
	}
	if ns.UID == "" || ns.ResourceVersion == "" || ns.CreationTimestamp.IsZero() {
		t.Errorf("demo lacks server-set metadata: uid %q resourceVersion %q creationTimestamp %v", ns.UID, ns.ResourceVersion, ns.CreationTimestamp)
	}
	if ns.Status.Phase != corev1.NamespaceActive {
		t.Errorf("demo phase %q, want Active", ns.Status.Phase)
	}
	if !hasRow(strings.Split(k.run(t, "get", "ns"), "\n"), "demo", "Active") {
		t.Error("kubectl get ns does not list demo after creating it")
	}
}

// hasRow reports whether a table line starts with the given columns.
func hasRow(lines []string, cols ...string) bool {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= len(cols) && slices.Equal(f[:len(cols)], cols) {
			return true
		}
	}
	return false
}
