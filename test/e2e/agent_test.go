package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tugboat-dev/tugboat/internal/testenv"
	"github.com/tugboat-dev/tugboat/kernel/agent"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/exec"
)

// agentNode is the local node's name in these tests.
const agentNode = "e2e-node"

// startWithAgent runs a server whose local agent (exec runtime) is the
// node agentNode. When the test ends its pods are deleted through the API
// (the agent stops their processes) before the server is killed, and any
// process still recorded is killed: no process is left behind.
func startWithAgent(t *testing.T, args ...string) (*testenv.Server, kubectl) {
	t.Helper()
	skipShort(t)
	s := testenv.StartServer(t, append([]string{"--node-name", agentNode}, args...)...)
	k := newKubectl(t, s)
	t.Cleanup(func() {
		k.try(t, "delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=true", "--timeout=60s")
		exec.KillAll(filepath.Join(s.DataDir, "agent", "containers"))
	})
	eventually(t, "node "+agentNode+" Ready", func() string {
		r := k.try(t, "get", "node", agentNode, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if r.code != 0 || r.stdout != "True" {
			return r.stdout + r.stderr
		}
		return ""
	})
	return s, k
}

// jsonpath reads one field of an object with kubectl.
func (k kubectl) jsonpath(t testing.TB, obj, path string) string {
	t.Helper()
	r := k.try(t, "get", obj, "-o", "jsonpath="+path)
	if r.code != 0 {
		return ""
	}
	return r.stdout
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestAgentRunsPods(t *testing.T) {
	_, k := startWithAgent(t)
	port := freePort(t)
	k.apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: %[1]s
  containers:
  - name: http
    image: python:3
    command: [python3, -m, http.server, "%[2]d", --bind, 127.0.0.1]
    ports: [{name: http, containerPort: %[2]d}]
    readinessProbe:
      httpGet: {host: 127.0.0.1, path: /, port: http}
      periodSeconds: 1
    livenessProbe:
      tcpSocket: {host: 127.0.0.1, port: http}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: counter}
spec:
  nodeName: %[1]s
  containers:
  - name: count
    image: busybox
    command: [sh, -c, 'i=0; while :; do echo "tick $i"; i=$((i+1)); sleep 0.2; done']
---
apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  nodeName: %[1]s
  restartPolicy: Never
  containers:
  - name: job
    image: busybox
    command: [sh, -c, 'echo done']
---
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  nodeName: %[1]s
  containers:
  - name: boom
    image: busybox
    command: [sh, -c, 'echo crashing; exit 1']
---
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  nodeName: %[1]s
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sleep, "3600"]
    livenessProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 1
`, agentNode, port))

	t.Run("http server goes ready", func(t *testing.T) {
		k.run(t, "wait", "--for=condition=Ready", "pod/web", "--timeout=60s")
		row := rowNamed(t, parseTable(t, k.run(t, "get", "pods", "-o", "wide")), "web")
		if row["READY"] != "1/1" || row["STATUS"] != "Running" || row["NODE"] != agentNode || row["RESTARTS"] != "0" {
			t.Errorf("get pods row %v, want 1/1 Running on %s without restarts", row, agentNode)
		}
		// kubectl exec runs a client next to the server, as the seed
		// curls a Service from inside a pod.
		out := k.run(t, "exec", "web", "--", "python3", "-c",
			"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:"+strconv.Itoa(port)+"/').status)")
		if strings.TrimSpace(out) != "200" {
			t.Errorf("exec HTTP client printed %q, want 200", out)
		}
		if r := k.try(t, "exec", "web", "--", "sh", "-c", "exit 7"); r.code != 7 {
			t.Errorf("exec exit code %d, want 7", r.code)
		}
		if out := k.run(t, "exec", "-i", "web", "--", "cat"); out != "" {
			t.Errorf("exec -i with empty stdin printed %q", out)
		}
	})

	t.Run("port-forward and metrics", func(t *testing.T) {
		local := freePort(t)
		pf := k.start(t, "port-forward", "pod/web", fmt.Sprintf("%d:%d", local, port))
		pf.next(t, "Forwarding", "from")
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", local))
		if err != nil {
			t.Fatalf("GET through port-forward: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET through port-forward: %s", resp.Status)
		}
		out := k.run(t, "get", "--raw", "/api/v1/nodes/"+agentNode+"/proxy/stats/summary")
		if !strings.Contains(out, `"name":"web"`) || !strings.Contains(out, "workingSetBytes") {
			t.Errorf("stats summary lacks pod web's memory: %s", out)
		}
	})

	t.Run("logs", func(t *testing.T) {
		follow := k.start(t, "logs", "-f", "counter")
		follow.next(t, "tick", "0")
		follow.next(t, "tick", "5") // printed after -f started: streamed
		if out := k.run(t, "logs", "counter", "--tail", "2"); len(strings.Split(strings.TrimSpace(out), "\n")) != 2 {
			t.Errorf("logs --tail 2 printed %q", out)
		}
		out := k.run(t, "logs", "counter", "--timestamps", "--tail", "1")
		if f := strings.Fields(out); len(f) != 3 || !strings.Contains(f[0], "T") || f[1] != "tick" {
			t.Errorf("logs --timestamps printed %q, want <time> tick <n>", out)
		}
		if r := k.try(t, "logs", "counter", "-c", "nope"); r.code == 0 {
			t.Errorf("logs -c nope succeeded")
		}
	})

	t.Run("pod runs to completion", func(t *testing.T) {
		eventually(t, "pod once Succeeded", func() string {
			if p := k.jsonpath(t, "pod/once", "{.status.phase}"); p != "Succeeded" {
				return "phase " + p
			}
			return ""
		})
		if out := k.run(t, "logs", "once"); out != "done\n" {
			t.Errorf("logs of a finished pod: %q", out)
		}
	})

	t.Run("crash loop", func(t *testing.T) {
		eventually(t, "pod crash in CrashLoopBackOff", func() string {
			if r := k.jsonpath(t, "pod/crash", "{.status.containerStatuses[0].state.waiting.reason}"); r != "CrashLoopBackOff" {
				return "waiting reason " + r
			}
			return ""
		})
		if out := k.run(t, "logs", "crash", "--previous"); !strings.Contains(out, "crashing") {
			t.Errorf("logs --previous printed %q", out)
		}
		if n, _ := strconv.Atoi(k.jsonpath(t, "pod/crash", "{.status.containerStatuses[0].restartCount}")); n < 1 {
			t.Errorf("restartCount %d, want >= 1", n)
		}
	})

	t.Run("liveness failure restarts", func(t *testing.T) {
		eventually(t, "pod unhealthy restarted", func() string {
			n, _ := strconv.Atoi(k.jsonpath(t, "pod/unhealthy", "{.status.containerStatuses[0].restartCount}"))
			if n < 1 {
				return "restartCount " + strconv.Itoa(n)
			}
			return ""
		})
	})

	t.Run("delete stops the process", func(t *testing.T) {
		k.run(t, "delete", "pod", "web", "--timeout=60s")
		eventually(t, "port closed", func() string {
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err == nil {
				c.Close()
				return "still listening"
			}
			return ""
		})
	})
}

func TestAgentJoin(t *testing.T) {
	s, k := startWithAgent(t)
	tok, err := os.ReadFile(filepath.Join(s.DataDir, "node-token"))
	if err != nil {
		t.Fatal(err)
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // only probes a route
	resp, err := insecure.Get(s.URL + agent.JoinCAPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Skipf("the server does not serve %s yet (%s): server.go must mount JoinHandler in front of authentication", agent.JoinCAPath, resp.Status)
	}
	dir := t.TempDir()
	cmd := osexec.Command(testenv.Tugboat(t), "agent", "--server", s.URL, "--token", strings.TrimSpace(string(tok)),
		"--node-name", "second", "--data-dir", dir, "--kubelet-port", "0")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.try(t, "delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s")
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		exec.KillAll(filepath.Join(dir, "containers"))
		if t.Failed() {
			t.Logf("tugboat agent output:\n%s", out.String())
		}
	})
	eventually(t, "node second Ready", func() string {
		if st := k.jsonpath(t, "node/second", `{.status.conditions[?(@.type=="Ready")].status}`); st != "True" {
			return "Ready=" + st
		}
		return ""
	})
	k.apply(t, `
apiVersion: v1
kind: Pod
metadata: {name: far}
spec:
  nodeName: second
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo hello from second; exec sleep 600']
`)
	k.run(t, "wait", "--for=condition=Ready", "pod/far", "--timeout=60s")
	eventually(t, "logs of the joined node's pod", func() string {
		if r := k.try(t, "logs", "far"); r.stdout != "hello from second\n" {
			return r.stdout + r.stderr
		}
		return ""
	})
	if out := k.run(t, "exec", "far", "--", "sh", "-c", "echo $HOSTNAME"); out != "far\n" {
		t.Errorf("exec on the joined node printed %q", out)
	}
}

// TestAgentJobCompletes runs a Job through the whole stack on the exec
// runtime: the job controller creates the pod, the scheduler binds it to
// the local node, the agent runs its command, which exits 0, and the Job
// becomes Complete; its output reaches kubectl logs.
func TestAgentJobCompletes(t *testing.T) {
	_, k := startWithAgent(t,
		"--controllers-plugins-dir", controllerPlugins(t, allControllers...),
		"--scheduler-plugins-dir", schedulerPlugins(t))
	k.run(t, "create", "job", "hello", "--image=busybox", "--", "sh", "-c", "echo job ran; exit 0")
	k.run(t, "wait", "--for=condition=complete", "job/hello", "--timeout=90s")
	if got := k.jsonpath(t, "job/hello", "{.status.succeeded}"); got != "1" {
		t.Errorf("job status.succeeded = %q, want 1", got)
	}
	pod := strings.TrimPrefix(k.run(t, "get", "pods", "-l", "job-name=hello", "-o", "name"), "pod/")
	pod = strings.TrimSpace(pod)
	if got := k.jsonpath(t, "pod/"+pod, "{.spec.nodeName}"); got != agentNode {
		t.Errorf("job pod ran on %q, want the local node %s", got, agentNode)
	}
	if got := k.jsonpath(t, "pod/"+pod, "{.status.containerStatuses[0].state.terminated.exitCode}"); got != "0" {
		t.Errorf("job pod exit code %q, want 0", got)
	}
	if out := k.run(t, "logs", "job/hello"); !strings.Contains(out, "job ran") {
		t.Errorf("kubectl logs job/hello = %q, want the command's output", out)
	}
}
