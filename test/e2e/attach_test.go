package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestAttach: kubectl attach -i to a running pod (exec runtime) sends the
// typed line to the container's stdin and shows what the container
// prints afterwards, on stdout and stderr; attach ends when the container
// exits.
func TestAttach(t *testing.T) {
	_, k := startWithAgent(t)
	k.apply(t, `apiVersion: v1
kind: Pod
metadata: {name: echo}
spec:
  restartPolicy: Never
  containers:
  - name: echo
    image: busybox
    stdin: true
    command: [sh, -c, 'echo before; read l; echo "got $l"; echo "err $l" >&2']
`)
	if r := k.try(t, "wait", "--for=condition=Ready", "pod/echo", "--timeout=60s"); r.code != 0 {
		t.Fatalf("pod never Ready: %s%s", r.stdout, r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, "--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir, "attach", "-i", "echo", "-c", "echo")
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader("hello\n")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl attach -i: %v after %v\nstdout:\n%s\nstderr:\n%s", err, time.Since(start), stdout.String(), stderr.String())
	}
	if got := stdout.String(); !strings.Contains(got, "got hello\n") || strings.Contains(got, "before") {
		t.Errorf("attach printed %q, want the reply to the input and not the output from before the attach", got)
	}
	if !strings.Contains(stderr.String(), "err hello") {
		t.Errorf("attach's stderr %q lacks the container's stderr", stderr.String())
	}
	if phase := k.jsonpath(t, "pod/echo", "{.status.phase}"); phase != "Succeeded" {
		t.Errorf("pod phase %q after the container read its input, want Succeeded", phase)
	}
}
