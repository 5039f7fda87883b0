package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/tugboat-dev/tugboat/kernel/network/nettest"
)

// linkToSwitch joins host namespace host to the bridge sw0 in namespace
// sw with a veth pair ("tbn0" inside host, carrying addr/24; port on the
// switch side), like a machine plugged into a switch that leads nowhere
// else.
func linkToSwitch(t testing.TB, sw, host, port string, addr netip.Addr) {
	t.Helper()
	hostNS, err := netns.GetFromPath(host)
	if err != nil {
		t.Fatal(err)
	}
	defer hostNS.Close()
	err = nettest.WithHandle(sw, func(h *netlink.Handle) error {
		br, err := h.LinkByName("sw0")
		if err != nil {
			return err
		}
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: br.Attrs().Index},
			PeerName: "tbn0", PeerNamespace: netlink.NsFd(hostNS)}); err != nil {
			return err
		}
		l, err := h.LinkByName(port)
		if err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
	if err != nil {
		t.Fatalf("switch port %s: %v", port, err)
	}
	err = nettest.WithHandle(host, func(h *netlink.Handle) error {
		l, err := h.LinkByName("tbn0")
		if err != nil {
			return err
		}
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
	if err != nil {
		t.Fatalf("address %s on %s: %v", addr, port, err)
	}
}

// newSwitch creates the namespace holding the switch (a bridge, sw0).
func newSwitch(t testing.TB) string {
	t.Helper()
	sw := nettest.NewHost(t, "switch")
	err := nettest.WithHandle(sw, func(h *netlink.Handle) error {
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "sw0"}}); err != nil {
			return err
		}
		l, err := h.LinkByName("sw0")
		if err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
	if err != nil {
		t.Fatalf("switch: %v", err)
	}
	return sw
}

