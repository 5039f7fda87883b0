package deployment

import (
	"errors"
	"slices"
	"strconv"

	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// rollout moves the ReplicaSets one step toward the template.
func (c *Controller) rollout(d *deployment) error {
	if d.recreate {
		return recreate(d)
	}
	if d.newRS == nil {
		if err := createNewRS(d, newReplicas(d)); err != nil {
			return err
		}
	} else if err := syncRevision(d); err != nil {
		return err
	}
	if activeOld(d) == 0 {
		if d.newRS.replicas != d.desired {
			return scale(d, d.newRS, d.desired)
		}
		return nil
	}
	if n := newReplicas(d); n != d.newRS.replicas {
		if err := scale(d, d.newRS, n); err != nil {
			return err
		}
	}
	return scaleDownOld(d)
}

// newReplicas is the new ReplicaSet's size this step (Kubernetes'
// NewRSNewReplicas for RollingUpdate).
func newReplicas(d *deployment) int64 {
	cur := int64(0)
	if d.newRS != nil {
		cur = d.newRS.replicas
	}
	if cur >= d.desired {
		return d.desired
	}
	total := cur + activeOld(d)
	maxTotal := d.desired + d.surge
	if total >= maxTotal {
		return cur
	}
	return cur + min(maxTotal-total, d.desired-cur)
}

// scaleDownOld scales old ReplicaSets down as far as availability allows:
// first their unhealthy pods, then available ones above minAvailable.
func scaleDownOld(d *deployment) error {
	all := d.newRS.replicas + activeOld(d)
	minAvailable := d.desired - d.unavail
	newUnavailable := d.newRS.replicas - d.newRS.available
	maxScaledDown := all - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return nil
	}
	var cleaned int64
	for _, r := range d.old {
		if cleaned >= maxScaledDown {
			break
		}
		unhealthy := r.replicas - r.available
		if r.replicas == 0 || unhealthy <= 0 {
			continue
		}
		down := min(maxScaledDown-cleaned, unhealthy)
		if err := scale(d, r, r.replicas-down); err != nil {
			return err
		}
		cleaned += down
	}
	available := d.newRS.available
	for _, r := range d.old {
		available += r.available
	}
	if available <= minAvailable {
		return nil
	}
	total := min(available-minAvailable, maxScaledDown-cleaned)
	var done int64
	for _, r := range d.old {
		if done >= total {
			break
		}
		if r.replicas == 0 {
			continue
		}
		down := min(r.replicas, total-done)
		if err := scale(d, r, r.replicas-down); err != nil {
			return err
		}
		done += down
	}
	return nil
}

// recreate scales every old ReplicaSet to zero, waits for their pods to
// go, then brings up the new one.
func recreate(d *deployment) error {
	for _, r := range d.old {
		if r.replicas > 0 {
			if err := scale(d, r, 0); err != nil {
				return err
			}
		}
	}
	for _, r := range d.old {
		if r.status > 0 {
			return nil // the ReplicaSet controller is still deleting pods
		}
	}
	if d.newRS == nil {
		return createNewRS(d, d.desired)
	}
	if err := syncRevision(d); err != nil {
		return err
	}
	if d.newRS.replicas != d.desired {
		return scale(d, d.newRS, d.desired)
	}
	return nil
}

// syncRevision gives the new ReplicaSet the next revision when an old one
// became new again (a rollback).
func syncRevision(d *deployment) error {
	want := maxOldRevision(d) + 1
	if d.newRS.revision >= want {
		return nil
	}
	b := []byte(`{"metadata":{"annotations":{`)
	b = rawjson.AppendString(b, RevisionAnnotation)
	b = append(b, ':')
	b = rawjson.AppendString(b, kube.Itoa(want))
	b = append(b, "}}}"...)
	out, err := sdk.MergePatch(ReplicaSets, d.ns, d.newRS.meta.Name, "", b)
	if err != nil {
		return err
	}
	*d.newRS = *readRS(out)
	return nil
}

// cleanup deletes the oldest scaled-down ReplicaSets beyond
// revisionHistoryLimit.
func cleanup(d *deployment) error {
	limit := kube.Int(d.raw, defaultRevisionHistory, "spec", "revisionHistoryLimit")
	var idle []*rs
	for _, r := range d.old {
		if r.replicas == 0 && r.status == 0 && !r.meta.Deleting {
			idle = append(idle, r)
		}
	}
	if int64(len(idle)) <= limit {
		return nil
	}
	slices.SortStableFunc(idle, func(a, b *rs) int {
		if a.revision != b.revision {
			return int(a.revision - b.revision)
		}
		return a.meta.Created.Compare(b.meta.Created)
	})
	for _, r := range idle[:int64(len(idle))-limit] {
		opts := []byte(`{"propagationPolicy":"Background","preconditions":{"uid":`)
		opts = append(rawjson.AppendString(opts, r.meta.UID), "}}"...)
		if err := sdk.DeleteObject(ReplicaSets, d.ns, r.meta.Name, opts); err != nil && !errors.Is(err, sdk.ErrNotFound) && !errors.Is(err, sdk.ErrConflict) {
			return err
		}
	}
	return nil
}

