package network

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
)

// Peers turns Nodes into the host-gw routes of node self: every other
// node with a pod CIDR and an IPv4 InternalIP (else ExternalIP) address,
// sorted by pod CIDR. Nodes without either are skipped.
func Peers(nodes []*corev1.Node, self string) []bridge.Peer {
	var out []bridge.Peer
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !cidr.Addr().Is4() {
			continue
		}
		if ip, ok := nodeIP(n); ok {
			out = append(out, bridge.Peer{PodCIDR: cidr.Masked(), NodeIP: ip})
		}
	}
	slices.SortFunc(out, func(a, b bridge.Peer) int { return a.PodCIDR.Addr().Compare(b.PodCIDR.Addr()) })
	return out
}

// nodeIP is a node's first IPv4 InternalIP, else its first IPv4
// ExternalIP.
func nodeIP(n *corev1.Node) (netip.Addr, bool) {
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if a.Type != t {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}
