package network_test

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/kernel/network"
	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
)

func TestPeers(t *testing.T) {
	node := func(name, cidr string, addrs ...corev1.NodeAddress) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr},
			Status: corev1.NodeStatus{Addresses: addrs}}
	}
	internal := func(ip string) corev1.NodeAddress {
		return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
	}
	external := func(ip string) corev1.NodeAddress {
		return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ip}
	}
	nodes := []*corev1.Node{
		node("self", "10.244.0.0/24", internal("192.168.1.1")),
		node("c", "10.244.2.0/24", external("192.168.1.30"), internal("fd00::3"), internal("192.168.1.3")),
		node("b", "10.244.1.0/24", external("192.168.1.20")),
		node("no-cidr", "", internal("192.168.1.4")),
		node("no-address", "10.244.5.0/24", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "x"}),
	}
	want := []bridge.Peer{
		{PodCIDR: netip.MustParsePrefix("10.244.1.0/24"), NodeIP: netip.MustParseAddr("192.168.1.20")},
		{PodCIDR: netip.MustParsePrefix("10.244.2.0/24"), NodeIP: netip.MustParseAddr("192.168.1.3")},
	}
	if got := network.Peers(nodes, "self"); !slices.Equal(got, want) {
		t.Fatalf("peers %v, want %v", got, want)
	}
}
