// Package statefulset is the StatefulSet controller: pods named
// <name>-0 … <name>-(replicas-1) with spec.hostname and spec.subdomain
// (the governing serviceName) set, created in ordinal order each after the
// previous is Running and Ready and removed from the highest ordinal
// (OrderedReady), or all at once (Parallel); failed pods are replaced
// under the same name; RollingUpdate replaces pods of an old template from
// the highest ordinal down to the partition, one at a time; status
// (replicas, readyReplicas, availableReplicas, currentReplicas,
// updatedReplicas, currentRevision, updateRevision, observedGeneration).
//
// Revisions are template hashes ("<name>-<hash>", the pods'
// controller-revision-hash label); Tugboat serves no ControllerRevisions,
// so the controller cannot recreate a pod from an older template: pods
// below the partition that are deleted come back with the current one,
// and volumeClaimTemplates are not provisioned.
package statefulset

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// StatefulSets is the reconciled resource.
const StatefulSets = "statefulsets.apps"

// Pod labels the controller sets.
const (
	HashLabel     = "controller-revision-hash"
	PodNameLabel  = "statefulset.kubernetes.io/pod-name"
	PodIndexLabel = "apps.kubernetes.io/pod-index"
)

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "statefulset",
		Kinds: []string{sdk.KindController},
		Rules: []sdk.Rule{
			{Verbs: []string{"get", "list"}, Resources: []string{StatefulSets, "pods"}},
			{Verbs: []string{"create", "patch", "delete"}, Resources: []string{"pods"}},
			{Verbs: []string{"patch", "update"}, Resources: []string{StatefulSets + "/status"}},
		},
		Grants: []string{hostapi.CapClock},
	}
}

// Spec is the plugin's controller spec.
func Spec() sdk.ControllerSpec {
	return sdk.ControllerSpec{Watches: []sdk.Watch{
		{Resource: StatefulSets, Enqueue: hostapi.EnqueueSelf},
		{Resource: "pods", Enqueue: hostapi.EnqueueOwner},
	}}
}

// Controller reconciles StatefulSets.
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

// set is one reconcile's view of a StatefulSet.
type set struct {
	obj            rawjson.Value
	meta           kube.Meta
	ns             string
	replicas       int64
	parallel       bool
	updateRevision string
	currentRev     string
	owner          kube.OwnerRef
	pods           map[int64]*kube.Pod // by ordinal
}

func healthy(p *kube.Pod) bool { return p.Phase == "Running" && p.Ready && !p.Meta.Deleting }

func (s *set) revision(p *kube.Pod) string { return p.Meta.Labels[HashLabel] }

// Reconcile syncs one StatefulSet.
func (c *Controller) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	obj, err := sdk.Get(StatefulSets, req.Namespace, req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	s := &set{obj: obj, meta: kube.ReadMeta(obj), ns: req.Namespace, pods: make(map[int64]*kube.Pod)}
	selV, ok := obj.Get("spec", "selector")
	sel, err := kube.LabelSelector(selV, ok)
	if err != nil || !sel.Valid() {
		return sdk.ReconcileResult{}, nil // the API server validates
	}
	s.owner = kube.OwnerRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: s.meta.Name, UID: s.meta.UID, Controller: true, BlockOwnerDeletion: true}
	pods, err := kube.ClaimPods(req.Namespace, &s.meta, sel, s.owner)
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	for i := range pods {
		if ord, ok := ordinal(s.meta.Name, pods[i].Meta.Name); ok {
			s.pods[ord] = &pods[i]
		}
	}
	s.replicas = kube.Int(obj, 1, "spec", "replicas")
	s.parallel = kube.Str(obj, "spec", "podManagementPolicy") == "Parallel"
	tmpl, _ := obj.Get("spec", "template")
	s.updateRevision = s.meta.Name + "-" + kube.TemplateHash(tmpl, nil)
	s.currentRev = kube.Str(obj, "status", "currentRevision")
	if s.currentRev == "" {
		s.currentRev = s.updateRevision
	}
	var manageErr error
	if !s.meta.Deleting {
		manageErr = s.manage()
	}
	res, err := c.writeStatus(s)
	if manageErr != nil {
		return res, manageErr
	}
	return res, err
}

