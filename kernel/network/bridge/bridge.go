// Package bridge is the node side of the bridge pod network: per node a
// Linux bridge holding the first address of the node's pod CIDR (the pods'
// gateway), per pod a network namespace joined to the bridge by a veth
// pair and an address from the node's pod CIDR (IPAM persisted on disk),
// and host-gw routes to the other nodes' pod CIDRs via their node
// addresses (like flannel's host-gw backend).
//
// Everything a Network programs lives in one "host" namespace: the
// caller's own (the node agent in production) or the one named by
// Config.HostNetNS (tests use namespaces they create, so nothing touches
// the machine's network). It needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
//
// A Network is safe for concurrent use. Errors wrap errdefs categories:
// ErrInvalid for bad input, ErrUnavailable for an exhausted pod CIDR.
package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// DefaultBridge is the bridge's name when Config.Bridge is empty.
const DefaultBridge = "tugboat0"

// routeProtocol marks the routes a Network installs (rtnetlink protocol
// number; 0x74 is unassigned), so stale ones can be found and removed.
const routeProtocol netlink.RouteProtocol = 0x74

// Config configures a Network.
type Config struct {
	// PodCIDR is this node's pod range (Node.spec.podCIDR); required,
	// IPv4, at most /29.
	PodCIDR netip.Prefix
	// StateDir holds the IPAM records; required. It must survive agent
	// restarts (not a tmpfs that the agent's restart clears).
	StateDir string
	// NetNSDir is where pod namespaces are pinned; required.
	NetNSDir string
	// HostNetNS is the path of the namespace the bridge and routes live in;
	// "" is the caller's namespace.
	HostNetNS string
	// Bridge names the bridge; "" means DefaultBridge.
	Bridge string
	// MTU of the bridge and veths; 0 means 1500.
	MTU int
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Network is one node's bridge network. Create it with New.
type Network struct {
	cfg  Config
	log  *slog.Logger
	ipam *ipam
	// host is a netlink handle in the host namespace.
	host *netlink.Handle

	mu sync.Mutex // serializes Setup/Teardown of one pod against itself
}

// Attachment is a pod's place on the network.
type Attachment struct {
	// IP is the pod's address; Gateway the bridge's.
	IP, Gateway netip.Addr
	// PrefixLen is the pod CIDR's prefix length.
	PrefixLen int
	// NetNS is the path of the pod's network namespace, for the runtime
	// to join (setns) or pass to containerd.
	NetNS string
	// HostVeth is the host end of the pod's veth pair.
	HostVeth string
}

// New validates cfg and sets up the node: the bridge (created if missing,
// with the gateway address, up) and IP forwarding in the host namespace.
// It is idempotent: a restarted agent calls New again over the same
// StateDir and finds its pods' addresses.
func New(cfg Config) (*Network, error) {
	if cfg.StateDir == "" || cfg.NetNSDir == "" {
		return nil, fmt.Errorf("bridge: StateDir and NetNSDir are required: %w", errdefs.ErrInvalid)
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if len(cfg.Bridge) > 15 {
		return nil, fmt.Errorf("bridge: name %q longer than 15 bytes: %w", cfg.Bridge, errdefs.ErrInvalid)
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, err := newIPAM(cfg.StateDir, cfg.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	if err := os.MkdirAll(cfg.NetNSDir, 0o755); err != nil {
		return nil, fmt.Errorf("bridge: netns dir: %w", err)
	}
	host, err := handleAt(cfg.HostNetNS)
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	n := &Network{cfg: cfg, log: cfg.Logger.With("component", "bridge"), ipam: m, host: host}
	if err := n.ensureBridge(); err != nil {
		host.Close()
		return nil, fmt.Errorf("bridge: %w", err)
	}
	if err := InNetNS(cfg.HostNetNS, enableForwarding); err != nil {
		host.Close()
		return nil, fmt.Errorf("bridge: enable forwarding: %w", err)
	}
	return n, nil
}

// Gateway is the bridge's address, the pods' default gateway.
func (n *Network) Gateway() netip.Addr { return n.ipam.gateway }

// Close releases the netlink handle; the network stays as it is.
func (n *Network) Close() { n.host.Close() }

// Destroy removes the bridge and the routes the Network installed (the
// pods' namespaces are the caller's to tear down first) and closes n.
func (n *Network) Destroy() error {
	defer n.Close()
	err := n.SyncRoutes(nil)
	if l, lerr := n.host.LinkByName(n.cfg.Bridge); lerr == nil {
		err = errors.Join(err, n.host.LinkDel(l))
	}
	return err
}

func (n *Network) ensureBridge() error {
	l, err := n.host.LinkByName(n.cfg.Bridge)
	if err != nil {
		if !errors.As(err, new(netlink.LinkNotFoundError)) {
			return fmt.Errorf("find bridge %s: %w", n.cfg.Bridge, err)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.cfg.Bridge, MTU: n.cfg.MTU}}
		if err := n.host.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", n.cfg.Bridge, err)
		}
		if l, err = n.host.LinkByName(n.cfg.Bridge); err != nil {
			return fmt.Errorf("find bridge %s: %w", n.cfg.Bridge, err)
		}
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return fmt.Errorf("link %s is a %s, not a bridge: %w", n.cfg.Bridge, l.Type(), errdefs.ErrInvalid)
	}
	gw := &netlink.Addr{IPNet: ipNet(n.ipam.gateway, n.cfg.PodCIDR.Bits())}
	if err := n.host.AddrReplace(l, gw); err != nil {
		return fmt.Errorf("address bridge %s: %w", n.cfg.Bridge, err)
	}
	if err := n.host.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", n.cfg.Bridge, err)
	}
	return nil
}

// Setup puts pod podUID on the network: its namespace (created and pinned
// under NetNSDir), an address, a veth pair (eth0 inside, on the bridge
// outside) and a default route via the gateway. It is idempotent: calling
// it again for a set-up pod (after an agent restart) returns the same
// attachment, repairing what is missing.
func (n *Network) Setup(podUID string) (Attachment, error) {
	if podUID == "" || strings.ContainsAny(podUID, "/\x00") {
		return Attachment{}, fmt.Errorf("setup pod %q: bad pod UID: %w", podUID, errdefs.ErrInvalid)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	att := Attachment{Gateway: n.ipam.gateway, PrefixLen: n.cfg.PodCIDR.Bits(),
		NetNS: filepath.Join(n.cfg.NetNSDir, podUID), HostVeth: vethName(podUID)}
	ip, err := n.ipam.allocate(podUID)
	if err != nil {
		return att, fmt.Errorf("setup pod %s: %w", podUID, err)
	}
	att.IP = ip
	if err := n.attach(att); err != nil {
		return att, fmt.Errorf("setup pod %s: %w", podUID, err)
	}
	return att, nil
}

func (n *Network) attach(att Attachment) error {
	if _, err := os.Stat(att.NetNS); errors.Is(err, os.ErrNotExist) {
		if err := NewNetNS(att.NetNS); err != nil {
			return err
		}
	}
	podNS, err := netns.GetFromPath(att.NetNS)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer podNS.Close()
	pod, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return fmt.Errorf("netlink in pod netns: %w", err)
	}
	defer pod.Close()
	if _, err := pod.LinkByName("eth0"); err != nil {
		// No eth0 inside: (re)create the pair; drop a half-made host end.
		if old, err := n.host.LinkByName(att.HostVeth); err == nil {
			n.host.LinkDel(old)
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: att.HostVeth, MTU: n.cfg.MTU},
			PeerName: "eth0", PeerNamespace: netlink.NsFd(podNS), PeerMTU: uint32(n.cfg.MTU)}
		if err := n.host.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth %s: %w", att.HostVeth, err)
		}
	}
	br, err := n.host.LinkByName(n.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("find bridge: %w", err)
	}
	hv, err := n.host.LinkByName(att.HostVeth)
	if err != nil {
		return fmt.Errorf("find veth %s: %w", att.HostVeth, err)
	}
	if err := n.host.LinkSetMaster(hv, br); err != nil {
		return fmt.Errorf("attach veth to bridge: %w", err)
	}
	// Hairpin: a pod reaching a Service that DNATs back to itself.
	if err := n.host.LinkSetHairpin(hv, true); err != nil {
		return fmt.Errorf("hairpin mode on veth: %w", err)
	}
	if err := n.host.LinkSetUp(hv); err != nil {
		return fmt.Errorf("bring up veth: %w", err)
	}
	return configurePod(pod, att)
}

