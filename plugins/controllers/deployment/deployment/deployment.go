// Package deployment is the Deployment controller: it creates and adopts
// ReplicaSets by pod-template hash (the pod-template-hash label), rolls
// out template changes with the RollingUpdate (maxSurge, maxUnavailable)
// or Recreate strategy, keeps revisionHistoryLimit old ReplicaSets,
// numbers revisions (deployment.kubernetes.io/revision, which kubectl
// rollout undo/history read), and writes status and conditions the way
// kubectl rollout status expects.
package deployment

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

// Resources and annotations.
const (
	Deployments = "deployments.apps"
	ReplicaSets = "replicasets.apps"

	HashLabel               = "pod-template-hash"
	RevisionAnnotation      = "deployment.kubernetes.io/revision"
	DesiredAnnotation       = "deployment.kubernetes.io/desired-replicas"
	MaxReplicasAnnotation   = "deployment.kubernetes.io/max-replicas"
	defaultRevisionHistory  = 10
	defaultProgressDeadline = 600
)

// Manifest is the plugin's manifest.
func Manifest() sdk.Manifest {
	return sdk.Manifest{
		Name:  "deployment",
		Kinds: []string{sdk.KindController},
		Rules: []sdk.Rule{
			{Verbs: []string{"get", "list"}, Resources: []string{Deployments, ReplicaSets, "pods"}},
			{Verbs: []string{"create", "update", "patch", "delete"}, Resources: []string{ReplicaSets}},
			{Verbs: []string{"patch", "update"}, Resources: []string{Deployments, Deployments + "/status"}},
		},
		Grants: []string{hostapi.CapClock},
	}
}

// Spec is the plugin's controller spec.
func Spec() sdk.ControllerSpec {
	return sdk.ControllerSpec{Watches: []sdk.Watch{
		{Resource: Deployments, Enqueue: hostapi.EnqueueSelf},
		{Resource: ReplicaSets, Enqueue: hostapi.EnqueueOwner},
	}}
}

// Controller reconciles Deployments.
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

// rs is one ReplicaSet of a deployment.
type rs struct {
	raw       rawjson.Value
	meta      kube.Meta
	replicas  int64 // spec
	status    int64 // status.replicas
	ready     int64
	available int64
	revision  int64
}

func readRS(raw rawjson.Value) *rs {
	r := &rs{raw: raw, meta: kube.ReadMeta(raw), replicas: kube.Int(raw, 1, "spec", "replicas"),
		status: kube.Int(raw, 0, "status", "replicas"), ready: kube.Int(raw, 0, "status", "readyReplicas"),
		available: kube.Int(raw, 0, "status", "availableReplicas")}
	r.revision, _ = strconv.ParseInt(r.meta.Annotations[RevisionAnnotation], 10, 64)
	return r
}

// deployment is the state of one reconcile.
type deployment struct {
	raw      rawjson.Value
	meta     kube.Meta
	ns       string
	desired  int64
	surge    int64
	unavail  int64
	recreate bool
	paused   bool
	owner    kube.OwnerRef
	hash     string
	newRS    *rs
	old      []*rs // oldest first
	// created is set when this reconcile created the new ReplicaSet.
	created bool
	// requeue is when to reconcile again to notice a stuck rollout.
	requeue time.Duration
}

