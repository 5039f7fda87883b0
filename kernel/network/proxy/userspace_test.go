package proxy_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tugboat-dev/tugboat/kernel/network/nettest"
	"github.com/tugboat-dev/tugboat/kernel/network/proxy"
)

// The userspace tests use loopback only: backends and the proxy listen on
// 127.0.0.1, and nothing else is dialled.

var loopback = netip.MustParseAddr("127.0.0.1")

// loopSlice is an EndpointSlice of service svc with one endpoint at
// 127.0.0.1:port (one slice per backend, since they share the address).
func loopSlice(svc, portName string, port uint16, ready bool, proto corev1.Protocol) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: svc + "-" + strconv.Itoa(int(port)), Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(int32(port)), Protocol: ptr.To(proto)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
	}
}

func loopService(affinity bool, nodePort int32, proto corev1.Protocol) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10",
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: proto, NodePort: nodePort}}}}
	if affinity {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	}
	return svc
}

// freePort finds a port free on 127.0.0.1 (for the node port).
func freePort(t testing.TB) int32 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

func TestUserspaceProxy(t *testing.T) {
	if os.Getenv("TUGBOAT_TEST_NONROOT") != "" && os.Geteuid() == 0 {
		t.Fatal("the non-root run runs as root")
	}
	a := nettest.Serve(t, "", netip.AddrPortFrom(loopback, 0), "a")
	b := nettest.Serve(t, "", netip.AddrPortFrom(loopback, 0), "b")
	nodePort := freePort(t)
	u := proxy.NewUserspace(proxy.UserspaceConfig{NodeIP: loopback, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { u.Close() })
	sync := func(t testing.TB, affinity bool, ready map[netip.AddrPort]bool) netip.AddrPort {
		t.Helper()
		var slices []*discoveryv1.EndpointSlice
		for ep, r := range ready {
			slices = append(slices, loopSlice("web", "http", ep.Port(), r, corev1.ProtocolTCP))
		}
		if err := u.Sync(context.Background(), []*corev1.Service{loopService(affinity, nodePort, corev1.ProtocolTCP)}, slices); err != nil {
			t.Fatalf("sync: %v", err)
		}
		addr, ok := u.Addr("default", "web", "http")
		if !ok || addr.Addr() != loopback || addr.Port() == 0 {
			t.Fatalf("cluster address %v, %v; want 127.0.0.1 and a port", addr, ok)
		}
		return addr
	}
	tests := []struct {
		name     string
		affinity bool
		ready    map[netip.AddrPort]bool
		nodePort bool
		want     []string // nil with affinity: all answers from one backend
	}{
		{"round robin", false, map[netip.AddrPort]bool{a: true, b: true}, false, []string{"a", "b"}},
		{"only ready endpoints", false, map[netip.AddrPort]bool{a: false, b: true}, false, []string{"b"}},
		{"session affinity", true, map[netip.AddrPort]bool{a: true, b: true}, false, nil},
		{"node port", false, map[netip.AddrPort]bool{a: true, b: true}, true, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := sync(t, tt.affinity, tt.ready)
			if tt.nodePort {
				to = netip.AddrPortFrom(loopback, uint16(nodePort))
			}
			got := hits(t, "", to, 20)
			if tt.want == nil {
				if len(got) != 1 {
					t.Fatalf("answers %v, want all from one backend", got)
				}
				return
			}
			for _, w := range tt.want {
				if got[w] == 0 {
					t.Errorf("answers %v: none from %s", got, w)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("answers %v, want only from %v", got, tt.want)
			}
		})
	}
	t.Run("failed endpoint skipped", func(t *testing.T) {
		dead := netip.AddrPortFrom(loopback, uint16(freePort(t)))
		to := sync(t, false, map[netip.AddrPort]bool{dead: true, a: true})
		if got := hits(t, "", to, 10); got["a"] != 10 {
			t.Fatalf("answers %v, want all 10 from a", got)
		}
	})
	t.Run("no endpoints", func(t *testing.T) {
		to := sync(t, false, map[netip.AddrPort]bool{a: false})
		if line, err := nettest.Dial("", to); err == nil {
			t.Fatalf("got %q with no ready endpoint, want the connection closed", line)
		}
	})
	t.Run("service removed", func(t *testing.T) {
		to := sync(t, false, map[netip.AddrPort]bool{a: true})
		if err := u.Sync(context.Background(), nil, nil); err != nil {
			t.Fatalf("sync: %v", err)
		}
		if _, ok := u.Addr("default", "web", "http"); ok {
			t.Fatal("the removed service still has an address")
		}
		if c, err := net.DialTimeout("tcp4", to.String(), time.Second); err == nil {
			c.Close()
			t.Fatalf("the removed service's listener %s still accepts", to)
		}
	})
}

func TestUserspaceUDP(t *testing.T) {
	echo, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			echo.WriteToUDPAddrPort(append([]byte("echo "), buf[:n]...), from)
		}
	}()
	u := proxy.NewUserspace(proxy.UserspaceConfig{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { u.Close() })
	port := echo.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	if err := u.Sync(context.Background(), []*corev1.Service{loopService(false, 0, corev1.ProtocolUDP)},
		[]*discoveryv1.EndpointSlice{loopSlice("web", "http", port, true, corev1.ProtocolUDP)}); err != nil {
		t.Fatalf("sync: %v", err)
	}
	to, ok := u.Addr("default", "web", "http", corev1.ProtocolUDP)
	if !ok {
		t.Fatal("no UDP address")
	}
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	for _, msg := range []string{"one", "two"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "echo "+msg {
			t.Fatalf("reply %q, %v; want %q", buf[:n], err, "echo "+msg)
		}
	}
}

// TestUserspaceProxyNonRoot runs TestUserspaceProxy again as the nobody
// user (the userspace mode is for nodes without root).
func TestUserspaceProxyNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("already not root: TestUserspaceProxy covers it")
	}
	dir := t.TempDir()
	// t.TempDir's directories are private to root; nobody must reach the
	// binary.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "proxy.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^TestUserspace(Proxy|UDP)$", "-test.count", "1", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TUGBOAT_TEST_NONROOT=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("userspace tests as nobody: %v\n%s", err, out.String())
	}
	if got := out.String(); !strings.Contains(got, "--- PASS: TestUserspaceProxy ") || !strings.Contains(got, "--- PASS: TestUserspaceUDP ") {
		t.Fatalf("userspace tests as nobody did not pass:\n%s", got)
	}
}
