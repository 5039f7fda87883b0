// Package gc is the garbage collector: it deletes objects whose owners
// (metadata.ownerReferences) are all gone, drops references to gone
// owners from objects that still have others, and finishes deletions with
// the orphan (remove the owner's references from its dependents) and
// foregroundDeletion (delete the dependents, wait for those with
// blockOwnerDeletion) finalizers.
package gc

import (
	"errors"
	"slices"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Finalizers the collector handles.
const (
	FinalizerOrphan     = "orphan"
	FinalizerForeground = "foregroundDeletion"
)

// kindInfo is the resource of an owner kind.
type kindInfo struct {
	resource   string
	namespaced bool
}

// kinds maps "group/Kind" to resources; owners of other kinds are never
// considered gone.
var kinds = map[string]kindInfo{
	"/Pod":                                  {"pods", true},
	"/ReplicationController":                {"replicationcontrollers", true},
	"/Service":                              {"services", true},
	"/Endpoints":                            {"endpoints", true},
	"/ConfigMap":                            {"configmaps", true},
	"/Secret":                               {"secrets", true},
	"/PersistentVolumeClaim":                {"persistentvolumeclaims", true},
	"/ServiceAccount":                       {"serviceaccounts", true},
	"/Node":                                 {"nodes", false},
	"/Namespace":                            {"namespaces", false},
	"apps/Deployment":                       {"deployments.apps", true},
	"apps/ReplicaSet":                       {"replicasets.apps", true},
	"apps/DaemonSet":                        {"daemonsets.apps", true},
	"apps/StatefulSet":                      {"statefulsets.apps", true},
	"apps/ControllerRevision":               {"controllerrevisions.apps", true},
	"batch/Job":                             {"jobs.batch", true},
	"batch/CronJob":                         {"cronjobs.batch", true},
	"discovery.k8s.io/EndpointSlice":        {"endpointslices.discovery.k8s.io", true},
	"autoscaling/HorizontalPodAutoscaler":   {"horizontalpodautoscalers.autoscaling", true},
	"policy/PodDisruptionBudget":            {"poddisruptionbudgets.policy", true},
	"coordination.k8s.io/Lease":             {"leases.coordination.k8s.io", true},
	"networking.k8s.io/Ingress":             {"ingresses.networking.k8s.io", true},
	"rbac.authorization.k8s.io/Role":        {"roles.rbac.authorization.k8s.io", true},
	"rbac.authorization.k8s.io/RoleBinding": {"rolebindings.rbac.authorization.k8s.io", true},
}

// watched are the resources whose objects the collector follows.
var watched = []string{
	"pods", "replicationcontrollers", "services", "endpoints", "configmaps", "secrets",
	"deployments.apps", "replicasets.apps", "daemonsets.apps", "statefulsets.apps", "controllerrevisions.apps",
	"jobs.batch", "cronjobs.batch", "endpointslices.discovery.k8s.io",
}

// lookupKind returns the resource of apiVersion/kind.
func lookupKind(apiVersion, kind string) (kindInfo, bool) {
	group := ""
	for i := range len(apiVersion) {
		if apiVersion[i] == '/' {
			group = apiVersion[:i]
			break
		}
	}
	k, ok := kinds[group+"/"+kind]
	return k, ok
}

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "garbage-collector",
		Kinds: []string{sdk.KindController},
		Rules: []sdk.Rule{{Verbs: []string{"get", "list", "patch", "delete"}, Resources: []string{"*"}}},
	}
}

// Spec is the plugin's controller spec.
func Spec() sdk.ControllerSpec {
	s := sdk.ControllerSpec{}
	for _, r := range watched {
		s.Watches = append(s.Watches, sdk.Watch{Resource: r, Enqueue: hostapi.EnqueueGC})
	}
	return s
}

// Collector is the garbage collector.
type Collector struct{}

// New returns the collector.
func New() *Collector { return &Collector{} }

// foregroundRetryMillis re-checks an owner waiting for its dependents
// (their removal also enqueues it).
const foregroundRetryMillis = 5000

// Reconcile handles one object.
func (c *Collector) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	obj, err := sdk.Get(req.Resource, req.Namespace, req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	m := kube.ReadMeta(obj)
	switch {
	case m.Deleting && m.HasFinalizer(FinalizerOrphan):
		return sdk.ReconcileResult{}, orphan(req, &m)
	case m.Deleting && m.HasFinalizer(FinalizerForeground):
		return foreground(req, &m)
	}
	return sdk.ReconcileResult{}, collect(req, &m)
}

// dependents lists the objects that name uid as an owner.
func dependents(ns, uid string) ([]rawjson.Value, error) {
	return sdk.List(sdk.ListRequest{Resource: hostapi.AllResources, Namespace: ns, FieldSelector: hostapi.FieldOwnerUID + "=" + uid})
}

