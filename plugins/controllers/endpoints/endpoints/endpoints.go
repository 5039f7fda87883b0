// Package endpoints is the Endpoints and EndpointSlice controller: for
// every Service with a selector it keeps an Endpoints object (same name)
// and one EndpointSlice (label kubernetes.io/service-name, owned by the
// Service) listing the matching pods that have an IP, ready ones as
// addresses and the others as notReadyAddresses. Services without a
// selector keep whatever Endpoints their users write.
package endpoints

import (
	"errors"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Resources, labels and annotations.
const (
	Services       = "services"
	Endpoints      = "endpoints"
	EndpointSlices = "endpointslices.discovery.k8s.io"

	ServiceNameLabel = "kubernetes.io/service-name"
	ManagedByLabel   = "endpointslice.kubernetes.io/managed-by"
	ManagedBy        = "endpointslice-controller.k8s.io"
	// HashAnnotation records the hash of the content the controller
	// wrote, so an unchanged Service/pod set costs no write.
	HashAnnotation = "endpoints.tugboat.dev/content-hash"
)

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "endpoints",
		Kinds: []string{sdk.KindController},
		Rules: []sdk.Rule{
			{Verbs: []string{"get", "list"}, Resources: []string{Services, "pods", Endpoints, EndpointSlices}},
			{Verbs: []string{"create", "update", "delete"}, Resources: []string{Endpoints, EndpointSlices}},
		},
	}
}

// Spec is the plugin's controller spec.
func Spec() sdk.ControllerSpec {
	return sdk.ControllerSpec{Watches: []sdk.Watch{
		{Resource: Services, Enqueue: hostapi.EnqueueSelf},
		{Resource: "pods", Enqueue: hostapi.EnqueueNamespace},
		{Resource: EndpointSlices, Enqueue: hostapi.EnqueueOwner},
		{Resource: Endpoints, Enqueue: hostapi.EnqueueNone},
	}}
}

// Controller reconciles Services' endpoints.
type Controller struct{}

// New returns the controller.
func New() *Controller { return &Controller{} }

// address is one pod endpoint.
type address struct {
	ip, node, name, uid string
	ready               bool
}

// port is one service port resolved against the pods.
type port struct {
	name, protocol string
	port           int64
}

// Reconcile syncs one Service's Endpoints and EndpointSlice.
func (c *Controller) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	svc, err := sdk.Get(Services, req.Namespace, req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		err = sdk.DeleteObject(Endpoints, req.Namespace, req.Name, nil)
		if errors.Is(err, sdk.ErrNotFound) {
			err = nil
		}
		return sdk.ReconcileResult{}, err // slices go with their owner
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	sv, ok := svc.Get("spec", "selector")
	sel := kube.MapSelector(kube.StringMap(sv))
	if !ok || !sel.Valid() {
		return sdk.ReconcileResult{}, nil // hand-written endpoints
	}
	meta := kube.ReadMeta(svc)
	pods, err := sdk.List(sdk.ListRequest{Resource: "pods", Namespace: req.Namespace, LabelSelector: sel.String()})
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	publishNotReady := kube.Bool(svc, "spec", "publishNotReadyAddresses")
	var addrs []address
	var first rawjson.Value
	for _, raw := range pods {
		p := kube.ReadPod(raw)
		if p.PodIP == "" || !p.Active() {
			continue
		}
		if first == nil {
			first = raw
		}
		addrs = append(addrs, address{ip: p.PodIP, node: p.NodeName, name: p.Meta.Name, uid: p.Meta.UID, ready: p.Ready || publishNotReady})
	}
	slices.SortFunc(addrs, func(a, b address) int { return strings.Compare(a.ip+a.name, b.ip+b.name) })
	ports := servicePorts(svc, first)
	if err := syncEndpoints(req.Namespace, &meta, addrs, ports); err != nil {
		return sdk.ReconcileResult{}, err
	}
	return sdk.ReconcileResult{}, syncSlice(req.Namespace, &meta, addrs, ports)
}

