// Package network holds the cluster-level pieces of Tugboat's network: the
// pod CIDR allocator that gives each Node a range of the cluster CIDR
// (podcidr.go), the load-balancer address allocator (lbpool.go), the
// host-gw peers of a node (peers.go) and the checks on the configured
// ranges. The node-level dataplane lives in the subpackages: bridge
// (per-pod network namespaces, veth pairs, IPAM, host-gw routes), proxy
// (the Service proxy: iptables and userspace modes) and dns (the cluster
// DNS server); nettest keeps their tests inside network namespaces.
package network

import (
	"fmt"
	"net/netip"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Default ranges, as kubeadm and flannel use them.
var (
	DefaultClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	DefaultServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")
)

// DefaultNodeMaskSize is the prefix length of each node's pod CIDR.
const DefaultNodeMaskSize = 24

// ValidateCIDRs checks the cluster CIDR (pod addresses) and the service
// CIDR: both IPv4, masked, and not overlapping. Errors wrap
// errdefs.ErrInvalid.
func ValidateCIDRs(cluster, service netip.Prefix) error {
	for _, c := range []struct {
		name string
		p    netip.Prefix
	}{{"cluster CIDR", cluster}, {"service CIDR", service}} {
		switch {
		case !c.p.IsValid() || !c.p.Addr().Is4():
			return fmt.Errorf("%s %s: want an IPv4 prefix: %w", c.name, c.p, errdefs.ErrInvalid)
		case c.p.Masked() != c.p:
			return fmt.Errorf("%s %s: host bits set (want %s): %w", c.name, c.p, c.p.Masked(), errdefs.ErrInvalid)
		}
	}
	if cluster.Overlaps(service) {
		return fmt.Errorf("cluster CIDR %s overlaps service CIDR %s: %w", cluster, service, errdefs.ErrInvalid)
	}
	return nil
}
