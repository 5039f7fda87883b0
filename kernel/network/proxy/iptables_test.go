package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	stdnet "net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
	"github.com/tugboat-dev/tugboat/kernel/network/nettest"
	"github.com/tugboat-dev/tugboat/kernel/network/proxy"
)

// The iptables tests run in namespaces they create (nettest): a node
// namespace with a bridge and two pod namespaces serving TCP, and an
// "outside" client namespace linked only to the node.

const (
	clusterIP = "10.96.0.10"
	nodePort  = 30080
)

var (
	nodeIP   = netip.MustParseAddr("192.168.77.1")
	clientIP = netip.MustParseAddr("192.168.77.2")
)

type node struct {
	host, client string
	pods         map[string]bridge.Attachment // by name
	proxy        *proxy.Iptables
}

// newNode builds the test node: pods "p1" and "p2" answering their name
// on port 8080, and an iptables proxy.
func newNode(t testing.TB, backend string, keep bool) *node {
	t.Helper()
	nettest.RequireRoot(t, "iptables-"+backend, "iptables-"+backend+"-save", "iptables-"+backend+"-restore")
	n := &node{host: nettest.NewHost(t, "node"), client: nettest.NewHost(t, "client"), pods: map[string]bridge.Attachment{}}
	nettest.LinkHosts(t, n.host, n.client, "eth1", nodeIP, clientIP)
	state := t.TempDir()
	net, err := bridge.New(bridge.Config{PodCIDR: netip.MustParsePrefix("10.244.1.0/24"), StateDir: state,
		NetNSDir: filepath.Join(state, "netns"), HostNetNS: n.host, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("bridge: %v", err)
	}
	t.Cleanup(net.Close)
	// A real node has a default route; the test node routes the service
	// CIDR to its bridge instead, so that nothing can leave it.
	err = nettest.WithHandle(n.host, func(h *netlink.Handle) error {
		br, err := h.LinkByName(bridge.DefaultBridge)
		if err != nil {
			return err
		}
		return h.RouteAdd(&netlink.Route{LinkIndex: br.Attrs().Index, Dst: &stdnet.IPNet{IP: stdnet.IPv4(10, 96, 0, 0), Mask: stdnet.CIDRMask(12, 32)}})
	})
	if err != nil {
		t.Fatalf("service CIDR route: %v", err)
	}
	for _, name := range []string{"p1", "p2"} {
		att, err := net.Setup(name)
		if err != nil {
			t.Fatalf("setup %s: %v", name, err)
		}
		t.Cleanup(func() { net.Teardown(name) })
		nettest.Serve(t, att.NetNS, netip.AddrPortFrom(att.IP, 8080), name)
		n.pods[name] = att
	}
	n.proxy, err = proxy.NewIptables(proxy.IptablesConfig{NetNS: n.host, ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
		KeepRules: keep, Backend: backend, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("new proxy: %v", err)
	}
	t.Cleanup(func() {
		if err := n.proxy.Close(); err != nil {
			t.Errorf("close proxy: %v", err)
		}
	})
	return n
}

func webService(affinity bool) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: clusterIP, ClusterIPs: []string{clusterIP},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http"), NodePort: nodePort}}}}
	if affinity {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	}
	return svc
}

// slice is web's EndpointSlice with the named pods and their readiness.
func (n *node) slice(ready map[string]bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for name, r := range ready {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{n.pods[name].IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)}})
	}
	return s
}

func (n *node) sync(t testing.TB, svc *corev1.Service, slice *discoveryv1.EndpointSlice) {
	t.Helper()
	if err := n.proxy.Sync(context.Background(), []*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice}); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// hits dials to from ns count times and counts the answers by pod.
func hits(t testing.TB, ns string, to netip.AddrPort, count int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range count {
		name, err := nettest.Dial(ns, to)
		if err != nil {
			t.Fatalf("dial %s: %v", to, err)
		}
		got[name]++
	}
	return got
}

// backends are the iptables backends every test runs against.
var backends = []string{"legacy", "nft"}

func TestIptablesProxy(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) { testIptablesProxy(t, b) })
	}
}

