// Package replicaset is the ReplicaSet and ReplicationController
// controller: it keeps spec.replicas active pods matching the selector,
// adopts matching orphans, releases pods whose labels stopped matching,
// and writes status (replicas, fullyLabeledReplicas, readyReplicas,
// availableReplicas, observedGeneration).
package replicaset

import (
	"errors"
	"slices"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Resources the controller reconciles.
const (
	ReplicaSets            = "replicasets.apps"
	ReplicationControllers = "replicationcontrollers"
)

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "replicaset",
		Kinds: []string{sdk.KindController},
		Rules: []sdk.Rule{
			{Verbs: []string{"get", "list"}, Resources: []string{ReplicaSets, ReplicationControllers, "pods"}},
			{Verbs: []string{"create", "patch", "delete"}, Resources: []string{"pods"}},
			{Verbs: []string{"patch", "update"}, Resources: []string{ReplicaSets + "/status", ReplicationControllers + "/status"}},
		},
		Grants: []string{hostapi.CapClock},
	}
}

// Spec is the plugin's controller spec.
func Spec() sdk.ControllerSpec {
	return sdk.ControllerSpec{Watches: []sdk.Watch{
		{Resource: ReplicaSets, Enqueue: hostapi.EnqueueSelf},
		{Resource: ReplicationControllers, Enqueue: hostapi.EnqueueSelf},
		{Resource: "pods", Enqueue: hostapi.EnqueueOwner},
	}}
}

