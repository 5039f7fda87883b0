package apiserver

import (
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Subresource names.
const (
	subStatus  = "status"
	subScale   = "scale"
	subBinding = "binding"
	subLog     = "log"
)

// standardVerbs are the verbs of every resource in the table.
var standardVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// resource describes one served resource: its identity in discovery, how it
// is stored, and the per-kind behaviour (defaulting, validation, selectable
// fields, table columns, scale). A resource is immutable after the registry
// is built and safe for concurrent use.
type resource struct {
	gvk        schema.GroupVersionKind
	plural     string
	singular   string
	shortNames []string
	categories []string
	namespaced bool
	// subresources lists the served subresources (status, scale, binding, log).
	subresources []string
	// storage is the resource segment of store keys: the plural, which is
	// unique across every group served (see RATIONALE.md).
	storage string
	newObj  func() runtime.Object
	newList func() runtime.Object
	// generation: metadata.generation starts at 1 and counts spec changes.
	generation bool
	// createOnUpdate: a PUT of a missing object creates it (endpoints,
	// leases, events, as in Kubernetes).
	createOnUpdate bool
	// nameFn validates metadata.name (and generateName as a prefix).
	nameFn validation.ValidateNameFunc

	defaults       func(obj runtime.Object)
	prepareCreate  func(obj runtime.Object)
	prepareUpdate  func(obj, old runtime.Object)
	validate       func(obj runtime.Object) field.ErrorList
	validateUpdate func(obj, old runtime.Object) field.ErrorList
	// fields returns the selectable fields beyond metadata.name/namespace.
	fields func(obj runtime.Object) map[string]string
	// fieldNames are the keys fields returns (for rejecting others).
	fieldNames []string
	table      *tableDef
}

// groupResource is the resource's group and plural, as errors name it.
func (r *resource) groupResource() schema.GroupResource {
	return schema.GroupResource{Group: r.gvk.Group, Resource: r.plural}
}

func (r *resource) groupVersion() schema.GroupVersion { return r.gvk.GroupVersion() }

func (r *resource) hasSub(name string) bool { return slices.Contains(r.subresources, name) }

// apiVersion is the resource's apiVersion string ("v1", "apps/v1").
func (r *resource) apiVersion() string { return r.gvk.GroupVersion().String() }

// listKind is the kind of the resource's list type.
func (r *resource) listKind() string { return r.gvk.Kind + "List" }

// registry is the table of served resources, indexed for routing.
type registry struct {
	all    []*resource
	groups []groupVersions // in discovery order; groups[0] is core
	byPath map[schema.GroupVersionResource]*resource
}

// groupVersions is one API group and the versions served for it, preferred
// first.
type groupVersions struct {
	name     string
	versions []string
}

func (g *registry) lookup(group, version, plural string) *resource {
	return g.byPath[schema.GroupVersionResource{Group: group, Version: version, Resource: plural}]
}

// resourcesOf returns the resources of one group version in table order.
func (g *registry) resourcesOf(gv schema.GroupVersion) []*resource {
	var out []*resource
	for _, r := range g.all {
		if r.groupVersion() == gv {
			out = append(out, r)
		}
	}
	return out
}

func (g *registry) servesGroupVersion(gv schema.GroupVersion) bool {
	for _, grp := range g.groups {
		if grp.name == gv.Group && slices.Contains(grp.versions, gv.Version) {
			return true
		}
	}
	return false
}

var (
	gvCore          = schema.GroupVersion{Version: "v1"}
	gvApps          = appsv1.SchemeGroupVersion
	gvBatch         = batchv1.SchemeGroupVersion
	gvCoordination  = coordinationv1.SchemeGroupVersion
	gvDiscovery     = discoveryv1.SchemeGroupVersion
	gvAutoscaling   = autoscalingv2.SchemeGroupVersion
	gvNetworking    = networkingv1.SchemeGroupVersion
	gvAutoscalingV1 = schema.GroupVersion{Group: "autoscaling", Version: "v1"}
)

// newRegistry builds the resource table.
func newRegistry() *registry {
	all := coreResources()
	all = append(all, appsResources()...)
	all = append(all, otherResources()...)
	all = append(all, schedulingResources()...)
	reg := &registry{all: all, byPath: make(map[schema.GroupVersionResource]*resource)}
	for _, r := range all {
		if r.storage == "" {
			r.storage = r.plural
		}
		if r.nameFn == nil {
			r.nameFn = validation.NameIsDNSSubdomain
		}
		reg.byPath[r.gvk.GroupVersion().WithResource(r.plural)] = r
		reg.addGroupVersion(r.gvk.GroupVersion())
	}
	return reg
}

func (g *registry) addGroupVersion(gv schema.GroupVersion) {
	for i := range g.groups {
		if g.groups[i].name == gv.Group {
			if !slices.Contains(g.groups[i].versions, gv.Version) {
				g.groups[i].versions = append(g.groups[i].versions, gv.Version)
			}
			return
		}
	}
	g.groups = append(g.groups, groupVersions{name: gv.Group, versions: []string{gv.Version}})
}

func coreResources() []*resource {
	k := func(kind string) schema.GroupVersionKind { return gvCore.WithKind(kind) }
	return []*resource{
		{gvk: k("Namespace"), plural: "namespaces", singular: "namespace", shortNames: []string{"ns"},
			subresources: []string{subStatus}, nameFn: validation.ValidateNamespaceName,
			newObj: func() runtime.Object { return &corev1.Namespace{} }, newList: func() runtime.Object { return &corev1.NamespaceList{} },
			defaults: defaultNamespace, prepareCreate: prepareNamespace,
			fields: namespaceFields, fieldNames: []string{"status.phase"}, table: namespaceTable},
		{gvk: k("Node"), plural: "nodes", singular: "node", shortNames: []string{"no"},
			subresources: []string{subStatus},
			newObj:       func() runtime.Object { return &corev1.Node{} }, newList: func() runtime.Object { return &corev1.NodeList{} },
			fields: nodeFields, fieldNames: []string{"spec.unschedulable"}, table: nodeTable},
		{gvk: k("Pod"), plural: "pods", singular: "pod", shortNames: []string{"po"}, categories: []string{"all"}, namespaced: true,
			subresources: []string{subStatus, subBinding, subLog}, generation: true,
			newObj: func() runtime.Object { return &corev1.Pod{} }, newList: func() runtime.Object { return &corev1.PodList{} },
			defaults: defaultPod, prepareCreate: preparePod, validate: validatePod, validateUpdate: validatePodUpdate,
			fields: podFields, fieldNames: podFieldNames, table: podTable},
		{gvk: k("Service"), plural: "services", singular: "service", shortNames: []string{"svc"}, categories: []string{"all"}, namespaced: true,
			subresources: []string{subStatus}, nameFn: validation.NameIsDNS1035Label,
			newObj: func() runtime.Object { return &corev1.Service{} }, newList: func() runtime.Object { return &corev1.ServiceList{} },
			defaults: defaultService, prepareCreate: prepareService, prepareUpdate: prepareServiceUpdate, validate: validateService, validateUpdate: validateServiceUpdate,
			table: serviceTable},
		{gvk: k("ReplicationController"), plural: "replicationcontrollers", singular: "replicationcontroller", shortNames: []string{"rc"},
			categories: []string{"all"}, namespaced: true, subresources: []string{subStatus, subScale}, generation: true,
			newObj: func() runtime.Object { return &corev1.ReplicationController{} }, newList: func() runtime.Object { return &corev1.ReplicationControllerList{} },
			defaults: defaultReplicationController, prepareCreate: clearStatus, validate: validateReplicationController, validateUpdate: validateReplicationControllerUpdate,
			table: replicationControllerTable},
		{gvk: k("Endpoints"), plural: "endpoints", singular: "endpoints", shortNames: []string{"ep"}, namespaced: true,
			createOnUpdate: true,
			newObj:         func() runtime.Object { return &corev1.Endpoints{} }, newList: func() runtime.Object { return &corev1.EndpointsList{} }},
		{gvk: k("ConfigMap"), plural: "configmaps", singular: "configmap", shortNames: []string{"cm"}, namespaced: true,
			newObj: func() runtime.Object { return &corev1.ConfigMap{} }, newList: func() runtime.Object { return &corev1.ConfigMapList{} },
			validate: validateConfigMap, validateUpdate: validateConfigMapUpdate, table: configMapTable},
		{gvk: k("Secret"), plural: "secrets", singular: "secret", namespaced: true,
			newObj: func() runtime.Object { return &corev1.Secret{} }, newList: func() runtime.Object { return &corev1.SecretList{} },
			defaults: defaultSecret, validate: validateSecret, validateUpdate: validateSecretUpdate,
			fields: secretFields, fieldNames: []string{"type"}, table: secretTable},
		{gvk: k("Event"), plural: "events", singular: "event", shortNames: []string{"ev"}, namespaced: true,
			createOnUpdate: true, nameFn: path.ValidatePathSegmentName,
			newObj: func() runtime.Object { return &corev1.Event{} }, newList: func() runtime.Object { return &corev1.EventList{} },
			fields: eventFields, fieldNames: eventFieldNames},
		{gvk: k("ServiceAccount"), plural: "serviceaccounts", singular: "serviceaccount", shortNames: []string{"sa"}, namespaced: true,
			newObj: func() runtime.Object { return &corev1.ServiceAccount{} }, newList: func() runtime.Object { return &corev1.ServiceAccountList{} }},
	}
}

func appsResources() []*resource {
	k := func(kind string) schema.GroupVersionKind { return gvApps.WithKind(kind) }
	workload := []string{subStatus, subScale}
	return []*resource{
		{gvk: k("Deployment"), plural: "deployments", singular: "deployment", shortNames: []string{"deploy"}, categories: []string{"all"},
			namespaced: true, subresources: workload, generation: true,
			newObj: func() runtime.Object { return &appsv1.Deployment{} }, newList: func() runtime.Object { return &appsv1.DeploymentList{} },
			defaults: defaultDeployment, prepareCreate: clearStatus, validate: validateDeployment, validateUpdate: validateDeploymentUpdate,
			table: deploymentTable},
		{gvk: k("ReplicaSet"), plural: "replicasets", singular: "replicaset", shortNames: []string{"rs"}, categories: []string{"all"},
			namespaced: true, subresources: workload, generation: true,
			newObj: func() runtime.Object { return &appsv1.ReplicaSet{} }, newList: func() runtime.Object { return &appsv1.ReplicaSetList{} },
			defaults: defaultReplicaSet, prepareCreate: clearStatus, validate: validateReplicaSet, validateUpdate: validateReplicaSetUpdate,
			fields: replicaSetFields, fieldNames: []string{"status.replicas"}, table: replicaSetTable},
		{gvk: k("StatefulSet"), plural: "statefulsets", singular: "statefulset", shortNames: []string{"sts"}, categories: []string{"all"},
			namespaced: true, subresources: workload, generation: true,
			newObj: func() runtime.Object { return &appsv1.StatefulSet{} }, newList: func() runtime.Object { return &appsv1.StatefulSetList{} },
			defaults: defaultStatefulSet, prepareCreate: clearStatus, validate: validateStatefulSet, validateUpdate: validateStatefulSetUpdate,
			table: statefulSetTable},
		{gvk: k("DaemonSet"), plural: "daemonsets", singular: "daemonset", shortNames: []string{"ds"}, categories: []string{"all"},
			namespaced: true, subresources: []string{subStatus}, generation: true,
			newObj: func() runtime.Object { return &appsv1.DaemonSet{} }, newList: func() runtime.Object { return &appsv1.DaemonSetList{} },
			defaults: defaultDaemonSet, prepareCreate: clearStatus, validate: validateDaemonSet, validateUpdate: validateDaemonSetUpdate,
			table: daemonSetTable},
	}
}

func otherResources() []*resource {
	return []*resource{
		{gvk: gvBatch.WithKind("Job"), plural: "jobs", singular: "job", categories: []string{"all"}, namespaced: true,
			subresources: []string{subStatus}, generation: true,
			newObj: func() runtime.Object { return &batchv1.Job{} }, newList: func() runtime.Object { return &batchv1.JobList{} },
			defaults: defaultJob, prepareCreate: prepareJob, validate: validateJob, validateUpdate: validateJobUpdate,
			fields: jobFields, fieldNames: []string{"status.successful"}, table: jobTable},
		{gvk: gvBatch.WithKind("CronJob"), plural: "cronjobs", singular: "cronjob", shortNames: []string{"cj"}, categories: []string{"all"},
			namespaced: true, subresources: []string{subStatus}, generation: true,
			newObj: func() runtime.Object { return &batchv1.CronJob{} }, newList: func() runtime.Object { return &batchv1.CronJobList{} },
			defaults: defaultCronJob, prepareCreate: clearStatus, validate: validateCronJob},
		{gvk: gvCoordination.WithKind("Lease"), plural: "leases", singular: "lease", namespaced: true, createOnUpdate: true,
			newObj: func() runtime.Object { return &coordinationv1.Lease{} }, newList: func() runtime.Object { return &coordinationv1.LeaseList{} }},
		{gvk: gvDiscovery.WithKind("EndpointSlice"), plural: "endpointslices", singular: "endpointslice", namespaced: true,
			newObj: func() runtime.Object { return &discoveryv1.EndpointSlice{} }, newList: func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
			validate: validateEndpointSlice},
		{gvk: gvAutoscaling.WithKind("HorizontalPodAutoscaler"), plural: "horizontalpodautoscalers", singular: "horizontalpodautoscaler",
			shortNames: []string{"hpa"}, categories: []string{"all"}, namespaced: true, subresources: []string{subStatus}, generation: true,
			newObj:   func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
			newList:  func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscalerList{} },
			defaults: defaultHPA, prepareCreate: clearStatus, validate: validateHPA},
		{gvk: gvNetworking.WithKind("Ingress"), plural: "ingresses", singular: "ingress", shortNames: []string{"ing"}, namespaced: true,
			subresources: []string{subStatus}, generation: true,
			newObj: func() runtime.Object { return &networkingv1.Ingress{} }, newList: func() runtime.Object { return &networkingv1.IngressList{} },
			prepareCreate: clearStatus, validate: validateIngress},
	}
}

// subresourceVerbs are the verbs discovery lists for a subresource.
func subresourceVerbs(sub string) []string {
	switch sub {
	case subBinding:
		return []string{"create"}
	case subLog:
		return []string{"get"}
	}
	return []string{"get", "patch", "update"}
}

// subresourceKind is the kind a subresource reads and writes.
func subresourceKind(r *resource, sub string) schema.GroupVersionKind {
	switch sub {
	case subScale:
		return gvAutoscalingV1.WithKind("Scale")
	case subBinding:
		return gvCore.WithKind("Binding")
	case subLog:
		return gvCore.WithKind("Pod")
	}
	return r.gvk
}