// condition is one status condition.
type condition struct {
	typ, status, reason, message string
	lastUpdate, lastTransition   string
}

// writeStatus computes the status and patches it (and the deployment's
// revision annotation) if it changed.
func (c *Controller) writeStatus(d *deployment) error {
	var replicas, ready, available, updated int64
	all := d.old
	if d.newRS != nil {
		all = append(slices.Clone(d.old), d.newRS)
		updated = d.newRS.status
	}
	for _, r := range all {
		replicas += r.status
		ready += r.ready
		available += r.available
	}
	unavailable := max(d.desired-available, 0)
	gen := d.meta.Generation
	complete := d.newRS != nil && updated == d.desired && replicas == d.desired && available == d.desired

	if d.newRS != nil {
		if rev := d.newRS.meta.Annotations[RevisionAnnotation]; rev != "" && d.meta.Annotations[RevisionAnnotation] != rev {
			b := []byte(`{"metadata":{"annotations":{`)
			b = rawjson.AppendString(b, RevisionAnnotation)
			b = append(b, ':')
			b = rawjson.AppendString(b, rev)
			b = append(b, "}}}"...)
			out, err := sdk.MergePatch(Deployments, d.ns, d.meta.Name, "", b)
			if err != nil {
				return err
			}
			d.raw = out
		}
	}

	minAvailable := d.desired - d.unavail
	if d.recreate {
		minAvailable = d.desired
	}
	avail := condition{typ: "Available", status: "True", reason: "MinimumReplicasAvailable", message: "Deployment has minimum availability."}
	if available < minAvailable {
		avail = condition{typ: "Available", status: "False", reason: "MinimumReplicasUnavailable", message: "Deployment does not have minimum availability."}
	}
	old := readConditions(d.raw)
	now := c.now()
	next := statusCounts{replicas: replicas, updated: updated, ready: ready, available: available}
	prog, hasProg := c.progressing(d, old, next, complete, now)
	conds := []condition{avail}
	if hasProg {
		conds = append(conds, prog)
	}
	d.requeue = requeueStuck(d, prog, hasProg, complete, now)

	st := d.raw
	fields := [...]struct {
		key string
		val int64
	}{
		{"observedGeneration", gen}, {"replicas", replicas}, {"updatedReplicas", updated}, {"readyReplicas", ready},
		{"availableReplicas", available}, {"unavailableReplicas", unavailable},
	}
	changed := false
	for _, f := range fields {
		if kube.Int(st, 0, "status", f.key) != f.val {
			changed = true
		}
	}
	if len(old) != len(conds) {
		changed = true
	}
	for i := range conds {
		cur := &conds[i]
		prev, ok := old[cur.typ]
		if cur.lastUpdate != "" { // Progressing: timestamps decided by progressing
			if !ok || prev != *cur {
				changed = true
			}
			continue
		}
		if ok && prev.status == cur.status && prev.reason == cur.reason && prev.message == cur.message {
			cur.lastUpdate, cur.lastTransition = prev.lastUpdate, prev.lastTransition
			continue
		}
		changed = true
		cur.lastUpdate, cur.lastTransition = kube.FormatTime(now), kube.FormatTime(now)
		if ok && prev.status == cur.status {
			cur.lastTransition = prev.lastTransition
		}
	}
	if !changed {
		return nil
	}
	b := []byte(`{"status":{`)
	for _, f := range fields {
		b = rawjson.AppendString(b, f.key)
		b = append(b, ':')
		b = strconv.AppendInt(b, f.val, 10)
		b = append(b, ',')
	}
	b = append(b, `"conditions":[`...)
	for i, cd := range conds {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":`...)
		b = rawjson.AppendString(b, cd.typ)
		b = append(b, `,"status":`...)
		b = rawjson.AppendString(b, cd.status)
		b = append(b, `,"lastUpdateTime":`...)
		b = rawjson.AppendString(b, cd.lastUpdate)
		b = append(b, `,"lastTransitionTime":`...)
		b = rawjson.AppendString(b, cd.lastTransition)
		b = append(b, `,"reason":`...)
		b = rawjson.AppendString(b, cd.reason)
		b = append(b, `,"message":`...)
		b = rawjson.AppendString(b, cd.message)
		b = append(b, '}')
	}
	b = append(b, "]}}"...)
	_, err := sdk.MergePatch(Deployments, d.ns, d.meta.Name, "status", b)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	return err
}

func readConditions(obj rawjson.Value) map[string]condition {
	out := make(map[string]condition)
	v, ok := obj.Get("status", "conditions")
	if !ok {
		return out
	}
	_ = v.EachElem(func(_ int, e rawjson.Value) bool {
		cd := condition{typ: kube.Str(e, "type"), status: kube.Str(e, "status"), reason: kube.Str(e, "reason"),
			message: kube.Str(e, "message"), lastUpdate: kube.Str(e, "lastUpdateTime"), lastTransition: kube.Str(e, "lastTransitionTime")}
		out[cd.typ] = cd
		return true
	})
	return out
}
