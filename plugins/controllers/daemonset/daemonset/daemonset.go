// Package daemonset is the DaemonSet controller: it keeps one pod of the
// template on every node the pod may run on (nodeSelector, required node
// affinity, taints against the template's tolerations plus the ones
// Kubernetes adds to daemon pods), deletes pods from nodes that stopped
// qualifying (a relabelled node loses its daemon pod), replaces old pods
// under RollingUpdate — in place within maxUnavailable, or with maxSurge
// by starting the new pod beside the old one and deleting the old one
// once the new one is available — and writes status.
//
// Pods carry the controller-revision-hash label (a hash of the template;
// Tugboat serves no ControllerRevisions) and a required node affinity on
// their node's name, which the scheduler honours, as in Kubernetes.
package daemonset

import (
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// DaemonSets is the reconciled resource.
const DaemonSets = "daemonsets.apps"

// HashLabel is the label with the template hash of a pod.
const HashLabel = "controller-revision-hash"

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "daemonset",
		Kinds: []string{sdk.KindController},
		Rules: []sdk.Rule{
			{Verbs: []string{"get", "list"}, Resources: []string{DaemonSets, "pods", "nodes"}},
			{Verbs: []string{"create", "patch", "delete"}, Resources: []string{"pods"}},
			{Verbs: []string{"patch", "update"}, Resources: []string{DaemonSets + "/status"}},
		},
		Grants: []string{hostapi.CapClock},
	}
}

// Spec is the plugin's controller spec: node changes re-check every
// DaemonSet.
func Spec() sdk.ControllerSpec {
	return sdk.ControllerSpec{Watches: []sdk.Watch{
		{Resource: DaemonSets, Enqueue: hostapi.EnqueueSelf},
		{Resource: "pods", Enqueue: hostapi.EnqueueOwner},
		{Resource: "nodes", Enqueue: hostapi.EnqueueNamespace},
	}}
}

// Controller reconciles DaemonSets.
type Controller struct {
	// Now is the clock (sdk.Now by default; tests set it).
	Now func() time.Time
}

// New returns the controller.
func New() *Controller { return &Controller{} }

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	t, err := sdk.Now()
	if err != nil {
		return time.Now()
	}
	return t
}

// nodeState is one node's daemon pods and whether they belong there.
type nodeState struct {
	node      *node
	run, keep bool
	pods      []kube.Pod
}

// Reconcile syncs one DaemonSet.
func (c *Controller) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	ds, err := sdk.Get(DaemonSets, req.Namespace, req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	meta := kube.ReadMeta(ds)
	selV, ok := ds.Get("spec", "selector")
	sel, err := kube.LabelSelector(selV, ok)
	if err != nil || !sel.Valid() {
		return sdk.ReconcileResult{}, nil // the API server validates
	}
	tmpl, _ := ds.Get("spec", "template")
	spec, _ := tmpl.Get("spec")
	hash := kube.TemplateHash(tmpl, nil)
	owner := kube.OwnerRef{APIVersion: "apps/v1", Kind: "DaemonSet", Name: meta.Name, UID: meta.UID, Controller: true, BlockOwnerDeletion: true}
	pods, err := kube.ClaimPods(req.Namespace, &meta, sel, owner)
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	rawNodes, err := sdk.List(sdk.ListRequest{Resource: "nodes"})
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	tols := podTolerations(spec)
	states := make(map[string]*nodeState, len(rawNodes))
	names := make([]string, 0, len(rawNodes))
	for _, raw := range rawNodes {
		n := readNode(raw)
		st := &nodeState{node: &n}
		st.run, st.keep = placement(&n, spec, tols)
		states[n.name] = st
		names = append(names, n.name)
	}
	var orphaned []kube.Pod // pods for nodes that do not exist
	for _, p := range pods {
		if st := states[targetNode(p.Raw)]; st != nil {
			st.pods = append(st.pods, p)
		} else {
			orphaned = append(orphaned, p)
		}
	}
	now := c.now()
	minReady := time.Duration(kube.Int(ds, 0, "spec", "minReadySeconds")) * time.Second
	var manageErr error
	if !meta.Deleting {
		manageErr = c.manage(req.Namespace, ds, &meta, owner, hash, names, states, orphaned, minReady, now)
	}
	res, err := writeStatus(ds, &meta, hash, names, states, minReady, now)
	if manageErr != nil {
		return res, manageErr
	}
	return res, err
}