func testIptablesProxy(t *testing.T, backend string) {
	n := newNode(t, backend, false)
	vip := netip.MustParseAddrPort(clusterIP + ":80")
	np := netip.AddrPortFrom(nodeIP, nodePort)
	tests := []struct {
		name     string
		affinity bool
		ready    map[string]bool
		from     string // "node", "client" or a pod name
		to       netip.AddrPort
		// want: every pod that must answer (and no other).
		want []string
	}{
		{"only ready endpoints", false, map[string]bool{"p1": true, "p2": false}, "node", vip, []string{"p1"}},
		{"load balanced over both", false, map[string]bool{"p1": true, "p2": true}, "node", vip, []string{"p1", "p2"}},
		{"scaled down", false, map[string]bool{"p2": true}, "node", vip, []string{"p2"}},
		{"session affinity", true, map[string]bool{"p1": true, "p2": true}, "node", vip, nil},
		{"node port from outside", false, map[string]bool{"p1": true, "p2": true}, "client", np, []string{"p1", "p2"}},
		{"node port from the node", false, map[string]bool{"p1": true, "p2": true}, "node", np, []string{"p1", "p2"}},
		{"pod to service", false, map[string]bool{"p1": true, "p2": true}, "p1", vip, []string{"p1", "p2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n.sync(t, webService(tt.affinity), n.slice(tt.ready))
			from := map[string]string{"node": n.host, "client": n.client}[tt.from]
			if from == "" {
				from = n.pods[tt.from].NetNS
			}
			got := hits(t, from, tt.to, 40)
			if tt.want == nil { // affinity: one pod answers all
				if len(got) != 1 {
					t.Fatalf("answers %v, want all from one pod", got)
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
	t.Run("no ready endpoint is refused", func(t *testing.T) {
		n.sync(t, webService(false), n.slice(map[string]bool{"p1": false}))
		if _, err := nettest.Dial(n.host, vip); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial with no ready endpoint: %v, want connection refused", err)
		}
	})
}

// chains lists the KUBE- chains of the nat and filter tables of ns.
func chains(t testing.TB, backend, ns string) []string {
	t.Helper()
	var out []string
	err := bridge.InNetNS(ns, func() error {
		ipt, err := iptables.New(iptables.Path("iptables-" + backend))
		if err != nil {
			return err
		}
		for _, table := range []string{"nat", "filter"} {
			all, err := ipt.ListChains(table)
			if err != nil {
				return err
			}
			for _, c := range all {
				if strings.HasPrefix(c, "KUBE-") {
					out = append(out, table+"/"+c)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list chains: %v", err)
	}
	return out
}

func TestIptablesCleanup(t *testing.T) {
	for _, tc := range []struct {
		backend string
		keep    bool
	}{{"legacy", false}, {"legacy", true}, {"nft", false}, {"nft", true}} {
		backend, keep := tc.backend, tc.keep
		t.Run(fmt.Sprintf("%s/keep=%v", backend, keep), func(t *testing.T) {
			n := newNode(t, backend, keep)
			n.sync(t, webService(false), n.slice(map[string]bool{"p1": true, "p2": true}))
			if got := chains(t, backend, n.host); len(got) < 8 {
				t.Fatalf("chains after sync: %v, want the service's and the fixed ones", got)
			}
			if err := n.proxy.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			got := chains(t, backend, n.host)
			if keep && len(got) < 8 {
				t.Fatalf("chains after close with keep: %v, want them kept", got)
			}
			if !keep && len(got) != 0 {
				t.Fatalf("chains after close: %v, want none", got)
			}
			if keep {
				// A new proxy (an agent restart) adopts the kept rules and
				// removes the stale ones on its first, full sync.
				p, err := proxy.NewIptables(proxy.IptablesConfig{NetNS: n.host, Backend: backend, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				if err := p.Sync(context.Background(), nil, nil); err != nil {
					t.Fatalf("sync with no services: %v", err)
				}
				for _, c := range chains(t, backend, n.host) {
					if strings.Contains(c, "-SVC-") || strings.Contains(c, "-SEP-") || strings.Contains(c, "-EXT-") {
						t.Errorf("stale chain %s left after a full sync", c)
					}
				}
				if err := p.Close(); err != nil {
					t.Fatalf("close: %v", err)
				}
			}
		})
	}
}
