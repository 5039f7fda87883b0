// Package proxy is the node's Service proxy: it makes each Service's
// cluster IP, node ports and external IPs lead to the Service's ready
// endpoints, from Services and EndpointSlices (k8s.io/api types, as an
// informer hands them over).
//
// Two modes share one model of the desired state (buildModel):
//
//   - Iptables programs NAT rules like kube-proxy's iptables mode
//     (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*, KUBE-EXT-*, KUBE-NODEPORTS,
//     KUBE-MARK-MASQ, KUBE-POSTROUTING), written atomically with
//     iptables-restore --noflush; after the first (full) sync only the
//     chains that changed are rewritten. It needs root.
//   - Userspace is a Go TCP/UDP proxy with one listener per Service port,
//     for nodes without root (the embedded default).
//
// Both are safe for concurrent use.
package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// servicePort is one port of one Service, with the endpoints that may
// receive its traffic.
type servicePort struct {
	// name is "namespace/service:port" (port is the port's name, which
	// may be empty).
	name      string
	clusterIP netip.Addr // invalid for headless Services
	port      int32
	protocol  corev1.Protocol
	nodePort  int32
	// external are the externalIPs and load-balancer ingress IPs.
	external []netip.Addr
	// affinity is the ClientIP session affinity timeout in seconds, or 0.
	affinity int32
	// endpoints are the ready endpoints, sorted, without duplicates.
	endpoints []netip.AddrPort
}

// proto is the protocol as iptables spells it.
func (sp *servicePort) proto() string { return strings.ToLower(string(sp.protocol)) }

// buildModel computes the service ports to program. Headless and
// ExternalName Services have none; an endpoint counts if its Ready
// condition is true or unset (as the EndpointSlice API defines).
func buildModel(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) []servicePort {
	type key struct{ ns, svc, port string }
	eps := map[key][]netip.AddrPort{}
	for _, s := range endpointSlices {
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, p := range s.Ports {
			if p.Port == nil {
				continue
			}
			k := key{s.Namespace, svc, ptrString(p.Name)}
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				for _, a := range ep.Addresses {
					if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() {
						eps[k] = append(eps[k], netip.AddrPortFrom(ip, uint16(*p.Port)))
					}
				}
			}
		}
	}
	var out []servicePort
	for _, svc := range services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		clusterIP, _ := netip.ParseAddr(svc.Spec.ClusterIP)
		if !clusterIP.Is4() {
			continue // headless or not allocated
		}
		var external []netip.Addr
		for _, s := range svc.Spec.ExternalIPs {
			if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
				external = append(external, ip)
			}
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ip, err := netip.ParseAddr(ing.IP); err == nil && ip.Is4() {
				external = append(external, ip)
			}
		}
		var affinity int32
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			affinity = corev1.DefaultClientIPServiceAffinitySeconds
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				affinity = *c.ClientIP.TimeoutSeconds
			}
		}
		for _, p := range svc.Spec.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			e := slices.Clone(eps[key{svc.Namespace, svc.Name, p.Name}])
			slices.SortFunc(e, func(a, b netip.AddrPort) int { return a.Compare(b) })
			out = append(out, servicePort{
				name:      svc.Namespace + "/" + svc.Name + ":" + p.Name,
				clusterIP: clusterIP, port: p.Port, protocol: proto, nodePort: p.NodePort,
				external: external, affinity: affinity, endpoints: slices.Compact(e),
			})
		}
	}
	slices.SortFunc(out, func(a, b servicePort) int { return strings.Compare(a.name, b.name) })
	return out
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// chainHash names a chain after what it serves, as kube-proxy does: the
// first 16 base32 characters of a SHA-256 (chain names are at most 28
// bytes).
func chainHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return base32.StdEncoding.EncodeToString(h[:])[:16]
}

func svcChain(sp *servicePort) string {
	return "KUBE-SVC-" + chainHash(sp.name, string(sp.protocol))
}

func extChain(sp *servicePort) string {
	return "KUBE-EXT-" + chainHash(sp.name, string(sp.protocol))
}

func sepChain(sp *servicePort, ep netip.AddrPort) string {
	return "KUBE-SEP-" + chainHash(sp.name, string(sp.protocol), ep.String())
}

func portString(p int32) string { return strconv.Itoa(int(p)) }