// manage creates the missing daemon pods, deletes the misplaced, failed
// and duplicate ones, and rolls out the template.
func (c *Controller) manage(ns string, ds rawjson.Value, meta *kube.Meta, owner kube.OwnerRef, hash string,
	names []string, states map[string]*nodeState, orphaned []kube.Pod, minReady time.Duration, now time.Time) error {
	var errs []error
	del := func(p *kube.Pod) {
		if err := kube.DeletePod(ns, p); err != nil {
			errs = append(errs, err)
		}
		p.Meta.Deleting = true
	}
	for i := range orphaned {
		if !orphaned[i].Meta.Deleting {
			del(&orphaned[i])
		}
	}
	tmpl, _ := ds.Get("spec", "template")
	create := func(st *nodeState, name string) {
		created, err := sdk.CreateObject("pods", ns, podBody(ns, tmpl, owner, hash, name))
		if err != nil {
			errs = append(errs, err)
			return
		}
		st.pods = append(st.pods, kube.ReadPod(created))
	}
	maxSurge, maxUnavailable := updateCounts(ds, names, states)
	for _, name := range names {
		st := states[name]
		var live []*kube.Pod
		for i := range st.pods {
			p := &st.pods[i]
			switch {
			case p.Meta.Deleting:
			case !st.keep:
				del(p)
			case p.Phase == "Failed" || p.Phase == "Succeeded":
				// Kubernetes deletes failed daemon pods so that they are
				// created again.
				del(p)
			default:
				live = append(live, p)
			}
		}
		if len(live) > 1 {
			slices.SortFunc(live, func(a, b *kube.Pod) int { return a.Meta.Created.Compare(b.Meta.Created) })
			if maxSurge > 0 {
				live = surgePods(live, hash, minReady, now, del)
			} else { // keep the oldest
				for _, p := range live[1:] {
					del(p)
				}
				live = live[:1]
			}
		}
		// A pod still terminating on the node is waited for (its
		// deletion enqueues the DaemonSet again).
		terminating := slices.ContainsFunc(st.pods, func(p kube.Pod) bool { return p.Meta.Deleting })
		if st.run && len(live) == 0 && !terminating {
			create(st, name)
		}
	}
	switch {
	case kube.Str(ds, "spec", "updateStrategy", "type") == "OnDelete":
	case maxSurge > 0:
		surgeUpdate(hash, names, states, maxSurge, minReady, now, del, create)
	default:
		rollingUpdate(hash, names, states, maxUnavailable, minReady, now, del)
	}
	return errors.Join(errs...)
}

// updateCounts are the RollingUpdate's maxSurge and maxUnavailable over
// the nodes that should run a pod (both rounded up, as Kubernetes'
// SurgeCount and UnavailableCount; with neither, maxUnavailable is 1).
func updateCounts(ds rawjson.Value, names []string, states map[string]*nodeState) (maxSurge, maxUnavailable int64) {
	if kube.Str(ds, "spec", "updateStrategy", "type") == "OnDelete" {
		return 0, 0
	}
	desired := int64(0)
	for _, name := range names {
		if states[name].run {
			desired++
		}
	}
	v, ok := ds.Get("spec", "updateStrategy", "rollingUpdate", "maxSurge")
	maxSurge = kube.ScaledValue(v, ok, "0", desired, true)
	v, ok = ds.Get("spec", "updateStrategy", "rollingUpdate", "maxUnavailable")
	maxUnavailable = kube.ScaledValue(v, ok, "1", desired, true)
	if maxSurge <= 0 && maxUnavailable <= 0 {
		maxUnavailable = 1
	}
	return max(maxSurge, 0), max(maxUnavailable, 0)
}

