package apiserver

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/tugboat-dev/tugboat/kernel/store"
)

// allocateService gives a service its cluster IP and node ports (see
// servicealloc.go), keeping the ones it has (old is the stored version on
// update, else nil). The caller settles the returned reservation with the
// revision of its write, or 0 if it wrote nothing.
func (s *Server) allocateService(ctx context.Context, obj, old runtime.Object) (*svcReservation, error) {
	svc := obj.(*corev1.Service)
	var prev *corev1.Service
	if old != nil {
		prev = old.(*corev1.Service)
	}
	s.services.start(s.ctx)
	return s.services.reserve(ctx, store.Key("services", svc.Namespace, svc.Name), svc, prev)
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

// prepareServiceUpdate keeps allocated values a PUT left out, like
// Kubernetes' patchAllocatedValues, and drops the ones the new type no
// longer uses when the client left them unchanged (dropTypeDependentFields):
// node ports when leaving NodePort/LoadBalancer, the cluster IP when
// becoming ExternalName.
func prepareServiceUpdate(obj, old runtime.Object) {
	n, o := obj.(*corev1.Service), old.(*corev1.Service)
	if n.Spec.Type == corev1.ServiceTypeExternalName {
		if o.Spec.Type != corev1.ServiceTypeExternalName && n.Spec.ClusterIP == o.Spec.ClusterIP {
			n.Spec.ClusterIP, n.Spec.ClusterIPs, n.Spec.IPFamilies, n.Spec.IPFamilyPolicy = "", nil, nil, nil
		}
		dropNodePorts(n, o)
		return
	}
	if n.Spec.ClusterIP == "" && len(n.Spec.ClusterIPs) == 0 {
		n.Spec.ClusterIP, n.Spec.ClusterIPs = o.Spec.ClusterIP, o.Spec.ClusterIPs
		n.Spec.IPFamilies, n.Spec.IPFamilyPolicy = o.Spec.IPFamilies, o.Spec.IPFamilyPolicy
	}
	if n.Spec.Type != corev1.ServiceTypeNodePort && n.Spec.Type != corev1.ServiceTypeLoadBalancer {
		dropNodePorts(n, o)
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

// dropNodePorts clears the node ports of n that o held, for a service
// whose new type has none.
func dropNodePorts(n, o *corev1.Service) {
	if o.Spec.Type != corev1.ServiceTypeNodePort && o.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return
	}
	for i := range n.Spec.Ports {
		for _, op := range o.Spec.Ports {
			if n.Spec.Ports[i].NodePort == op.NodePort {
				n.Spec.Ports[i].NodePort = 0
			}
		}
	}
}