// servicePorts resolves the service's ports; a named targetPort is looked
// up in pod's container ports.
func servicePorts(svc, pod rawjson.Value) []port {
	var out []port
	v, _ := svc.Get("spec", "ports")
	_ = v.EachElem(func(_ int, p rawjson.Value) bool {
		pt := port{name: kube.Str(p, "name"), protocol: kube.Str(p, "protocol"), port: kube.Int(p, 0, "port")}
		if pt.protocol == "" {
			pt.protocol = "TCP"
		}
		if tv, ok := p.Get("targetPort"); ok {
			if n, ok := tv.Int(); ok {
				pt.port = n
			} else if name, ok := tv.String(); ok && pod != nil {
				pt.port = namedPort(pod, name, pt.port)
			}
		}
		out = append(out, pt)
		return true
	})
	return out
}

func namedPort(pod rawjson.Value, name string, def int64) int64 {
	found := def
	cs, _ := pod.Get("spec", "containers")
	_ = cs.EachElem(func(_ int, c rawjson.Value) bool {
		ps, _ := c.Get("ports")
		_ = ps.EachElem(func(_ int, p rawjson.Value) bool {
			if kube.Str(p, "name") == name {
				found = kube.Int(p, def, "containerPort")
				return false
			}
			return true
		})
		return found == def
	})
	return found
}

func appendRef(b []byte, ns string, a address) []byte {
	b = append(b, `{"kind":"Pod","namespace":`...)
	b = rawjson.AppendString(b, ns)
	b = append(b, `,"name":`...)
	b = rawjson.AppendString(b, a.name)
	b = append(b, `,"uid":`...)
	b = rawjson.AppendString(b, a.uid)
	return append(b, '}')
}

// subsets renders the Endpoints' subsets.
func subsets(ns string, addrs []address, ports []port) []byte {
	if len(addrs) == 0 {
		return []byte("[]")
	}
	b := []byte(`[{`)
	for pass, key := range []string{"addresses", "notReadyAddresses"} {
		n := 0
		for _, a := range addrs {
			if a.ready != (pass == 0) {
				continue
			}
			if n == 0 {
				if len(b) > 2 {
					b = append(b, ',')
				}
				b = append(b, '"')
				b = append(b, key...)
				b = append(b, `":[`...)
			} else {
				b = append(b, ',')
			}
			n++
			b = append(b, `{"ip":`...)
			b = rawjson.AppendString(b, a.ip)
			if a.node != "" {
				b = append(b, `,"nodeName":`...)
				b = rawjson.AppendString(b, a.node)
			}
			b = append(b, `,"targetRef":`...)
			b = appendRef(b, ns, a)
			b = append(b, '}')
		}
		if n > 0 {
			b = append(b, ']')
		}
	}
	if len(ports) > 0 {
		b = append(b, `,"ports":`...)
		b = appendPorts(b, ports)
	}
	return append(b, "}]"...)
}

func appendPorts(b []byte, ports []port) []byte {
	b = append(b, '[')
	for i, p := range ports {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		if p.name != "" {
			b = append(b, `"name":`...)
			b = rawjson.AppendString(b, p.name)
			b = append(b, ',')
		}
		b = append(b, `"port":`...)
		b = strconv.AppendInt(b, p.port, 10)
		b = append(b, `,"protocol":`...)
		b = rawjson.AppendString(b, p.protocol)
		b = append(b, '}')
	}
	return append(b, ']')
}