// ordinal parses the ordinal of a pod named <set>-<n>.
func ordinal(set, pod string) (int64, bool) {
	rest, ok := strings.CutPrefix(pod, set+"-")
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil && n >= 0
}

// manage takes one step (OrderedReady) or every step (Parallel) towards
// replicas pods of the update revision.
func (s *set) manage() error {
	// Failed and succeeded pods are deleted; they come back under their
	// name once gone.
	for _, p := range s.pods {
		if !p.Meta.Deleting && (p.Phase == "Failed" || p.Phase == "Succeeded") {
			if err := s.deletePod(p); err != nil {
				return err
			}
		}
	}
	for i := range s.replicas {
		p := s.pods[i]
		switch {
		case p == nil:
			created, err := sdk.CreateObject("pods", s.ns, s.podBody(i))
			if err != nil { // ErrAlreadyExists: not in the cache yet, or not ours; retried
				return err
			}
			np := kube.ReadPod(created)
			s.pods[i] = &np
			if !s.parallel {
				return nil
			}
		case !s.parallel && !healthy(p):
			return nil // wait for it to be Running and Ready
		}
	}
	// Scale down: the highest ordinals go first.
	var condemned []int64
	for ord := range s.pods {
		if ord >= s.replicas {
			condemned = append(condemned, ord)
		}
	}
	slices.Sort(condemned)
	slices.Reverse(condemned)
	for _, ord := range condemned {
		p := s.pods[ord]
		if p.Meta.Deleting {
			if !s.parallel {
				return nil // one at a time
			}
			continue
		}
		if !s.parallel && !s.othersHealthy(ord) {
			return nil
		}
		if err := s.deletePod(p); err != nil {
			return err
		}
		if !s.parallel {
			return nil
		}
	}
	if len(condemned) > 0 {
		return nil
	}
	return s.rollingUpdate()
}

// othersHealthy reports whether every pod below ord is Running and Ready.
func (s *set) othersHealthy(ord int64) bool {
	for o, p := range s.pods {
		if o < ord && !healthy(p) {
			return false
		}
	}
	return true
}

// rollingUpdate deletes the highest-ordinal pod at or above the
// partition that runs an old template, once every pod is healthy.
func (s *set) rollingUpdate() error {
	strategy := kube.Str(s.obj, "spec", "updateStrategy", "type")
	if strategy == "OnDelete" {
		return nil
	}
	partition := kube.Int(s.obj, 0, "spec", "updateStrategy", "rollingUpdate", "partition")
	for i := range s.replicas {
		if p := s.pods[i]; p == nil || !healthy(p) {
			return nil
		}
	}
	for i := s.replicas - 1; i >= partition && i >= 0; i-- {
		p := s.pods[i]
		if s.revision(p) != s.updateRevision {
			return s.deletePod(p)
		}
	}
	return nil
}

func (s *set) deletePod(p *kube.Pod) error {
	opts := []byte(`{"preconditions":{"uid":`)
	opts = append(rawjson.AppendString(opts, p.Meta.UID), "}}"...)
	err := sdk.DeleteObject("pods", s.ns, p.Meta.Name, opts)
	p.Meta.Deleting = true
	if errors.Is(err, sdk.ErrNotFound) || errors.Is(err, sdk.ErrConflict) {
		return nil
	}
	return err
}