// Reconcile syncs one Deployment.
func (c *Controller) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResult, error) {
	raw, err := sdk.Get(Deployments, req.Namespace, req.Name)
	if errors.Is(err, sdk.ErrNotFound) {
		return sdk.ReconcileResult{}, nil
	}
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	d := &deployment{raw: raw, meta: kube.ReadMeta(raw), ns: req.Namespace}
	if d.meta.Deleting {
		return sdk.ReconcileResult{}, nil
	}
	selRaw, ok := raw.Get("spec", "selector")
	sel, err := kube.LabelSelector(selRaw, ok)
	if err != nil || !sel.Valid() || sel.Empty {
		return sdk.ReconcileResult{}, nil // validation refuses these; nothing safe to do
	}
	d.desired = kube.Int(raw, 1, "spec", "replicas")
	d.recreate = kube.Str(raw, "spec", "strategy", "type") == "Recreate"
	d.paused = kube.Bool(raw, "spec", "paused")
	if !d.recreate {
		sv, sok := raw.Get("spec", "strategy", "rollingUpdate", "maxSurge")
		uv, uok := raw.Get("spec", "strategy", "rollingUpdate", "maxUnavailable")
		d.surge = kube.ScaledValue(sv, sok, "25%", d.desired, true)
		d.unavail = kube.ScaledValue(uv, uok, "25%", d.desired, false)
		if d.surge == 0 && d.unavail == 0 {
			d.unavail = 1
		}
		d.unavail = min(d.unavail, d.desired)
	}
	d.owner = kube.OwnerRef{APIVersion: "apps/v1", Kind: "Deployment", Name: d.meta.Name, UID: d.meta.UID, Controller: true, BlockOwnerDeletion: true}
	tmpl, _ := raw.Get("spec", "template")
	var collisions *int32
	if v, ok := raw.Get("status", "collisionCount"); ok {
		if n, ok := v.Int(); ok {
			c := int32(n)
			collisions = &c
		}
	}
	d.hash = TemplateHash(tmpl, collisions)
	all, err := claimReplicaSets(d, sel)
	if err != nil {
		return sdk.ReconcileResult{}, err
	}
	for _, r := range all {
		if r.meta.Labels[HashLabel] == d.hash && d.newRS == nil {
			d.newRS = r
		} else {
			d.old = append(d.old, r)
		}
	}
	slices.SortStableFunc(d.old, func(a, b *rs) int { return a.meta.Created.Compare(b.meta.Created) })
	// Recreate needs no proportions: recreate sizes the new ReplicaSet.
	if d.paused || (!d.recreate && isScalingEvent(d)) {
		if err := syncScale(d); err != nil {
			return sdk.ReconcileResult{}, err
		}
	} else if err := c.rollout(d); err != nil {
		return sdk.ReconcileResult{}, err
	}
	if err := cleanup(d); err != nil {
		return sdk.ReconcileResult{}, err
	}
	err = c.writeStatus(d)
	return sdk.ReconcileResult{RequeueAfterMillis: d.requeue.Milliseconds()}, err
}