func contentHash(parts ...[]byte) string {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write(p)
		h.Write([]byte{0})
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

// appendMeta appends metadata with name, namespace, labels and the
// content hash (and owner and resourceVersion when given).
func appendMeta(b []byte, name, generateName, ns string, labels map[string]string, hash, rv string, owner *kube.OwnerRef) []byte {
	b = append(b, `"metadata":{`...)
	if name != "" {
		b = append(b, `"name":`...)
		b = rawjson.AppendString(b, name)
	} else {
		b = append(b, `"generateName":`...)
		b = rawjson.AppendString(b, generateName)
	}
	b = append(b, `,"namespace":`...)
	b = rawjson.AppendString(b, ns)
	if rv != "" {
		b = append(b, `,"resourceVersion":`...)
		b = rawjson.AppendString(b, rv)
	}
	if len(labels) > 0 {
		b = append(b, `,"labels":`...)
		b = kube.AppendStringMap(b, labels)
	}
	b = append(b, `,"annotations":`...)
	b = kube.AppendStringMap(b, map[string]string{HashAnnotation: hash})
	if owner != nil {
		b = append(b, `,"ownerReferences":[`...)
		b = kube.AppendOwnerRef(b, *owner)
		b = append(b, ']')
	}
	return append(b, '}')
}

// syncEndpoints creates or updates the Endpoints named like the service.
func syncEndpoints(ns string, svc *kube.Meta, addrs []address, ports []port) error {
	subs := subsets(ns, addrs, ports)
	hash := contentHash(subs, []byte(rawjson.StringMap(svc.Labels)))
	cur, err := sdk.Get(Endpoints, ns, svc.Name)
	var rv string
	switch {
	case errors.Is(err, sdk.ErrNotFound):
	case err != nil:
		return err
	default:
		m := kube.ReadMeta(cur)
		if m.Annotations[HashAnnotation] == hash {
			return nil
		}
		rv = m.ResourceVersion
	}
	b := []byte(`{"apiVersion":"v1","kind":"Endpoints",`)
	b = appendMeta(b, svc.Name, "", ns, svc.Labels, hash, rv, nil)
	b = append(b, `,"subsets":`...)
	b = append(b, subs...)
	b = append(b, '}')
	if rv == "" {
		_, err = sdk.CreateObject(Endpoints, ns, b)
	} else {
		_, err = sdk.UpdateObject(Endpoints, ns, svc.Name, "", b)
	}
	return err
}

// syncSlice keeps one EndpointSlice for the service and deletes extras.
func syncSlice(ns string, svc *kube.Meta, addrs []address, ports []port) error {
	b := []byte(`[`)
	for i, a := range addrs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"addresses":[`...)
		b = rawjson.AppendString(b, a.ip)
		b = append(b, `],"conditions":{"ready":`...)
		b = strconv.AppendBool(b, a.ready)
		b = append(b, `,"serving":`...)
		b = strconv.AppendBool(b, a.ready)
		b = append(b, `,"terminating":false},"targetRef":`...)
		b = appendRef(b, ns, a)
		if a.node != "" {
			b = append(b, `,"nodeName":`...)
			b = rawjson.AppendString(b, a.node)
		}
		b = append(b, '}')
	}
	eps := append(b, ']')
	ps := appendPorts(nil, ports)
	hash := contentHash(eps, ps)
	existing, err := sdk.List(sdk.ListRequest{Resource: EndpointSlices, Namespace: ns,
		LabelSelector: ServiceNameLabel + "=" + svc.Name + "," + ManagedByLabel + "=" + ManagedBy})
	if err != nil {
		return err
	}
	var keep *kube.Meta
	for _, raw := range existing {
		m := kube.ReadMeta(raw)
		if ref, ok := m.ControllerRef(); !ok || ref.UID != svc.UID {
			continue
		}
		if keep == nil {
			keep = &m
			continue
		}
		if err := sdk.DeleteObject(EndpointSlices, ns, m.Name, nil); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
	}
	if keep != nil && keep.Annotations[HashAnnotation] == hash {
		return nil
	}
	owner := kube.OwnerRef{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: true, BlockOwnerDeletion: true}
	labels := map[string]string{ServiceNameLabel: svc.Name, ManagedByLabel: ManagedBy}
	obj := []byte(`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",`)
	name, rv := "", ""
	if keep != nil {
		name, rv = keep.Name, keep.ResourceVersion
	}
	obj = appendMeta(obj, name, svc.Name+"-", ns, labels, hash, rv, &owner)
	obj = append(obj, `,"addressType":"IPv4","endpoints":`...)
	obj = append(obj, eps...)
	obj = append(obj, `,"ports":`...)
	obj = append(obj, ps...)
	obj = append(obj, '}')
	if keep == nil {
		_, err = sdk.CreateObject(EndpointSlices, ns, obj)
	} else {
		_, err = sdk.UpdateObject(EndpointSlices, ns, name, "", obj)
	}
	return err
}