// configurePod brings up lo and eth0 with the pod's address and default
// route inside the pod's namespace.
func configurePod(pod *netlink.Handle, att Attachment) error {
	lo, err := pod.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := pod.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	eth, err := pod.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0: %w", err)
	}
	if err := pod.AddrReplace(eth, &netlink.Addr{IPNet: ipNet(att.IP, att.PrefixLen)}); err != nil {
		return fmt.Errorf("address eth0: %w", err)
	}
	if err := pod.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring up eth0: %w", err)
	}
	def := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: att.Gateway.AsSlice(), Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}
	if err := pod.RouteReplace(def); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

// Teardown removes pod podUID from the network: its veth pair, its
// namespace and its address. It is idempotent.
func (n *Network) Teardown(podUID string) error {
	if podUID == "" || strings.ContainsAny(podUID, "/\x00") {
		return fmt.Errorf("teardown pod %q: bad pod UID: %w", podUID, errdefs.ErrInvalid)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var err error
	if l, lerr := n.host.LinkByName(vethName(podUID)); lerr == nil {
		if derr := n.host.LinkDel(l); derr != nil {
			err = fmt.Errorf("delete veth: %w", derr)
		}
	}
	err = errors.Join(err, DeleteNetNS(filepath.Join(n.cfg.NetNSDir, podUID)), n.ipam.release(podUID))
	if err != nil {
		return fmt.Errorf("teardown pod %s: %w", podUID, err)
	}
	return nil
}

// Pods lists the pod UIDs that hold an address or a pinned namespace,
// so a restarted agent can tear down those of pods that no longer exist.
func (n *Network) Pods() ([]string, error) {
	seen := map[string]bool{}
	owners, err := n.ipam.owners()
	if err != nil {
		return nil, err
	}
	for _, o := range owners {
		seen[o] = true
	}
	ents, err := os.ReadDir(n.cfg.NetNSDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read netns dir: %w", err)
	}
	for _, e := range ents {
		seen[e.Name()] = true
	}
	out := make([]string, 0, len(seen))
	for uid := range seen {
		out = append(out, uid)
	}
	return out, nil
}

// Peer is another node: its pod CIDR and its node address (reachable
// from this node without a gateway, as host-gw requires).
type Peer struct {
	PodCIDR netip.Prefix
	NodeIP  netip.Addr
}

// SyncRoutes makes the host-gw routes exactly peers: a route to each
// peer's pod CIDR via its node address, and none left to nodes that are
// gone. Routes are recognised by their protocol number.
func (n *Network) SyncRoutes(peers []Peer) error {
	want := map[netip.Prefix]netip.Addr{}
	for _, p := range peers {
		if !p.PodCIDR.IsValid() || !p.NodeIP.Is4() || p.PodCIDR == n.cfg.PodCIDR {
			continue
		}
		want[p.PodCIDR.Masked()] = p.NodeIP
	}
	have, err := n.host.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	var errs []error
	for _, r := range have {
		dst, _ := netip.ParsePrefix(r.Dst.String())
		gw, _ := netip.AddrFromSlice(r.Gw)
		if w, ok := want[dst]; ok && w == gw.Unmap() {
			delete(want, dst)
			continue
		}
		if err := n.host.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route to %s: %w", dst, err))
		}
	}
	for dst, gw := range want {
		r := &netlink.Route{Dst: ipNet(dst.Addr(), dst.Bits()), Gw: gw.AsSlice(), Protocol: routeProtocol}
		if err := n.host.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", dst, gw, err))
		}
	}
	return errors.Join(errs...)
}

// vethName is the host end's name: "tb" and 11 hex digits of the UID's
// hash (interface names are at most 15 bytes).
func vethName(podUID string) string {
	sum := sha256.Sum256([]byte(podUID))
	return "tb" + hex.EncodeToString(sum[:])[:11]
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}

// handleAt opens a netlink handle in the namespace at path ("" is the
// caller's).
func handleAt(path string) (*netlink.Handle, error) {
	if path == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// enableForwarding turns on routing in the calling thread's namespace,
// and, where the br_netfilter module is loaded, passes bridged traffic
// through iptables (a pod reaching a Service backed by a pod on the same
// bridge needs its reply un-NATed).
func enableForwarding() error {
	if err := setSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	const brnf = "net/bridge/bridge-nf-call-iptables"
	if _, err := os.Stat(filepath.Join("/proc/sys", brnf)); err == nil {
		return setSysctl(brnf, "1")
	}
	return nil
}

// setSysctl writes a /proc/sys value (in the calling thread's network
// namespace for net/ keys) unless it already has it.
func setSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", key)
	if cur, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(cur)) == value {
		return nil
	}
	return os.WriteFile(p, []byte(value), 0o644)
}
