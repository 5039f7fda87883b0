package apiserver

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/tugboat-dev/tugboat/kernel/store"
)

// Service address allocation. ClusterIPs come from serviceCIDR (Kubernetes'
// kubeadm default) and node ports from nodePortMin..nodePortMax. Allocation
// reads the other services and picks a random free value; two creates
// racing for the same random value among a million addresses (or 2768
// ports) is possible but improbable, and documented in RATIONALE.md
// ("Why no allocator objects?").
var serviceCIDR = netip.MustParsePrefix("10.96.0.0/12")

const (
	nodePortMin = 30000
	nodePortMax = 32767
)

// usedAddresses are the cluster IPs and node ports of other services.
type usedAddresses struct {
	ips   map[string]bool
	ports map[int32]bool
}

func (s *Server) serviceAddresses(ctx context.Context, except string) (usedAddresses, error) {
	u := usedAddresses{ips: map[string]bool{}, ports: map[int32]bool{}}
	prefix := store.Prefix("services", "")
	start := ""
	for {
		page, err := s.store.List(ctx, prefix, store.ListOptions{StartKey: start, Limit: 1000})
		if err != nil {
			return u, fmt.Errorf("list services: %w", err)
		}
		for _, kv := range page.KVs {
			if kv.Key == except {
				continue
			}
			var svc corev1.Service
			if err := json.Unmarshal(kv.Value, &svc); err != nil {
				return u, fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			for _, ip := range svc.Spec.ClusterIPs {
				u.ips[ip] = true
			}
			for _, p := range svc.Spec.Ports {
				if p.NodePort != 0 {
					u.ports[p.NodePort] = true
				}
			}
		}
		if !page.More {
			return u, nil
		}
		start = page.KVs[len(page.KVs)-1].Key + "\x00"
	}
}

// allocateService gives a service its cluster IP and node ports, keeping
// the ones it has (old is the stored version on update, else nil) and
// rejecting taken ones with 422.
func (s *Server) allocateService(ctx context.Context, obj, old runtime.Object) error {
	svc := obj.(*corev1.Service)
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	var prev *corev1.Service
	if old != nil {
		prev = old.(*corev1.Service)
	}
	needIP := svc.Spec.ClusterIP != corev1.ClusterIPNone && (prev == nil || svc.Spec.ClusterIP != prev.Spec.ClusterIP)
	needPorts := svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
	if !needIP && !needPorts {
		fillClusterIPs(svc)
		return nil
	}
	used, err := s.serviceAddresses(ctx, store.Key("services", svc.Namespace, svc.Name))
	if err != nil {
		return err
	}
	if needIP {
		if err := allocateClusterIP(svc, used); err != nil {
			return err
		}
	}
	fillClusterIPs(svc)
	if needPorts {
		return allocateNodePorts(svc, used)
	}
	return nil
}

func allocateClusterIP(svc *corev1.Service, used usedAddresses) error {
	ip := svc.Spec.ClusterIP
	if ip == "" {
		var err error
		svc.Spec.ClusterIP, err = randomIP(used.ips)
		return err
	}
	p := field.NewPath("spec", "clusterIPs").Index(0)
	addr, err := netip.ParseAddr(ip)
	if err != nil || !serviceCIDR.Contains(addr) {
		return serviceInvalid(svc, field.Invalid(p, ip,
			fmt.Sprintf("failed to allocate IP %s: the provided IP (%s) is not in the valid range. The range of valid IPs is %s", ip, ip, serviceCIDR)))
	}
	if used.ips[ip] {
		return serviceInvalid(svc, field.Invalid(p, ip, fmt.Sprintf("failed to allocate IP %s: provided IP is already allocated", ip)))
	}
	return nil
}

func allocateNodePorts(svc *corev1.Service, used usedAddresses) error {
	for i := range svc.Spec.Ports {
		port := &svc.Spec.Ports[i]
		if port.NodePort != 0 {
			if used.ports[port.NodePort] {
				return serviceInvalid(svc, field.Invalid(field.NewPath("spec", "ports").Index(i).Child("nodePort"), port.NodePort, "provided port is already allocated"))
			}
			used.ports[port.NodePort] = true
			continue
		}
		n, err := randomPort(used.ports)
		if err != nil {
			return err
		}
		port.NodePort, used.ports[n] = n, true
	}
	return nil
}

func fillClusterIPs(svc *corev1.Service) {
	svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	if svc.Spec.IPFamilyPolicy == nil {
		svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
	}
}

func serviceInvalid(svc *corev1.Service, e *field.Error) error {
	return apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Service").GroupKind(), svc.Name, field.ErrorList{e})
}

// randomIP picks a free address of serviceCIDR, skipping the network
// address and .1 (reserved for the "kubernetes" service, as in Kubernetes).
func randomIP(used map[string]bool) (string, error) {
	base := serviceCIDR.Addr().As4()
	first := binary.BigEndian.Uint32(base[:])
	size := uint32(1) << (32 - serviceCIDR.Bits())
	for range 64 {
		off := 2 + rand.Uint32N(size-3)
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], first+off)
		ip := netip.AddrFrom4(b).String()
		if !used[ip] {
			return ip, nil
		}
	}
	return "", apierrors.NewInternalError(fmt.Errorf("no free cluster IP found in %s", serviceCIDR))
}

func randomPort(used map[int32]bool) (int32, error) {
	for range 256 {
		p := nodePortMin + rand.Int32N(nodePortMax-nodePortMin+1)
		if !used[p] {
			return p, nil
		}
	}
	for p := int32(nodePortMin); p <= nodePortMax; p++ {
		if !used[p] {
			return p, nil
		}
	}
	return 0, apierrors.NewInternalError(fmt.Errorf("no free node port in %d-%d", nodePortMin, nodePortMax))
}

// prepareServiceUpdate keeps allocated values a PUT left out, like
// Kubernetes' patchAllocatedValues.
func prepareServiceUpdate(obj, old runtime.Object) {
	n, o := obj.(*corev1.Service), old.(*corev1.Service)
	if n.Spec.Type == corev1.ServiceTypeExternalName {
		return
	}
	if n.Spec.ClusterIP == "" && len(n.Spec.ClusterIPs) == 0 {
		n.Spec.ClusterIP, n.Spec.ClusterIPs = o.Spec.ClusterIP, o.Spec.ClusterIPs
		n.Spec.IPFamilies, n.Spec.IPFamilyPolicy = o.Spec.IPFamilies, o.Spec.IPFamilyPolicy
	}
	if n.Spec.Type != corev1.ServiceTypeNodePort && n.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return
	}
	for i := range n.Spec.Ports {
		np := &n.Spec.Ports[i]
		for _, op := range o.Spec.Ports {
			if np.NodePort == 0 && op.NodePort != 0 && op.Port == np.Port && op.Protocol == np.Protocol {
				np.NodePort = op.NodePort
			}
		}
	}
}