// Controller reconciles ReplicaSets and ReplicationControllers.
type Controller struct {
	// Now is the clock (sdk.Now by default; tests set it).
	Now func() time.Time
	// BurstCreates bounds the pods created per reconcile (default 500).
	BurstCreates int
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

// kind describes the owner kind of a resource.
type kind struct{ apiVersion, kind string }

var kinds = map[string]kind{
	ReplicaSets:            {"apps/v1", "ReplicaSet"},
	ReplicationControllers: {"v1", "ReplicationController"},
}

// Reconcile syncs one ReplicaSet or ReplicationController.
func (c *Controller) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	k, ok := kinds[req.Resource]
	if !ok {
		return sdk.ReconcileResult{}, errors.New("replicaset: unexpected resource " + req.Resource)
	}
	obj, err := sdk.Get(req.Resource, req.Namespace, req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil // the garbage collector deletes its pods
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	meta := kube.ReadMeta(obj)
	var sel kube.Selector
	tmplLabels, _ := obj.Get("spec", "template", "metadata", "labels")
	if k.kind == "ReplicaSet" {
		v, ok := obj.Get("spec", "selector")
		if sel, err = kube.LabelSelector(v, ok); err != nil {
			return sdk.ReconcileResult{}, nil // the API server validates; nothing to do
		}
	} else {
		m := kube.StringMap(mustGet(obj, "spec", "selector"))
		if len(m) == 0 {
			m = kube.StringMap(tmplLabels)
		}
		sel = kube.MapSelector(m)
	}
	owner := kube.OwnerRef{APIVersion: k.apiVersion, Kind: k.kind, Name: meta.Name, UID: meta.UID, Controller: true, BlockOwnerDeletion: true}
	pods, err := kube.ClaimPods(req.Namespace, &meta, sel, owner)
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	replicas := kube.Int(obj, 1, "spec", "replicas")
	active := pods[:0:0]
	for i := range pods {
		if pods[i].Active() {
			active = append(active, pods[i])
		}
	}
	var manageErr error
	if !meta.Deleting {
		active, manageErr = c.manage(req.Namespace, obj, owner, active, replicas)
	}
	res, err := c.writeStatus(req.Resource, obj, &meta, active, kube.MapSelector(kube.StringMap(tmplLabels)))
	if manageErr != nil {
		return res, manageErr
	}
	return res, err
}

func mustGet(v rawjson.Value, path ...string) rawjson.Value {
	out, _ := v.Get(path...)
	return out
}

// manage creates or deletes pods so that replicas are active, returning
// the active pods afterwards.
func (c *Controller) manage(ns string, obj rawjson.Value, owner kube.OwnerRef, active []kube.Pod, replicas int64) ([]kube.Pod, error) {
	diff := int64(len(active)) - replicas
	switch {
	case diff < 0:
		burst := int64(c.BurstCreates)
		if burst <= 0 {
			burst = 500
		}
		body := podBody(ns, obj, owner)
		for range min(-diff, burst) {
			created, err := sdk.CreateObject("pods", ns, body)
			if err != nil {
				return active, err
			}
			active = append(active, kube.ReadPod(created))
		}
	case diff > 0:
		slices.SortFunc(active, func(a, b kube.Pod) int {
			if kube.DeleteFirst(&a, &b) {
				return -1
			}
			if kube.DeleteFirst(&b, &a) {
				return 1
			}
			return 0
		})
		for _, p := range active[:diff] {
			opts := []byte(`{"preconditions":{"uid":`)
			opts = append(rawjson.AppendString(opts, p.Meta.UID), "}}"...)
			if err := sdk.DeleteObject("pods", ns, p.Meta.Name, opts); err != nil && !errors.Is(err, sdk.ErrNotFound) && !errors.Is(err, sdk.ErrConflict) {
				return active, err
			}
		}
		active = active[diff:]
	}
	return active, nil
}

// podBody is the pod to create from obj's template.
func podBody(ns string, obj rawjson.Value, owner kube.OwnerRef) []byte {
	b := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":`)
	b = rawjson.AppendString(b, owner.Name+"-")
	b = append(b, `,"namespace":`...)
	b = rawjson.AppendString(b, ns)
	if v, ok := obj.Get("spec", "template", "metadata", "labels"); ok {
		b = append(append(b, `,"labels":`...), v...)
	}
	if v, ok := obj.Get("spec", "template", "metadata", "annotations"); ok {
		b = append(append(b, `,"annotations":`...), v...)
	}
	b = append(b, `,"ownerReferences":[`...)
	b = kube.AppendOwnerRef(b, owner)
	b = append(b, `]},"spec":`...)
	if v, ok := obj.Get("spec", "template", "spec"); ok {
		b = append(b, v...)
	} else {
		b = append(b, "{}"...)
	}
	return append(b, '}')
}

// writeStatus patches the status if it changed; a pod that is ready but
// not yet available for minReadySeconds asks for a later reconcile.
func (c *Controller) writeStatus(res string, obj rawjson.Value, meta *kube.Meta, active []kube.Pod, tmpl kube.Selector) (sdk.ReconcileResult, error) {
	minReady := time.Duration(kube.Int(obj, 0, "spec", "minReadySeconds")) * time.Second
	var now time.Time
	if minReady > 0 {
		now = c.now()
	}
	var ready, available, labeled int64
	var wait time.Duration
	for i := range active {
		p := &active[i]
		if p.Ready {
			ready++
		}
		if ok, w := p.Available(minReady, now); ok {
			available++
		} else if w > 0 && (wait == 0 || w < wait) {
			wait = w
		}
		if tmpl.Matches(p.Meta.Labels) {
			labeled++
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
		{"replicas", int64(len(active))}, {"fullyLabeledReplicas", labeled}, {"readyReplicas", ready},
		{"availableReplicas", available}, {"observedGeneration", meta.Generation},
	}
	changed := false
	for _, f := range st {
		if kube.Int(obj, 0, "status", f.key) != f.val {
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
		b = append(b, kube.Itoa(f.val)...)
	}
	b = append(b, "}}"...)
	_, err := sdk.MergePatch(res, meta.Namespace, meta.Name, "status", b)
	if errors.Is(err, sdk.ErrNotFound) {
		err = nil
	}
	return result, err
}