// claimReplicaSets returns the ReplicaSets the deployment controls after
// adopting matching orphans and releasing non-matching ones.
func claimReplicaSets(d *deployment, sel kube.Selector) ([]*rs, error) {
	owned, err := sdk.List(sdk.ListRequest{Resource: ReplicaSets, Namespace: d.ns, FieldSelector: hostapi.FieldOwnerUID + "=" + d.meta.UID})
	if err != nil {
		return nil, err
	}
	matching, err := sdk.List(sdk.ListRequest{Resource: ReplicaSets, Namespace: d.ns, LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool)
	var out []*rs
	for _, raw := range slices.Concat(owned, matching) {
		r := readRS(raw)
		if seen[r.meta.Name] {
			continue
		}
		seen[r.meta.Name] = true
		ref, hasCtl := r.meta.ControllerRef()
		switch {
		case hasCtl && ref.UID == d.meta.UID:
			if sel.Matches(r.meta.Labels) {
				out = append(out, r)
			} else if !r.meta.Deleting {
				if _, err := sdk.MergePatch(ReplicaSets, d.ns, r.meta.Name, "", kube.OwnerRefsPatch(r.meta.UID, kube.WithoutOwner(r.meta.Owners, d.meta.UID))); err != nil && !errors.Is(err, sdk.ErrNotFound) {
					return nil, err
				}
			}
		case !hasCtl && sel.Matches(r.meta.Labels) && !r.meta.Deleting:
			refs := append(slices.Clone(r.meta.Owners), d.owner)
			if _, err := sdk.MergePatch(ReplicaSets, d.ns, r.meta.Name, "", kube.OwnerRefsPatch(r.meta.UID, refs)); err != nil {
				if errors.Is(err, sdk.ErrNotFound) {
					continue
				}
				return nil, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// activeOld sums the old ReplicaSets' spec.replicas.
func activeOld(d *deployment) int64 {
	var n int64
	for _, r := range d.old {
		n += r.replicas
	}
	return n
}

// maxOldRevision is the highest revision of the old ReplicaSets.
func maxOldRevision(d *deployment) int64 {
	var m int64
	for _, r := range d.old {
		m = max(m, r.revision)
	}
	return m
}

// scale sets r's spec.replicas (and the desired/max annotations).
func scale(d *deployment, r *rs, n int64) error {
	b := []byte(`{"metadata":{"annotations":{`)
	b = rawjson.AppendString(b, DesiredAnnotation)
	b = append(b, ':')
	b = rawjson.AppendString(b, kube.Itoa(d.desired))
	b = append(b, ',')
	b = rawjson.AppendString(b, MaxReplicasAnnotation)
	b = append(b, ':')
	b = rawjson.AppendString(b, kube.Itoa(d.desired+d.surge))
	b = append(b, `}},"spec":{"replicas":`...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, "}}"...)
	out, err := sdk.MergePatch(ReplicaSets, d.ns, r.meta.Name, "", b)
	if err != nil {
		return err
	}
	*r = *readRS(out)
	return nil
}

// createNewRS creates the ReplicaSet of the current template with n
// replicas, or takes over an existing one of that name.
func createNewRS(d *deployment, n int64) error {
	name := d.meta.Name + "-" + d.hash
	tmpl, _ := d.raw.Get("spec", "template")
	labels := kube.StringMap(mustGet(tmpl, "metadata", "labels"))
	if labels == nil {
		labels = map[string]string{}
	}
	labels[HashLabel] = d.hash
	matchLabels := kube.StringMap(mustGet(d.raw, "spec", "selector", "matchLabels"))
	if matchLabels == nil {
		matchLabels = map[string]string{}
	}
	matchLabels[HashLabel] = d.hash
	b := []byte(`{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":`)
	b = rawjson.AppendString(b, name)
	b = append(b, `,"namespace":`...)
	b = rawjson.AppendString(b, d.ns)
	b = append(b, `,"labels":`...)
	b = kube.AppendStringMap(b, labels)
	b = append(b, `,"annotations":`...)
	b = kube.AppendStringMap(b, map[string]string{
		RevisionAnnotation:    kube.Itoa(maxOldRevision(d) + 1),
		DesiredAnnotation:     kube.Itoa(d.desired),
		MaxReplicasAnnotation: kube.Itoa(d.desired + d.surge),
	})
	b = append(b, `,"ownerReferences":[`...)
	b = kube.AppendOwnerRef(b, d.owner)
	b = append(b, `]},"spec":{"replicas":`...)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, `,"minReadySeconds":`...)
	b = strconv.AppendInt(b, kube.Int(d.raw, 0, "spec", "minReadySeconds"), 10)
	b = append(b, `,"selector":{"matchLabels":`...)
	b = kube.AppendStringMap(b, matchLabels)
	if v, ok := d.raw.Get("spec", "selector", "matchExpressions"); ok {
		b = append(append(b, `,"matchExpressions":`...), v...)
	}
	b = append(b, `},"template":{"metadata":{"labels":`...)
	b = kube.AppendStringMap(b, labels)
	if v, ok := tmpl.Get("metadata", "annotations"); ok {
		b = append(append(b, `,"annotations":`...), v...)
	}
	b = append(b, `},"spec":`...)
	if v, ok := tmpl.Get("spec"); ok {
		b = append(b, v...)
	} else {
		b = append(b, "{}"...)
	}
	b = append(b, "}}}"...)
	out, err := sdk.CreateObject(ReplicaSets, d.ns, b)
	if errors.Is(err, sdk.ErrAlreadyExists) {
		existing, gerr := sdk.Get(ReplicaSets, d.ns, name)
		if gerr != nil {
			return gerr
		}
		r := readRS(existing)
		if ref, ok := r.meta.ControllerRef(); ok && ref.UID == d.meta.UID {
			d.newRS = r
			return nil
		}
		// A hash collision with someone else's ReplicaSet: bump the
		// collision count, which changes the hash, and try again.
		var cc int64
		if v, ok := d.raw.Get("status", "collisionCount"); ok {
			cc, _ = v.Int()
		}
		patch := append([]byte(`{"status":{"collisionCount":`), strconv.FormatInt(cc+1, 10)...)
		patch = append(patch, "}}"...)
		if _, err := sdk.MergePatch(Deployments, d.ns, d.meta.Name, "status", patch); err != nil {
			return err
		}
		return errors.New("replicaset " + name + " exists and is not this deployment's; collision count raised")
	}
	if err != nil {
		return err
	}
	d.newRS = readRS(out)
	d.created = true
	return nil
}

func mustGet(v rawjson.Value, path ...string) rawjson.Value {
	out, _ := v.Get(path...)
	return out
}
