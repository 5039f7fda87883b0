package deployment

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// Scaling a Deployment mid-rollout changes the size of every active
// ReplicaSet in proportion to its share, as Kubernetes does (its
// isScalingEvent, scale, GetProportion): each ReplicaSet records the
// deployment's replicas and replicas+maxSurge it was last sized for
// (DesiredAnnotation, MaxReplicasAnnotation); a desired count differing
// from the deployment's is a scaling event, handled before any rollout
// step.

// active returns the ReplicaSets with replicas (new one last).
func active(d *deployment) []*rs {
	var out []*rs
	for _, r := range d.old {
		if r.replicas > 0 {
			out = append(out, r)
		}
	}
	if d.newRS != nil && d.newRS.replicas > 0 {
		out = append(out, d.newRS)
	}
	return out
}

// isScalingEvent reports whether an active ReplicaSet was sized for
// another replica count than the deployment's.
func isScalingEvent(d *deployment) bool {
	if d.newRS == nil {
		return false
	}
	for _, r := range active(d) {
		v, ok := r.meta.Annotations[DesiredAnnotation]
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n != d.desired {
			return true
		}
	}
	return false
}

// syncScale resizes the ReplicaSets to the deployment's replicas without
// moving the rollout (Kubernetes' DeploymentController.scale): the only
// active one (or the newest) takes them all; a saturated new ReplicaSet
// ends the old ones; otherwise, for RollingUpdate, the change up to
// replicas+maxSurge is spread over the active ReplicaSets in proportion
// to their sizes, leftovers to the largest.
func syncScale(d *deployment) error {
	all := active(d)
	switch len(all) {
	case 0:
		target := d.newRS
		if target == nil && len(d.old) > 0 {
			target = d.old[len(d.old)-1]
		}
		if target == nil || (target.replicas == d.desired && sizedFor(d, target)) {
			return nil
		}
		return scale(d, target, d.desired)
	case 1:
		if all[0].replicas == d.desired && sizedFor(d, all[0]) {
			return nil
		}
		// (Also when only the annotations are stale: Kubernetes leaves
		// them, and the scaling event would then hold the rollout.)
		return scale(d, all[0], d.desired)
	}
	if saturated(d) {
		for _, r := range all {
			if r != d.newRS {
				if err := scale(d, r, 0); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if d.recreate {
		return nil
	}
	var total int64
	for _, r := range all {
		total += r.replicas
	}
	var allowed int64
	if d.desired > 0 {
		allowed = d.desired + d.surge
	}
	toAdd := allowed - total
	// Larger first; among equals, newer first when adding and older
	// first when removing.
	slices.SortStableFunc(all, func(a, b *rs) int {
		if a.replicas != b.replicas {
			return int(b.replicas - a.replicas)
		}
		byAge := a.meta.Created.Compare(b.meta.Created)
		if byAge == 0 {
			byAge = strings.Compare(a.meta.Name, b.meta.Name)
		}
		if toAdd > 0 {
			return -byAge
		}
		return byAge
	})
	sizes := make([]int64, len(all))
	var added int64
	for i, r := range all {
		p := proportion(d, r, toAdd, added)
		sizes[i] = r.replicas + p
		added += p
	}
	if toAdd != 0 {
		sizes[0] = max(sizes[0]+toAdd-added, 0)
	}
	for i, r := range all {
		if err := scale(d, r, sizes[i]); err != nil {
			return err
		}
	}
	return nil
}

// sizedFor reports whether r's annotations record the deployment's
// current replicas.
func sizedFor(d *deployment, r *rs) bool {
	return r.meta.Annotations[DesiredAnnotation] == strconv.FormatInt(d.desired, 10)
}

// saturated reports whether the new ReplicaSet has all the deployment's
// replicas, available (Kubernetes' IsSaturated).
func saturated(d *deployment) bool {
	r := d.newRS
	if r == nil {
		return false
	}
	desired, err := strconv.ParseInt(r.meta.Annotations[DesiredAnnotation], 10, 64)
	return err == nil && desired == d.desired && r.replicas == d.desired && r.available == d.desired
}

// proportion is how many replicas r gains (or loses, negative) of toAdd,
// added being what the ReplicaSets before it took (GetProportion).
func proportion(d *deployment, r *rs, toAdd, added int64) int64 {
	if r.replicas == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	frac := fraction(d, r)
	allowed := toAdd - added
	if toAdd > 0 {
		return min(frac, allowed)
	}
	return max(frac, allowed)
}

// fraction is r's change were it resized from the max-replicas it was
// sized for to the deployment's replicas+maxSurge
// (getReplicaSetFraction).
func fraction(d *deployment, r *rs) int64 {
	if d.desired == 0 {
		return -r.replicas
	}
	maxReplicas := d.desired + d.surge
	before, err := strconv.ParseInt(r.meta.Annotations[MaxReplicasAnnotation], 10, 64)
	if err != nil || before == 0 {
		before = maxReplicas
	}
	return int64(math.Floor(float64(r.replicas*maxReplicas)/float64(before)+0.5)) - r.replicas
}