// resourceOf returns the resource of an object from its apiVersion/kind.
func resourceOf(obj rawjson.Value) (string, bool) {
	k, ok := lookupKind(kube.Str(obj, "apiVersion"), kube.Str(obj, "kind"))
	return k.resource, ok
}

// orphan removes the owner's references from its dependents, then the
// orphan finalizer.
func orphan(req sdk.ReconcileRequest, m *kube.Meta) error {
	deps, err := dependents(req.Namespace, m.UID)
	if err != nil {
		return err
	}
	for _, dep := range deps {
		res, ok := resourceOf(dep)
		if !ok {
			continue
		}
		dm := kube.ReadMeta(dep)
		_, err := sdk.MergePatch(res, dm.Namespace, dm.Name, "", kube.OwnerRefsPatch(dm.UID, kube.WithoutOwner(dm.Owners, m.UID)))
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
	}
	return removeFinalizer(req, m, FinalizerOrphan)
}

// foreground deletes the dependents and removes the foregroundDeletion
// finalizer once no dependent blocks it.
func foreground(req sdk.ReconcileRequest, m *kube.Meta) (sdk.ReconcileResult, error) {
	deps, err := dependents(req.Namespace, m.UID)
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	blocking := 0
	for _, dep := range deps {
		res, ok := resourceOf(dep)
		if !ok {
			continue
		}
		dm := kube.ReadMeta(dep)
		for _, r := range dm.Owners {
			if r.UID == m.UID && r.BlockOwnerDeletion {
				blocking++
			}
		}
		if dm.Deleting {
			continue
		}
		policy := "Foreground"
		if res == "pods" {
			policy = "Background"
		}
		opts := []byte(`{"propagationPolicy":"` + policy + `","preconditions":{"uid":`)
		opts = append(rawjson.AppendString(opts, dm.UID), "}}"...)
		if err := sdk.DeleteObject(res, dm.Namespace, dm.Name, opts); err != nil && !errors.Is(err, sdk.ErrNotFound) && !errors.Is(err, sdk.ErrConflict) {
			return sdk.ReconcileResult{}, err
		}
	}
	if blocking > 0 {
		return sdk.ReconcileResult{RequeueAfterMillis: foregroundRetryMillis}, nil
	}
	return sdk.ReconcileResult{}, removeFinalizer(req, m, FinalizerForeground)
}

// collect deletes an object whose owners are all gone, or drops the
// references to gone owners when some remain.
func collect(req sdk.ReconcileRequest, m *kube.Meta) error {
	if len(m.Owners) == 0 || m.Deleting {
		return nil
	}
	var gone []string
	for _, r := range m.Owners {
		k, ok := lookupKind(r.APIVersion, r.Kind)
		if !ok {
			continue
		}
		ns := req.Namespace
		if !k.namespaced {
			ns = ""
		}
		owner, err := sdk.Get(k.resource, ns, r.Name)
		switch {
		case errors.Is(err, sdk.ErrNotFound):
			gone = append(gone, r.UID)
		case err != nil:
			return err
		case kube.ReadMeta(owner).UID != r.UID:
			gone = append(gone, r.UID)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if len(gone) < len(m.Owners) {
		keep := slices.DeleteFunc(slices.Clone(m.Owners), func(r kube.OwnerRef) bool { return slices.Contains(gone, r.UID) })
		_, err := sdk.MergePatch(req.Resource, req.Namespace, req.Name, "", kube.OwnerRefsPatch(m.UID, keep))
		if errors.Is(err, sdk.ErrNotFound) {
			return nil
		}
		return err
	}
	opts := []byte(`{"propagationPolicy":"Background","preconditions":{"uid":`)
	opts = append(rawjson.AppendString(opts, m.UID), "}}"...)
	err := sdk.DeleteObject(req.Resource, req.Namespace, req.Name, opts)
	if errors.Is(err, sdk.ErrNotFound) || errors.Is(err, sdk.ErrConflict) {
		return nil
	}
	return err
}

// removeFinalizer drops finalizer f, with the object's resourceVersion as
// precondition.
func removeFinalizer(req sdk.ReconcileRequest, m *kube.Meta, f string) error {
	rest := slices.DeleteFunc(slices.Clone(m.Finalizers), func(s string) bool { return s == f })
	b := []byte(`{"metadata":{"finalizers":`)
	if len(rest) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, s := range rest {
			if i > 0 {
				b = append(b, ',')
			}
			b = rawjson.AppendString(b, s)
		}
		b = append(b, ']')
	}
	b = append(b, `,"resourceVersion":`...)
	b = rawjson.AppendString(b, m.ResourceVersion)
	b = append(b, "}}"...)
	_, err := sdk.MergePatch(req.Resource, req.Namespace, req.Name, "", b)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	return err
}