// podBody is pod ord of the set.
func (s *set) podBody(ord int64) []byte {
	tmpl, _ := s.obj.Get("spec", "template")
	name := s.meta.Name + "-" + strconv.FormatInt(ord, 10)
	labels := kube.StringMap(mustGet(tmpl, "metadata", "labels"))
	if labels == nil {
		labels = map[string]string{}
	}
	labels[HashLabel] = s.updateRevision
	labels[PodNameLabel] = name
	labels[PodIndexLabel] = strconv.FormatInt(ord, 10)
	b := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":`)
	b = rawjson.AppendString(b, name)
	b = append(b, `,"namespace":`...)
	b = rawjson.AppendString(b, s.ns)
	b = append(b, `,"labels":`...)
	b = kube.AppendStringMap(b, labels)
	if v, ok := tmpl.Get("metadata", "annotations"); ok {
		b = append(append(b, `,"annotations":`...), v...)
	}
	b = append(b, `,"ownerReferences":[`...)
	b = kube.AppendOwnerRef(b, s.owner)
	b = append(b, `]},"spec":{"hostname":`...)
	b = rawjson.AppendString(b, name)
	if svc := kube.Str(s.obj, "spec", "serviceName"); svc != "" {
		b = append(b, `,"subdomain":`...)
		b = rawjson.AppendString(b, svc)
	}
	if spec, ok := tmpl.Get("spec"); ok {
		for k, v := range spec.Members() {
			if k == "hostname" || k == "subdomain" {
				continue
			}
			b = append(b, ',')
			b = rawjson.AppendString(b, k)
			b = append(b, ':')
			b = append(b, v...)
		}
	}
	return append(b, "}}"...)
}

func mustGet(v rawjson.Value, path ...string) rawjson.Value {
	out, _ := v.Get(path...)
	return out
}

// writeStatus patches the status if it changed; a pod ready but not yet
// available for minReadySeconds asks for a later reconcile.
func (c *Controller) writeStatus(s *set) (sdk.ReconcileResult, error) {
	minReady := time.Duration(kube.Int(s.obj, 0, "spec", "minReadySeconds")) * time.Second
	now := c.now()
	var replicas, ready, available, current, updated int64
	var wait time.Duration
	for _, p := range s.pods {
		if p.Meta.Deleting || p.Phase == "Failed" || p.Phase == "Succeeded" {
			continue
		}
		replicas++
		if p.Ready {
			ready++
		}
		if ok, w := p.Available(minReady, now); ok {
			available++
		} else if w > 0 && (wait == 0 || w < wait) {
			wait = w
		}
		switch s.revision(p) {
		case s.updateRevision:
			updated++
			if s.currentRev == s.updateRevision {
				current++
			}
		case s.currentRev:
			current++
		}
	}
	currentRev := s.currentRev
	if updated == s.replicas && replicas == s.replicas && ready == s.replicas {
		currentRev, current = s.updateRevision, updated // the rollout is complete
	}
	var result sdk.ReconcileResult
	if wait > 0 {
		result.RequeueAfterMillis = wait.Milliseconds() + 1
	}
	ints := [...]struct {
		key string
		val int64
	}{
		{"observedGeneration", s.meta.Generation}, {"replicas", replicas}, {"readyReplicas", ready},
		{"currentReplicas", current}, {"updatedReplicas", updated}, {"availableReplicas", available},
	}
	changed := kube.Str(s.obj, "status", "currentRevision") != currentRev || kube.Str(s.obj, "status", "updateRevision") != s.updateRevision
	b := []byte(`{"status":{"currentRevision":`)
	b = rawjson.AppendString(b, currentRev)
	b = append(b, `,"updateRevision":`...)
	b = rawjson.AppendString(b, s.updateRevision)
	for _, f := range ints {
		if kube.Int(s.obj, 0, "status", f.key) != f.val {
			changed = true
		}
		b = append(b, ',')
		b = rawjson.AppendString(b, f.key)
		b = append(b, ':')
		b = strconv.AppendInt(b, f.val, 10)
	}
	if !changed {
		return result, nil
	}
	b = append(b, "}}"...)
	_, err := sdk.MergePatch(StatefulSets, s.ns, s.meta.Name, "status", b)
	if errors.Is(err, sdk.ErrNotFound) {
		err = nil
	}
	return result, err
}
