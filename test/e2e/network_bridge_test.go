package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tugboat-dev/tugboat/internal/testenv"
	execrt "github.com/tugboat-dev/tugboat/kernel/dataplane/exec"
	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
	"github.com/tugboat-dev/tugboat/kernel/network/nettest"
)

// The bridge-mode tests run every tugboat process inside network
// namespaces they create (each "host" is one, linked to the others only by
// veths carrying test-only 10.250.0.0/24 addresses); the test process
// stays in the machine's namespace and reaches the API server, the pods
// and the node ports from inside those namespaces. Nothing is routed out
// of the machine, and everything (processes, pod namespaces, links) is
// removed when the test ends, also after a failure.

// nsProc is a tugboat process running inside a test network namespace.
type nsProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    strings.Builder
	exited chan struct{}
}

func (p *nsProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *nsProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop kills the process and waits for it.
func (p *nsProc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// startInNetNS runs bin/tugboat args... inside namespace ns (nsenter),
// with its own data directory. When the test ends the process is killed,
// its pods' processes too, and the pod namespaces pinned under the data
// directory are removed; its output is logged if the test failed. ready,
// when set, is a line prefix the process prints once it is ready.
func startInNetNS(t *testing.T, name, ns, dataDir, ready string, args ...string) (*nsProc, string) {
	t.Helper()
	bin := testenv.Tugboat(t)
	return startProc(t, name, exec.Command("nsenter", append([]string{"--net=" + ns, "--", bin}, args...)...), dataDir, ready)
}

// startProc is startInNetNS for any command running tugboat.
func startProc(t *testing.T, name string, cmd *exec.Cmd, dataDir, ready string) (*nsProc, string) {
	t.Helper()
	p := &nsProc{cmd: cmd, exited: make(chan struct{})}
	p.cmd.Stderr = p
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.stop()
		execrt.KillAll(filepath.Join(dataDir, "containers"))
		execrt.KillAll(filepath.Join(dataDir, "agent", "containers"))
		for _, d := range []string{filepath.Join(dataDir, "network", "netns"), filepath.Join(dataDir, "agent", "network", "netns")} {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				if err := bridge.DeleteNetNS(filepath.Join(d, e.Name())); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
		if t.Failed() {
			t.Logf("%s (%v) output:\n%s", name, p.cmd.ProcessState, p.output())
		}
	})
	announced := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.Write([]byte(line + "\n"))
			if rest, ok := strings.CutPrefix(line, ready); ok && ready != "" {
				select {
				case announced <- strings.TrimSpace(rest):
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
		p.cmd.Wait()
		close(p.exited)
	}()
	if ready == "" {
		return p, ""
	}
	select {
	case s := <-announced:
		return p, s
	case <-p.exited:
		t.Fatalf("%s exited before it was ready:\n%s", name, p.output())
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s not ready after 2m:\n%s", name, p.output())
	}
	return p, ""
}

// nsDialer dials from inside namespace ns.
func nsDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := bridge.InNetNS(ns, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// nsGet GETs url from inside namespace ns (a new connection each time, so
// each request is a new flow for the Service rules) and returns the body.
func nsGet(ns, url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: nsDialer(ns), DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(b)), err
}

// bridgeServer is a `tugboat server` in bridge mode inside a namespace.
type bridgeServer struct {
	proc       *nsProc
	dataDir    string
	kubeconfig string
	cs         *kubernetes.Clientset
	rc         *rest.Config
}

// startBridgeServer runs a server in namespace host with the given
// arguments after the test defaults (which run the controllers
// networkControllers names, with extra), and a client-go clientset that
// reaches it from inside that namespace.
func startBridgeServer(t *testing.T, host string, extra []string, args ...string) *bridgeServer {
	t.Helper()
	tmp := t.TempDir()
	s := &bridgeServer{dataDir: filepath.Join(tmp, "data")}
	kubeconfig := filepath.Join(tmp, "admin.kubeconfig")
	s.kubeconfig = kubeconfig
	full := append([]string{"server", "--listen", "127.0.0.1:0", "--data-dir", s.dataDir,
		"--write-kubeconfig", kubeconfig, "--log-level", "debug",
		"--wasm-cache-dir", filepath.Join(testenv.RepoRoot(t), "bin", "test-wasm-cache"),
	}, networkControllers(t, extra...)...)
	full = append(full, args...)
	s.proc, _ = startInNetNS(t, "tugboat server", host, s.dataDir, "Tugboat is serving the Kubernetes API at ", full...)
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Dial = nsDialer(host)
	s.rc = rc
	if s.cs, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	return s
}

// networkControllers are the server arguments running only the
// controllers the network tests need (Deployments and endpoints) and
// extra ones.
func networkControllers(t testing.TB, extra ...string) []string {
	need := append([]string{"deployment", "replicaset", "endpoints"}, extra...)
	var off []string
	for _, c := range allControllers {
		if !slices.Contains(need, c) {
			off = append(off, c)
		}
	}
	return []string{"--controllers-plugins-dir", controllerPlugins(t, need...), "--controllers-disabled", strings.Join(off, ",")}
}

// podNetNS is the pinned network namespace of a pod run by the agent
// whose data directory is agentDir.
func podNetNS(agentDir string, pod *corev1.Pod) string {
	return filepath.Join(agentDir, "network", "netns", string(pod.UID))
}

// webDeployment serves its pod's name over HTTP on port 8080 with
// busybox httpd, ready once it answers; pinned to node. Its Service (a
// NodePort) selects app=<name>, its pods also carry role=server.
func webDeployment(name, node string, replicas int32, affinity corev1.ServiceAffinity) (*appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"app": name, "role": "server"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       webPodSpec(node, "$HOSTNAME", nil),
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}, SessionAffinity: affinity, Type: corev1.ServiceTypeNodePort,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	return d, svc
}

// webPodSpec runs busybox httpd answering reply (shell-expanded) on port
// 8080; readiness is an HTTP probe unless ready overrides it.
func webPodSpec(node, reply string, ready *corev1.Probe) corev1.PodSpec {
	if ready == nil {
		ready = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}},
			PeriodSeconds: 1}
	}
	grace := int64(1)
	return corev1.PodSpec{
		NodeName:                      node,
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{
			Name: "httpd", Image: "busybox",
			Command:        []string{"sh", "-c", `mkdir -p www && echo "` + reply + `" > www/index.html && exec busybox httpd -f -p 8080 -h www`},
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: ready,
		}},
	}
}

