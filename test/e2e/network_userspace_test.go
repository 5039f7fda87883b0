package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tugboat-dev/tugboat/internal/testenv"
)

// nobody is the unprivileged user a root test runs the server as.
const nobody = 65534

// userControllers are the server arguments running only the endpoints
// controller, from a copy in dir that an unprivileged server can read.
func userControllers(t testing.TB, dir string) []string {
	t.Helper()
	wasm, err := os.ReadFile(filepath.Join(controllerPlugins(t, "endpoints"), "endpoints.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plugins, "endpoints.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	var off []string
	for _, c := range allControllers {
		if c != "endpoints" {
			off = append(off, c)
		}
	}
	return []string{"--controllers-plugins-dir", plugins, "--controllers-disabled", strings.Join(off, ",")}
}

// TestNetworkUserspaceServiceEnv runs the server without root (as nobody
// when the test runs as root) in the embedded defaults: host network and
// the userspace Service proxy. A pod gets <SVC>_SERVICE_HOST/_PORT
// variables naming the node's userspace proxy port for the Service (a
// cluster IP is not reachable without iptables) and reaches the Service's
// backend pod through them. Everything stays on 127.0.0.1.
func TestNetworkUserspaceServiceEnv(t *testing.T) {
	skipShort(t)
	bin := testenv.Tugboat(t)
	dir, err := os.MkdirTemp("", "tugboat-userspace-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cmd := exec.Command(bin)
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Env = append(os.Environ(), "HOME="+dir)
	}
	dataDir := filepath.Join(dir, "data")
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	nodePort, backendPort := freePort(t), freePort(t)
	const node = "userspace-node"
	cmd.Args = append([]string{bin, "server", "--listen", "127.0.0.1:0", "--data-dir", dataDir,
		"--write-kubeconfig", kubeconfig, "--log-level", "debug", "--node-name", node,
		"--wasm-cache-dir", filepath.Join(dir, "wasm-cache"), "--scheduler-enabled=false",
		"--advertise-address", "127.0.0.1", "--proxy-mode", "userspace", "--proxy-nodeport-address", "127.0.0.1",
		"--service-node-port-range", strconv.Itoa(nodePort)}, userControllers(t, dir)...)
	startProc(t, "tugboat server", cmd, dataDir, "Tugboat is serving the Kubernetes API at ")
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	backend := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "echo", Labels: map[string]string{"app": "echo"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "httpd", Image: "busybox",
			Command: []string{"sh", "-c", fmt.Sprintf(`mkdir -p www && echo "hello from $HOSTNAME" > www/index.html && exec busybox httpd -f -p 127.0.0.1:%d -h www`, backendPort)},
			Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: int32(backendPort)}},
			ReadinessProbe: &corev1.Probe{PeriodSeconds: 1,
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}}},
		}}}}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, backend, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The node port answering means the proxy serves the Service.
	eventually(t, "the node port answering", func() string {
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(nodePort)))
		if err != nil {
			return err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "hello from echo") {
			return string(b)
		}
		return ""
	})

	client := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client"},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox",
			Command: []string{"sh", "-c", `echo "env $ECHO_SERVICE_HOST:$ECHO_SERVICE_PORT named=$ECHO_SERVICE_PORT_HTTP link=$ECHO_PORT";` +
				// Dial only loopback: a cluster IP would be routed off the machine.
				` case "$ECHO_SERVICE_HOST" in 127.0.0.1) until busybox wget -q -O - "http://$ECHO_SERVICE_HOST:$ECHO_SERVICE_PORT/"; do sleep 1; done;; esac; exec sleep 3600`},
		}}}}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var logs string
	eventually(t, "the client pod reaching the Service through its variables", func() string {
		out, err := cs.CoreV1().Pods("default").GetLogs("client", &corev1.PodLogOptions{}).DoRaw(ctx)
		logs = string(out)
		if err != nil || !strings.Contains(logs, "hello from echo") {
			return fmt.Sprintf("%q %v", out, err)
		}
		return ""
	})
	m := regexp.MustCompile(`env (\S*):(\S*) named=(\S*) link=(\S*)`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("client printed %q", logs)
	}
	host, port, named, link := m[1], m[2], m[3], m[4]
	if host != "127.0.0.1" || port == "80" || port == "" || named != port || link != "tcp://127.0.0.1:"+port {
		t.Errorf("ECHO_SERVICE_HOST:PORT %s:%s (ECHO_SERVICE_PORT_HTTP %s, ECHO_PORT %s), want the userspace proxy's 127.0.0.1 port, not the cluster IP %s:80",
			host, port, named, link, svc.Spec.ClusterIP)
	}
}