// TestNetworkBridgeMultiNode runs one `tugboat server` (control plane
// only) and three `tugboat agent`s in bridge mode with the iptables proxy,
// each in its own namespace "host" plugged into a test-only switch
// (10.250.0.0/24, no route out). Pods on different nodes reach each other
// by IP (host-gw routes), through the Service's cluster IP and by its DNS
// name; when one agent stops, its pod's endpoint disappears after the
// (shortened) node grace period and traffic goes to the others only.
func TestNetworkBridgeMultiNode(t *testing.T) {
	skipShort(t)
	nettest.RequireRoot(t, "nsenter", "iptables", "iptables-restore", "busybox", "getent")
	sw := newSwitch(t)
	serverIP := netip.MustParseAddr("10.250.0.1")
	serverNS := nettest.NewHost(t, "server")
	linkToSwitch(t, sw, serverNS, "p0", serverIP)

	lifecycle := controllerPlugins(t, "node-lifecycle")
	config := filepath.Join(t.TempDir(), "tugboat.yaml")
	// The agents renew their Leases every 10s: a 20s grace period.
	if err := os.WriteFile(config, []byte(`controllers:
  plugins:
    - name: node-lifecycle
      path: `+filepath.Join(lifecycle, "node-lifecycle.wasm")+`
      settings: {"gracePeriod": "20s", "evictionTimeout": "1s"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startBridgeServer(t, serverNS, []string{"node-lifecycle"}, "--config", config, "--listen", serverIP.String()+":0", "--disable-agent",
		"--advertise-address", serverIP.String(), "--cluster-cidr", "10.245.0.0/16", "--node-cidr-mask-size", "24",
		"--service-cidr", "10.100.0.0/24")
	cs := s.cs
	ctx := context.Background()
	tok, err := os.ReadFile(filepath.Join(s.dataDir, "node-token"))
	if err != nil {
		t.Fatal(err)
	}

	type node struct {
		name, ns, dir string
		ip            netip.Addr
		proc          *nsProc
		args          []string
	}
	var nodes []*node
	for i := range 3 {
		n := &node{name: fmt.Sprintf("node-%d", i), ip: netip.AddrFrom4([4]byte{10, 250, 0, byte(11 + i)}), dir: filepath.Join(t.TempDir(), "agent")}
		n.ns = nettest.NewHost(t, n.name)
		linkToSwitch(t, sw, n.ns, fmt.Sprintf("p%d", i+1), n.ip)
		n.args = []string{"agent",
			"--server", s.rc.Host, "--token", strings.TrimSpace(string(tok)), "--node-name", n.name,
			"--data-dir", n.dir, "--kubelet-port", "0", "--network-mode", "bridge", "--proxy-mode", "iptables",
			"--advertise-address", n.ip.String(), "--cluster-cidr", "10.245.0.0/16", "--log-level", "debug"}
		n.proc, _ = startInNetNS(t, "tugboat agent "+n.name, n.ns, n.dir, "", n.args...)
		nodes = append(nodes, n)
	}
	eventually(t, "3 Ready nodes with pod CIDRs", func() string {
		for _, n := range nodes {
			no, err := cs.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			ready := false
			for _, c := range no.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			if !ready || no.Spec.PodCIDR == "" {
				return fmt.Sprintf("%s: ready %v podCIDR %q", n.name, ready, no.Spec.PodCIDR)
			}
		}
		return ""
	})

	// One web pod per node, and a Service over them.
	for _, n := range nodes {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-" + n.name, Labels: map[string]string{"app": "web"}},
			Spec: webPodSpec(n.name, "$HOSTNAME", nil)}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Type: corev1.ServiceTypeNodePort,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]corev1.Pod{} // by node
	eventually(t, "3 ready web pods, one per node, and their endpoints", func() string {
		ready := readyPods(t, cs, "web")
		if len(ready) != 3 {
			return fmt.Sprintf("%d ready", len(ready))
		}
		if eps := readyEndpoints(t, cs, "web"); fmt.Sprint(eps) != fmt.Sprint(podIPs(ready)) {
			return fmt.Sprintf("endpoints %v, pods %v", eps, podIPs(ready))
		}
		for _, p := range ready {
			pods[p.Spec.NodeName] = p
		}
		return ""
	})
	netnsOf := func(n *node) string { p := pods[n.name]; return podNetNS(n.dir, &p) }

	t.Run("pods on different nodes by IP", func(t *testing.T) {
		for i, from := range nodes {
			to := nodes[(i+1)%len(nodes)]
			url := "http://" + net.JoinHostPort(pods[to.name].Status.PodIP, "8080")
			var got string
			eventually(t, from.name+" -> "+to.name, func() string {
				var err error
				if got, err = nsGet(netnsOf(from), url); err != nil {
					return err.Error()
				}
				return ""
			})
			if got != "web-"+to.name {
				t.Errorf("%s -> %s answered %q", from.name, url, got)
			}
		}
	})

	clusterURL := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80")
	t.Run("cluster IP across nodes", func(t *testing.T) {
		var want []string
		for _, n := range nodes {
			want = append(want, "web-"+n.name)
		}
		converge(t, netnsOf(nodes[0]), clusterURL, want)
		got := hits(t, netnsOf(nodes[0]), clusterURL, 40)
		for _, n := range nodes {
			if got["web-"+n.name] == 0 {
				t.Errorf("answers through %s from %s: %v, want every node's pod", clusterURL, nodes[0].name, got)
			}
		}
	})

	t.Run("node port of one node reaches every node's pod", func(t *testing.T) {
		// From the server's namespace, a machine on the same switch that
		// is not a node: replies must come back through node-0
		// (masquerade), not straight from the other nodes' pods.
		var want []string
		for _, n := range nodes {
			want = append(want, "web-"+n.name)
		}
		url := "http://" + net.JoinHostPort(nodes[0].ip.String(), fmt.Sprint(svc.Spec.Ports[0].NodePort))
		converge(t, serverNS, url, want)
	})

	t.Run("DNS name from a pod", func(t *testing.T) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "resolver"}, Spec: corev1.PodSpec{NodeName: nodes[2].name,
			Containers: []corev1.Container{{Name: "getent", Image: "debian",
				Command: []string{"sh", "-c", "until getent ahostsv4 web.default.svc.cluster.local; do sleep 1; done; sleep 3600"}}}}}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
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

	t.Run("a stopped node's endpoint disappears", func(t *testing.T) {
		gone := nodes[2]
		gone.proc.cmd.Process.Signal(syscall.SIGKILL)
		goneIP := pods[gone.name].Status.PodIP
		eventually(t, "the endpoint of "+gone.name+"'s pod removed", func() string {
			eps := readyEndpoints(t, cs, "web")
			for _, ep := range eps {
				if ep == goneIP {
					return fmt.Sprintf("endpoints %v still hold %s", eps, goneIP)
				}
			}
			if len(eps) != 2 {
				return fmt.Sprintf("endpoints %v", eps)
			}
			return ""
		})
		converge(t, netnsOf(nodes[0]), clusterURL, []string{"web-" + nodes[0].name, "web-" + nodes[1].name})
	})

	t.Run("a restarted agent keeps addresses and cleans up", func(t *testing.T) {
		// node-1's agent restarts before its grace period: its pod keeps
		// running with the same address.
		kept := nodes[1]
		kept.proc.stop()
		kept.proc, _ = startInNetNS(t, "tugboat agent "+kept.name+" (restarted)", kept.ns, kept.dir, "", kept.args...)
		eventually(t, "the restarted agent ready", func() string {
			if !strings.Contains(kept.proc.output(), "node agent ready") {
				return "no \"node agent ready\" yet"
			}
			return ""
		})
		pod := pods[kept.name]
		if b, err := os.ReadFile(filepath.Join(kept.dir, "network", "ipam", pod.Status.PodIP)); err != nil || strings.TrimSpace(string(b)) != string(pod.UID) {
			t.Errorf("address record %s after the restart: %q %v, want the pod's UID %s", pod.Status.PodIP, b, err, pod.UID)
		}
		eventually(t, kept.name+"'s pod reached after the restart", func() string {
			got, err := nsGet(netnsOf(nodes[0]), "http://"+net.JoinHostPort(pod.Status.PodIP, "8080"))
			if err != nil || got != pod.Name {
				return fmt.Sprintf("%q %v", got, err)
			}
			p, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil || p.UID != pod.UID || p.Status.PodIP != pod.Status.PodIP {
				return fmt.Sprintf("pod %v (uid %s, want %s) %v", p.Status.PodIP, p.UID, pod.UID, err)
			}
			return ""
		})
		// node-2's pods are deleted while its agent is down: the restarted
		// agent removes their namespaces and addresses.
		gone := nodes[2]
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + gone.name})
		if err != nil {
			t.Fatal(err)
		}
		var uids []string
		zero := int64(0)
		for _, p := range l.Items {
			uids = append(uids, string(p.UID))
			if err := cs.CoreV1().Pods("default").Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
				t.Fatal(err)
			}
		}
		if len(uids) == 0 {
			t.Fatalf("no pods left on %s to delete", gone.name)
		}
		for _, uid := range uids {
			if _, err := os.Stat(filepath.Join(gone.dir, "network", "netns", uid)); err != nil {
				t.Fatalf("pod %s's namespace before the restart: %v", uid, err)
			}
		}
		gone.proc, _ = startInNetNS(t, "tugboat agent "+gone.name+" (restarted)", gone.ns, gone.dir, "", gone.args...)
		eventually(t, "the deleted pods' namespaces and addresses removed", func() string {
			for _, uid := range uids {
				if _, err := os.Stat(filepath.Join(gone.dir, "network", "netns", uid)); err == nil {
					return "namespace of " + uid + " still pinned"
				}
			}
			ipam, _ := os.ReadDir(filepath.Join(gone.dir, "network", "ipam"))
			for _, e := range ipam {
				b, _ := os.ReadFile(filepath.Join(gone.dir, "network", "ipam", e.Name()))
				if slices.Contains(uids, strings.TrimSpace(string(b))) {
					return "address " + e.Name() + " still held by " + string(b)
				}
			}
			return ""
		})
	})
}