// readyPods lists the Ready pods labelled app=name.
func readyPods(t testing.TB, cs kubernetes.Interface, name string) []corev1.Pod {
	t.Helper()
	l, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				out = append(out, p)
			}
		}
	}
	return out
}

// readyEndpoints lists the ready endpoint addresses of Service name.
func readyEndpoints(t testing.TB, cs kubernetes.Interface, name string) []string {
	t.Helper()
	l, err := cs.DiscoveryV1().EndpointSlices("default").List(context.Background(), metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				out = append(out, e.Addresses...)
			}
		}
	}
	slices.Sort(out)
	return out
}

// podIPs are the sorted IPs of pods.
func podIPs(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Status.PodIP)
	}
	slices.Sort(out)
	return out
}

// converge waits until url, asked from namespace ns, answers with each
// body of want and nothing else (the proxy applies endpoint changes
// asynchronously after the EndpointSlices show them).
func converge(t testing.TB, ns, url string, want []string) {
	t.Helper()
	eventually(t, url+" answering from "+fmt.Sprint(want), func() string {
		got := map[string]int{}
		for range 10 * len(want) {
			body, err := nsGet(ns, url)
			if err != nil {
				return err.Error()
			}
			got[body]++
		}
		for _, w := range want {
			if got[w] == 0 {
				return fmt.Sprintf("answers %v", got)
			}
		}
		if len(got) != len(want) {
			return fmt.Sprintf("answers %v", got)
		}
		return ""
	})
}

// hits GETs url n times from namespace ns and counts the answers.
func hits(t testing.TB, ns, url string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		body, err := nsGet(ns, url)
		if err != nil {
			t.Fatalf("GET %s from %s: %v", url, filepath.Base(ns), err)
		}
		got[body]++
	}
	return got
}

