package bridge_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
	"github.com/tugboat-dev/tugboat/kernel/network/nettest"
)

// Every test here runs in network namespaces it creates (nettest): each
// test "host" is a fresh namespace with no link out of the machine, and
// everything dialled is an address inside those namespaces.

// newNetwork sets up a node's bridge network in host, torn down (pods
// first) when the test ends.
func newNetwork(t testing.TB, host, cidr string, state string) *bridge.Network {
	t.Helper()
	if state == "" {
		state = t.TempDir()
	}
	n, err := bridge.New(bridge.Config{PodCIDR: netip.MustParsePrefix(cidr), StateDir: state,
		NetNSDir: filepath.Join(state, "netns"), HostNetNS: host, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("bridge.New: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

func setup(t testing.TB, n *bridge.Network, uid string) bridge.Attachment {
	t.Helper()
	att, err := n.Setup(uid)
	if err != nil {
		t.Fatalf("setup %s: %v", uid, err)
	}
	t.Cleanup(func() {
		if err := n.Teardown(uid); err != nil {
			t.Errorf("teardown %s: %v", uid, err)
		}
	})
	return att
}

func TestPodsReachEachOther(t *testing.T) {
	nettest.RequireRoot(t)
	host := nettest.NewHost(t, "host")
	n := newNetwork(t, host, "10.244.1.0/24", "")
	a := setup(t, n, "pod-a")
	b := setup(t, n, "pod-b")
	cidr := netip.MustParsePrefix("10.244.1.0/24")
	for _, att := range []bridge.Attachment{a, b} {
		if !cidr.Contains(att.IP) || att.IP == n.Gateway() || att.Gateway != netip.MustParseAddr("10.244.1.1") {
			t.Fatalf("attachment %+v: want an address of %s other than the gateway 10.244.1.1", att, cidr)
		}
	}
	if a.IP == b.IP {
		t.Fatalf("both pods got %s", a.IP)
	}
	tests := []struct {
		name     string
		from     string
		to       netip.AddrPort
		wantLine string
	}{
		{"a to b", a.NetNS, nettest.Serve(t, b.NetNS, netip.AddrPortFrom(b.IP, 0), "b"), "b"},
		{"b to a", b.NetNS, nettest.Serve(t, a.NetNS, netip.AddrPortFrom(a.IP, 0), "a"), "a"},
		{"host to a", host, nettest.Serve(t, a.NetNS, netip.AddrPortFrom(a.IP, 0), "a2"), "a2"},
		{"a to its own address", a.NetNS, nettest.Serve(t, a.NetNS, netip.AddrPortFrom(a.IP, 0), "self"), "self"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := nettest.Dial(tt.from, tt.to)
			if err != nil || got != tt.wantLine {
				t.Fatalf("dial %s: %q, %v; want %q", tt.to, got, err, tt.wantLine)
			}
		})
	}
}

func TestSetupIsIdempotentAndPersistent(t *testing.T) {
	nettest.RequireRoot(t)
	host := nettest.NewHost(t, "host")
	state := t.TempDir()
	n := newNetwork(t, host, "10.244.2.0/24", state)
	a := setup(t, n, "pod-a")
	b := setup(t, n, "pod-b")
	again, err := n.Setup("pod-a")
	if err != nil || again != a {
		t.Fatalf("second setup of pod-a: %+v, %v; want %+v", again, err, a)
	}
	// A restarted agent: a new Network over the same state.
	n.Close()
	n2 := newNetwork(t, host, "10.244.2.0/24", state)
	c := setup(t, n2, "pod-c")
	if c.IP == a.IP || c.IP == b.IP {
		t.Fatalf("pod-c got %s, already held by pod-a (%s) or pod-b (%s)", c.IP, a.IP, b.IP)
	}
	if again, err := n2.Setup("pod-b"); err != nil || again.IP != b.IP {
		t.Fatalf("setup of pod-b after the restart: %+v, %v; want %s", again, err, b.IP)
	}
	got, err := nettest.Dial(a.NetNS, nettest.Serve(t, c.NetNS, netip.AddrPortFrom(c.IP, 0), "c"))
	if err != nil || got != "c" {
		t.Fatalf("pod-a to pod-c after the restart: %q, %v", got, err)
	}
	// Teardown removes the namespace, the veth and the address record.
	if err := n2.Teardown("pod-b"); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if _, err := os.Stat(b.NetNS); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pod-b netns %s still there: %v", b.NetNS, err)
	}
	if _, err := os.Stat(filepath.Join(state, b.IP.String())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pod-b address record still there: %v", err)
	}
	err = nettest.WithHandle(host, func(h *netlink.Handle) error {
		_, err := h.LinkByName(b.HostVeth)
		return err
	})
	if !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Fatalf("pod-b veth %s after teardown: %v, want not found", b.HostVeth, err)
	}
	if err := n2.Teardown("pod-b"); err != nil {
		t.Fatalf("second teardown: %v", err)
	}
}

func TestPodCIDRExhausted(t *testing.T) {
	nettest.RequireRoot(t)
	host := nettest.NewHost(t, "host")
	// A /29 has 8 addresses: network, gateway, broadcast and 5 for pods.
	n := newNetwork(t, host, "10.244.3.0/29", "")
	seen := map[netip.Addr]bool{}
	for i := range 5 {
		att := setup(t, n, fmt.Sprintf("pod-%d", i))
		if seen[att.IP] {
			t.Fatalf("%s given twice", att.IP)
		}
		seen[att.IP] = true
	}
	if _, err := n.Setup("one-too-many"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("setup in a full CIDR: %v, want ErrUnavailable", err)
	}
}

// TestHostGWRoutes joins two node namespaces by a veth pair (their "node
// network") and checks that pods on different nodes reach each other
// through the host-gw routes, and that SyncRoutes removes stale routes.
func TestHostGWRoutes(t *testing.T) {
	nettest.RequireRoot(t)
	h1, h2 := nettest.NewHost(t, "node1"), nettest.NewHost(t, "node2")
	node1, node2 := netip.MustParseAddr("192.168.77.1"), netip.MustParseAddr("192.168.77.2")
	nettest.LinkHosts(t, h1, h2, "node0", node1, node2)
	n1 := newNetwork(t, h1, "10.244.1.0/24", "")
	n2 := newNetwork(t, h2, "10.244.2.0/24", "")
	p1 := setup(t, n1, "pod-1")
	p2 := setup(t, n2, "pod-2")
	if err := n1.SyncRoutes([]bridge.Peer{{PodCIDR: netip.MustParsePrefix("10.244.2.0/24"), NodeIP: node2},
		{PodCIDR: netip.MustParsePrefix("10.244.1.0/24"), NodeIP: node1}}); err != nil {
		t.Fatalf("routes on node1: %v", err)
	}
	if err := n2.SyncRoutes([]bridge.Peer{{PodCIDR: netip.MustParsePrefix("10.244.1.0/24"), NodeIP: node1}}); err != nil {
		t.Fatalf("routes on node2: %v", err)
	}
	tests := []struct {
		name string
		from string
		to   netip.AddrPort
		want string
	}{
		{"pod-1 to pod-2", p1.NetNS, nettest.Serve(t, p2.NetNS, netip.AddrPortFrom(p2.IP, 0), "pod-2"), "pod-2"},
		{"pod-2 to pod-1", p2.NetNS, nettest.Serve(t, p1.NetNS, netip.AddrPortFrom(p1.IP, 0), "pod-1"), "pod-1"},
		{"node2 to pod-1", h2, nettest.Serve(t, p1.NetNS, netip.AddrPortFrom(p1.IP, 0), "pod-1 again"), "pod-1 again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := nettest.Dial(tt.from, tt.to)
			if err != nil || got != tt.want {
				t.Fatalf("dial %s: %q, %v; want %q", tt.to, got, err, tt.want)
			}
		})
	}
	// node2 leaves: node1 drops its route, and only its own.
	if err := n1.SyncRoutes(nil); err != nil {
		t.Fatalf("sync routes to nothing: %v", err)
	}
	err := nettest.WithHandle(h1, func(h *netlink.Handle) error {
		routes, err := h.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var dsts []string
		for _, r := range routes {
			if r.Dst != nil {
				dsts = append(dsts, r.Dst.String())
			}
		}
		joined := strings.Join(dsts, " ")
		if strings.Contains(joined, "10.244.2.0/24") {
			return fmt.Errorf("route to 10.244.2.0/24 left: %s", joined)
		}
		if !strings.Contains(joined, "192.168.77.0/24") || !strings.Contains(joined, "10.244.1.0/24") {
			return fmt.Errorf("connected routes gone: %s", joined)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDestroy checks that Destroy removes the bridge and the host-gw
// routes, and nothing else.
func TestDestroy(t *testing.T) {
	nettest.RequireRoot(t)
	host := nettest.NewHost(t, "host")
	n := newNetwork(t, host, "10.244.4.0/24", "")
	// A peer reachable on the bridge's own subnet stands in for a node.
	peer := bridge.Peer{PodCIDR: netip.MustParsePrefix("10.244.5.0/24"), NodeIP: netip.MustParseAddr("10.244.4.200")}
	if err := n.SyncRoutes([]bridge.Peer{peer}); err != nil {
		t.Fatalf("routes: %v", err)
	}
	if err := n.Destroy(); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	err := nettest.WithHandle(host, func(h *netlink.Handle) error {
		if _, err := h.LinkByName(bridge.DefaultBridge); !errors.As(err, new(netlink.LinkNotFoundError)) {
			return fmt.Errorf("bridge after destroy: %v, want not found", err)
		}
		if _, err := h.LinkByName("lo"); err != nil {
			return fmt.Errorf("lo after destroy: %v", err)
		}
		routes, err := h.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst != nil && r.Dst.String() == "10.244.5.0/24" {
				return fmt.Errorf("route to %s left", r.Dst)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPods checks that Pods lists exactly the pods holding an address or
// a namespace, so a restarted agent can find those of deleted pods.
func TestPods(t *testing.T) {
	nettest.RequireRoot(t)
	host := nettest.NewHost(t, "host")
	n := newNetwork(t, host, "10.244.4.0/24", "")
	setup(t, n, "pod-a")
	if _, err := n.Setup("pod-b"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		teardown string
		want     []string
	}{
		{"both set up", "", []string{"pod-a", "pod-b"}},
		{"one torn down", "pod-b", []string{"pod-a"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.teardown != "" {
				if err := n.Teardown(tt.teardown); err != nil {
					t.Fatal(err)
				}
			}
			got, err := n.Pods()
			slices.Sort(got)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("Pods() = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
