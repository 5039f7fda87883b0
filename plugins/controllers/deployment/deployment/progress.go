package deployment

import (
	"math"
	"time"

	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Progressing condition reasons (Kubernetes' deployment util).
const (
	ReasonNewRSCreated     = "NewReplicaSetCreated"
	ReasonFoundNewRS       = "FoundNewReplicaSet"
	ReasonRSUpdated        = "ReplicaSetUpdated"
	ReasonNewRSAvailable   = "NewReplicaSetAvailable"
	ReasonTimedOut         = "ProgressDeadlineExceeded"
	ReasonPaused           = "DeploymentPaused"
	ReasonResumed          = "DeploymentResumed"
	progressingType        = "Progressing"
	conditionTrue          = "True"
	conditionFalse         = "False"
	conditionUnknown       = "Unknown"
	noProgressDeadlineSecs = math.MaxInt32
)

// statusCounts are the replica counts of a status that tell progress.
type statusCounts struct {
	replicas, updated, ready, available int64
}

func readCounts(obj rawjson.Value) statusCounts {
	return statusCounts{
		replicas: kube.Int(obj, 0, "status", "replicas"), updated: kube.Int(obj, 0, "status", "updatedReplicas"),
		ready: kube.Int(obj, 0, "status", "readyReplicas"), available: kube.Int(obj, 0, "status", "availableReplicas"),
	}
}

// progressDeadline is spec.progressDeadlineSeconds (the API server
// defaults it to 600); has is false without one (absent after defaulting
// only from old clients, or MaxInt32).
func progressDeadline(obj rawjson.Value) (time.Duration, bool) {
	v, ok := obj.Get("spec", "progressDeadlineSeconds")
	if !ok || v.IsNull() {
		return defaultProgressDeadline * time.Second, true
	}
	n, ok := v.Int()
	if !ok || n == noProgressDeadlineSecs {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// progressed reports whether the new status shows progress over the old
// one (Kubernetes' DeploymentProgressing).
func progressed(old, next statusCounts) bool {
	return next.updated > old.updated || next.replicas-next.updated < old.replicas-old.updated ||
		next.ready > old.ready || next.available > old.available
}

// progressing computes the Progressing condition as Kubernetes'
// syncRolloutStatus does: NewReplicaSetCreated / FoundNewReplicaSet when
// a rollout starts, ReplicaSetUpdated (lastUpdateTime moved) on each sign
// of progress, NewReplicaSetAvailable once complete, and
// ProgressDeadlineExceeded (False) when no progress was seen for
// progressDeadlineSeconds since lastUpdateTime. Without a deadline there
// is no Progressing condition (ok false).
func (c *Controller) progressing(d *deployment, old map[string]condition, next statusCounts, complete bool, now time.Time) (condition, bool) {
	deadline, has := progressDeadline(d.raw)
	if !has {
		return condition{}, false
	}
	ts := kube.FormatTime(now)
	cur, ok := old[progressingType]
	// set is Kubernetes' SetDeploymentCondition: no change for the same
	// status and reason; the transition time stays for the same status.
	set := func(status, reason, message string) {
		if ok && cur.status == status && cur.reason == reason {
			return
		}
		nc := condition{typ: progressingType, status: status, reason: reason, message: message, lastUpdate: ts, lastTransition: ts}
		if ok && cur.status == status {
			nc.lastTransition = cur.lastTransition
		}
		cur, ok = nc, true
	}
	if d.paused {
		set(conditionUnknown, ReasonPaused, "Deployment is paused")
		return cur, true
	}
	if ok && cur.reason == ReasonPaused {
		set(conditionUnknown, ReasonResumed, "Deployment is resumed")
	}
	subject := `Deployment "` + d.meta.Name + `"`
	if d.newRS != nil {
		subject = `ReplicaSet "` + d.newRS.meta.Name + `"`
		switch {
		case d.created:
			set(conditionTrue, ReasonNewRSCreated, `Created new replica set "`+d.newRS.meta.Name+`"`)
		case !ok:
			set(conditionTrue, ReasonFoundNewRS, `Found new replica set "`+d.newRS.meta.Name+`"`)
		}
	}
	if next.replicas == next.updated && ok && cur.reason == ReasonNewRSAvailable {
		return cur, true // a finished rollout: nothing to estimate
	}
	switch {
	case complete:
		set(conditionTrue, ReasonNewRSAvailable, subject+" has successfully progressed.")
	case progressed(readCounts(d.raw), next):
		nc := condition{typ: progressingType, status: conditionTrue, reason: ReasonRSUpdated, message: subject + " is progressing.",
			lastUpdate: ts, lastTransition: ts}
		if ok && cur.status == conditionTrue {
			nc.lastTransition = cur.lastTransition
		}
		cur, ok = nc, true
	case ok && timedOut(cur, deadline, now):
		set(conditionFalse, ReasonTimedOut, subject+" has timed out progressing.")
	}
	return cur, ok
}

// timedOut is Kubernetes' DeploymentTimedOut on the current condition.
func timedOut(cond condition, deadline time.Duration, now time.Time) bool {
	switch cond.reason {
	case ReasonNewRSAvailable:
		return false
	case ReasonTimedOut:
		return true
	}
	from, err := time.Parse(time.RFC3339, cond.lastUpdate)
	if err != nil {
		return false
	}
	return from.Add(deadline).Before(now)
}

// requeueStuck is when to look at a rollout again to notice that its
// deadline passed without progress (Kubernetes' requeueStuckDeployment);
// 0 when there is nothing to watch for.
func requeueStuck(d *deployment, prog condition, has bool, complete bool, now time.Time) time.Duration {
	if !has || d.paused || complete || prog.reason == ReasonNewRSAvailable || prog.reason == ReasonTimedOut {
		return 0
	}
	deadline, _ := progressDeadline(d.raw)
	from, err := time.Parse(time.RFC3339, prog.lastUpdate)
	if err != nil {
		return 0
	}
	return max(from.Add(deadline).Sub(now), 0) + time.Second
}