// TestNetworkBridgeSingleNode runs `tugboat server --network-mode bridge
// --proxy-mode iptables` in a namespace standing for the machine, linked
// by a veth to a second namespace standing for a client outside it. Pods
// get their own addresses from the node's pod CIDR and reach each other
// by IP; kubectl port-forward and exec reach into the pod's namespace;
// the ClusterIP reaches ready pods only and follows the Deployment when it
// scales; ClientIP session affinity holds; the node port answers the
// outside client and the node itself; a pod resolves the Service's DNS
// name with the resolv.conf the agent gave it; and a finished pod gives
// its address back.
func TestNetworkBridgeSingleNode(t *testing.T) {
	skipShort(t)
	nettest.RequireRoot(t, "nsenter", "iptables", "iptables-restore", "busybox", "getent")
	host := nettest.NewHost(t, "node")
	client := nettest.NewHost(t, "client")
	nodeIP, clientIP := netip.MustParseAddr("10.250.0.1"), netip.MustParseAddr("10.250.0.2")
	nettest.LinkHosts(t, host, client, "tbe0", nodeIP, clientIP)
	const node = "bridge-node"
	s := startBridgeServer(t, host, nil, "--node-name", node, "--network-mode", "bridge", "--proxy-mode", "iptables",
		"--advertise-address", nodeIP.String(), "--cluster-cidr", "10.245.0.0/16", "--node-cidr-mask-size", "24",
		"--service-cidr", "10.100.0.0/24", "--service-node-port-range", "31000-31009")
	cs := s.cs
	ctx := context.Background()
	agentDir := filepath.Join(s.dataDir, "agent")

	d, svc := webDeployment("web", node, 2, corev1.ServiceAffinityNone)
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A pod the Service selects (not the Deployment) that never becomes
	// ready.
	unready := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-unready", Labels: map[string]string{"app": "web"}},
		Spec: webPodSpec(node, "unready", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, PeriodSeconds: 1})}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, unready, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	eventually(t, "2 ready web pods with pod-network addresses, and their endpoints", func() string {
		pods = readyPods(t, cs, "web")
		if len(pods) != 2 {
			return fmt.Sprintf("%d ready pods", len(pods))
		}
		if eps := readyEndpoints(t, cs, "web"); !slices.Equal(eps, podIPs(pods)) {
			return fmt.Sprintf("endpoints %v, pods %v", eps, podIPs(pods))
		}
		return ""
	})
	cidr := netip.MustParsePrefix("10.245.0.0/16")
	for _, p := range pods {
		if ip, err := netip.ParseAddr(p.Status.PodIP); err != nil || !cidr.Contains(ip) || p.Status.HostIP != nodeIP.String() {
			t.Fatalf("pod %s: podIP %q hostIP %q, want an address of %s on host %s", p.Name, p.Status.PodIP, p.Status.HostIP, cidr, nodeIP)
		}
	}
	a, b := pods[0], pods[1]
	nsA := podNetNS(agentDir, &a)

	t.Run("pod to pod by IP", func(t *testing.T) {
		for _, tc := range []struct{ from, to corev1.Pod }{{a, b}, {b, a}} {
			got, err := nsGet(podNetNS(agentDir, &tc.from), "http://"+net.JoinHostPort(tc.to.Status.PodIP, "8080"))
			if err != nil || got != tc.to.Name {
				t.Errorf("%s -> %s: %q %v, want %q", tc.from.Name, tc.to.Name, got, err, tc.to.Name)
			}
		}
	})

	t.Run("port-forward reaches the pod's localhost", func(t *testing.T) {
		kc := exec.Command("nsenter", "--net="+host, "--", testenv.Kubectl(t), "--kubeconfig", s.kubeconfig,
			"port-forward", "pod/"+a.Name, ":8080")
		out, err := kc.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := kc.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			kc.Process.Kill()
			kc.Wait()
		})
		sc := bufio.NewScanner(out)
		var local string
		for local == "" && sc.Scan() {
			if m := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+)`).FindStringSubmatch(sc.Text()); m != nil {
				local = m[1]
			}
		}
		go io.Copy(io.Discard, out)
		if local == "" {
			t.Fatalf("kubectl port-forward printed no local address")
		}
		if got, err := nsGet(host, "http://"+local); err != nil || got != a.Name {
			t.Errorf("through port-forward: %q %v, want %q", got, err, a.Name)
		}
	})

	t.Run("kubectl exec runs in the pod's network with its resolv.conf", func(t *testing.T) {
		out, err := exec.Command("nsenter", "--net="+host, "--", testenv.Kubectl(t), "--kubeconfig", s.kubeconfig,
			"exec", a.Name, "--", "sh", "-c", "busybox ip -4 addr show eth0; cat /etc/resolv.conf").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl exec: %v\n%s", err, out)
		}
		for _, want := range []string{"inet " + a.Status.PodIP + "/24", "nameserver 10.245.0.1\n", "search default.svc.cluster.local "} {
			if !strings.Contains(string(out), want) {
				t.Errorf("kubectl exec printed %q, want %q in it", out, want)
			}
		}
	})

	clusterURL := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80")
	t.Run("cluster IP reaches ready pods only", func(t *testing.T) {
		converge(t, nsA, clusterURL, []string{a.Name, b.Name})
		got := hits(t, nsA, clusterURL, 30)
		if got[a.Name] == 0 || got[b.Name] == 0 || len(got) != 2 {
			t.Errorf("answers through %s: %v, want both ready pods (%s, %s) and nothing else", clusterURL, got, a.Name, b.Name)
		}
	})

	nodePortURL := "http://" + net.JoinHostPort(nodeIP.String(), fmt.Sprint(svc.Spec.Ports[0].NodePort))
	for _, from := range []struct{ name, ns string }{{"outside the node", client}, {"the node itself", host}} {
		t.Run("node port from "+from.name, func(t *testing.T) {
			converge(t, from.ns, nodePortURL, []string{a.Name, b.Name})
			got := hits(t, from.ns, nodePortURL, 10)
			for body := range got {
				if body != a.Name && body != b.Name {
					t.Errorf("node port %s answered %q, want a ready web pod", nodePortURL, body)
				}
			}
		})
	}

	var resolver *corev1.Pod
	t.Run("DNS name from a pod", func(t *testing.T) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "resolver"}, Spec: corev1.PodSpec{NodeName: node,
			Containers: []corev1.Container{{Name: "getent", Image: "debian",
				Command: []string{"sh", "-c", "until getent ahostsv4 web; do sleep 1; done; sleep 3600"}}}}}
		var err error
		if resolver, err = cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the resolver pod logs web's cluster IP", func() string {
			out, err := cs.CoreV1().Pods("default").GetLogs("resolver", &corev1.PodLogOptions{}).DoRaw(ctx)
			if err != nil || !strings.Contains(string(out), svc.Spec.ClusterIP) {
				return fmt.Sprintf("%q %v", out, err)
			}
			return ""
		})
	})

	t.Run("a finished pod releases its address", func(t *testing.T) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "once"}, Spec: corev1.PodSpec{NodeName: node,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "sleep 1"}}}}}
		p, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ip string
		eventually(t, "pod once Succeeded with its pod IP, and its namespace and address released", func() string {
			got, err := cs.CoreV1().Pods("default").Get(ctx, "once", metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			ip = got.Status.PodIP
			if got.Status.Phase != corev1.PodSucceeded || ip == "" {
				return fmt.Sprintf("phase %s podIP %q", got.Status.Phase, ip)
			}
			if _, err := os.Stat(podNetNS(agentDir, p)); err == nil {
				return "namespace still pinned"
			}
			if _, err := os.Stat(filepath.Join(agentDir, "network", "ipam", ip)); err == nil {
				return "address " + ip + " still held"
			}
			return ""
		})
		if a, err := netip.ParseAddr(ip); err != nil || !cidr.Contains(a) {
			t.Errorf("finished pod's podIP %q, want its address of %s", ip, cidr)
		}
	})

	t.Run("scaling moves the rules", func(t *testing.T) {
		for _, n := range []int32{3, 1} {
			scale, err := cs.AppsV1().Deployments("default").GetScale(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			scale.Spec.Replicas = n
			if _, err := cs.AppsV1().Deployments("default").UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			var want []string
			eventually(t, fmt.Sprintf("%d ready endpoints", n), func() string {
				ready := readyPods(t, cs, "web")
				want = nil
				for _, p := range ready {
					want = append(want, p.Name)
				}
				if eps := readyEndpoints(t, cs, "web"); len(ready) != int(n) || !slices.Equal(eps, podIPs(ready)) {
					return fmt.Sprintf("pods %v endpoints %v", podIPs(ready), eps)
				}
				return ""
			})
			// Rules follow endpoints asynchronously (a request may meet a
			// stopping pod meanwhile): wait until exactly the current pods
			// answer, then check that they keep doing so.
			converge(t, client, nodePortURL, want)
			got := hits(t, client, nodePortURL, 15*int(n))
			if len(got) != int(n) {
				t.Errorf("scaled to %d: answers %v, want each of %v", n, got, want)
			}
		}
	})

	t.Run("session affinity ClientIP", func(t *testing.T) {
		d, svc := webDeployment("sticky", node, 2, corev1.ServiceAffinityClientIP)
		if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		svc, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "2 ready sticky endpoints", func() string {
			if eps := readyEndpoints(t, cs, "sticky"); len(eps) != 2 {
				return fmt.Sprint(eps)
			}
			return ""
		})
		if resolver == nil {
			t.Fatal("no resolver pod to send from")
		}
		// Each client keeps its backend: a pod through the cluster IP, the
		// outside client through the node port.
		for _, c := range []struct{ from, url string }{
			{podNetNS(agentDir, resolver), "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80")},
			{client, "http://" + net.JoinHostPort(nodeIP.String(), fmt.Sprint(svc.Spec.Ports[0].NodePort))},
		} {
			eventually(t, c.url+" answering", func() string {
				if _, err := nsGet(c.from, c.url); err != nil {
					return err.Error()
				}
				return ""
			})
			if got := hits(t, c.from, c.url, 20); len(got) != 1 {
				t.Errorf("ClientIP affinity through %s: answers %v, want one backend", c.url, got)
			}
		}
	})
}
