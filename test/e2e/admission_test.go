package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/tugboat-dev/tugboat/internal/testenv"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

// admissionConfig is a server config loading the three built-in admission
// plugins from freshly built .wasm files.
func admissionConfig(t *testing.T, requireLabels string) string {
	t.Helper()
	root := testenv.RepoRoot(t)
	wasm := func(name string) string {
		return plugintest.BuildWasm(t, filepath.Join(root, "plugins", "admission", name))
	}
	cfg := `admission:
  plugins:
    - name: default-resources
      path: ` + wasm("default-resources") + `
      type: Mutating
      rules: [{resources: ["pods"], operations: ["CREATE"]}]
      settings: {requests: {cpu: "100m", memory: "64Mi"}, limits: {memory: "128Mi"}}
    - name: require-labels
      path: ` + wasm("require-labels") + `
      type: Validating
      rules: [{resources: ["deployments.apps"], operations: ["CREATE", "UPDATE"]}]
      settings: {labels: ` + requireLabels + `}
      failure-policy: Fail
    - name: deny-privileged
      path: ` + wasm("deny-privileged") + `
      type: Validating
      rules: [{resources: ["pods", "deployments.apps"], operations: ["CREATE", "UPDATE"]}]
      settings: {exemptNamespaces: ["kube-system"]}
`
	path := filepath.Join(t.TempDir(), "tugboat.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAdmissionPlugins loads the built-in Wasm admission plugins from the
// config file and drives them through kubectl.
func TestAdmissionPlugins(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: builds and runs tugboat, kubectl and the Wasm plugins")
	}
	s := testenv.StartServer(t, "--config", admissionConfig(t, `["team"]`))
	k := newKubectl(t, s)
	apply := func(manifest string) (string, error) {
		cmd := exec.Command(k.bin, "--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(manifest)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	deployment := func(labels string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, labels: {` + labels + `}}
spec:
  replicas: 1
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata: {labels: {app: httpbin}}
    spec: {containers: [{name: httpbin, image: kennethreitz/httpbin}]}
`
	}

	t.Run("require-labels denies a deployment without team", func(t *testing.T) {
		out, err := apply(deployment("app: httpbin"))
		if err == nil || !strings.Contains(out, `admission hook "require-labels" denied the request`) || !strings.Contains(out, "missing required label(s): team") {
			t.Fatalf("apply without team: err %v, output:\n%s", err, out)
		}
		if out, err := apply(deployment("app: httpbin, team: payments")); err != nil || !strings.Contains(out, "deployment.apps/httpbin created") {
			t.Fatalf("apply with team: err %v, output:\n%s", err, out)
		}
		// An update that drops the label is denied too, and changes nothing.
		if out, err := apply(deployment("app: httpbin")); err == nil || !strings.Contains(out, "missing required label(s): team") {
			t.Fatalf("re-apply without team: err %v, output:\n%s", err, out)
		}
		if got := k.run(t, "get", "deployment", "httpbin", "-o", "jsonpath={.metadata.labels.team}"); got != "payments" {
			t.Fatalf("team label after the denied update = %q, want payments", got)
		}
	})

	t.Run("deny-privileged denies privileged pods outside exempt namespaces", func(t *testing.T) {
		pod := func(ns string) string {
			return `apiVersion: v1
kind: Pod
metadata: {name: priv, namespace: ` + ns + `}
spec: {containers: [{name: c, image: busybox, securityContext: {privileged: true}}]}
`
		}
		out, err := apply(pod("default"))
		if err == nil || !strings.Contains(out, `admission hook "deny-privileged" denied the request`) || !strings.Contains(out, "privileged") {
			t.Fatalf("privileged pod in default: err %v, output:\n%s", err, out)
		}
		if out, err := apply(pod("kube-system")); err != nil || !strings.Contains(out, "pod/priv created") {
			t.Fatalf("privileged pod in exempt kube-system: err %v, output:\n%s", err, out)
		}
	})

	t.Run("default-resources fills in requests and limits", func(t *testing.T) {
		out, err := apply(`apiVersion: v1
kind: Pod
metadata: {name: plain}
spec: {containers: [{name: c, image: busybox}, {name: d, image: busybox, resources: {requests: {cpu: "2"}}}]}
`)
		if err != nil {
			t.Fatalf("plain pod: %v\n%s", err, out)
		}
		var pod corev1.Pod
		if err := json.Unmarshal([]byte(k.run(t, "get", "pod", "plain", "-o", "json")), &pod); err != nil {
			t.Fatal(err)
		}
		c, d := pod.Spec.Containers[0].Resources, pod.Spec.Containers[1].Resources
		if c.Requests.Cpu().String() != "100m" || c.Requests.Memory().String() != "64Mi" || c.Limits.Memory().String() != "128Mi" {
			t.Errorf("container c resources = %+v, want the configured defaults", c)
		}
		if d.Requests.Cpu().String() != "2" {
			t.Errorf("container d's own cpu request was changed: %+v", d)
		}
	})
}

// TestAdmissionBadSettings checks that a plugin refusing its settings stops
// the server at start with a message naming the plugin.
func TestAdmissionBadSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: builds and runs tugboat and the Wasm plugins")
	}
	cfg := admissionConfig(t, `[]`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Tugboat(t), "server", "--config", cfg,
		"--data-dir", t.TempDir(), "--listen", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("server started with an empty require-labels list:\n%s", out)
	}
	if !strings.Contains(string(out), `admission plugin "require-labels"`) {
		t.Fatalf("start error does not name the plugin:\n%s", out)
	}
}