// rollingUpdate deletes pods of old templates: unavailable ones at once,
// available ones while fewer than maxUnavailable nodes lack an available
// daemon pod; the manage loop then creates the new pods in their place.
func rollingUpdate(hash string, names []string, states map[string]*nodeState, maxUnavailable int64,
	minReady time.Duration, now time.Time, del func(*kube.Pod)) {
	maxUnavailable = max(maxUnavailable, 1)
	unavailable := int64(0)
	var oldAvailable []*kube.Pod
	for _, name := range names {
		st := states[name]
		if !st.run {
			continue // nothing would replace a pod deleted here
		}
		avail := false
		for i := range st.pods {
			p := &st.pods[i]
			if p.Meta.Deleting {
				continue
			}
			ok, _ := p.Available(minReady, now)
			if p.Meta.Labels[HashLabel] != hash {
				if ok {
					oldAvailable = append(oldAvailable, p)
				} else {
					del(p)
					continue
				}
			}
			avail = avail || ok
		}
		if !avail {
			unavailable++
		}
	}
	slices.SortFunc(oldAvailable, func(a, b *kube.Pod) int { return compareStr(targetNode(a.Raw), targetNode(b.Raw)) })
	for _, p := range oldAvailable {
		if unavailable >= maxUnavailable {
			return
		}
		del(p)
		unavailable++
	}
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// podBody is the daemon pod for nodeName.
func podBody(ns string, tmpl rawjson.Value, owner kube.OwnerRef, hash, nodeName string) []byte {
	labels := kube.StringMap(mustGet(tmpl, "metadata", "labels"))
	if labels == nil {
		labels = map[string]string{}
	}
	labels[HashLabel] = hash
	b := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":`)
	b = rawjson.AppendString(b, owner.Name+"-")
	b = append(b, `,"namespace":`...)
	b = rawjson.AppendString(b, ns)
	b = append(b, `,"labels":`...)
	b = kube.AppendStringMap(b, labels)
	if v, ok := tmpl.Get("metadata", "annotations"); ok {
		b = append(append(b, `,"annotations":`...), v...)
	}
	b = append(b, `,"ownerReferences":[`...)
	b = kube.AppendOwnerRef(b, owner)
	b = append(b, `]},"spec":`...)
	spec, ok := tmpl.Get("spec")
	if !ok {
		spec = rawjson.Value("{}")
	}
	b = append(b, podSpec(spec, nodeName)...)
	return append(b, '}')
}

func mustGet(v rawjson.Value, path ...string) rawjson.Value {
	out, _ := v.Get(path...)
	return out
}

// writeStatus patches the status if it changed; a pod ready but not yet
// available for minReadySeconds asks for a later reconcile.
func writeStatus(ds rawjson.Value, meta *kube.Meta, hash string, names []string, states map[string]*nodeState,
	minReady time.Duration, now time.Time) (sdk.ReconcileResult, error) {
	var desired, current, misscheduled, ready, updated, available int64
	var wait time.Duration
	for _, name := range names {
		st := states[name]
		var pod *kube.Pod
		for i := range st.pods {
			if !st.pods[i].Meta.Deleting {
				pod = &st.pods[i]
				break
			}
		}
		if st.run {
			desired++
		}
		if pod == nil {
			continue
		}
		if !st.run {
			misscheduled++
			continue
		}
		current++
		if pod.Ready {
			ready++
		}
		if pod.Meta.Labels[HashLabel] == hash {
			updated++
		}
		if ok, w := pod.Available(minReady, now); ok {
			available++
		} else if w > 0 && (wait == 0 || w < wait) {
			wait = w
		}
	}
	var result sdk.ReconcileResult
	if wait > 0 {
		result.RequeueAfterMillis = wait.Milliseconds() + 1
	}
	st := [...]struct {
		key string
		val int64
	}{
		{"currentNumberScheduled", current}, {"numberMisscheduled", misscheduled}, {"desiredNumberScheduled", desired},
		{"numberReady", ready}, {"observedGeneration", meta.Generation}, {"updatedNumberScheduled", updated},
		{"numberAvailable", available}, {"numberUnavailable", desired - available},
	}
	changed := false
	for _, f := range st {
		if kube.Int(ds, 0, "status", f.key) != f.val {
			changed = true
		}
	}
	if !changed {
		return result, nil
	}
	b := []byte(`{"status":{`)
	for i, f := range st {
		if i > 0 {
			b = append(b, ',')
		}
		b = rawjson.AppendString(b, f.key)
		b = append(b, ':')
		b = strconv.AppendInt(b, f.val, 10)
	}
	b = append(b, "}}"...)
	_, err := sdk.MergePatch(DaemonSets, meta.Namespace, meta.Name, "status", b)
	if errors.Is(err, sdk.ErrNotFound) {
		err = nil
	}
	return result, err
}
