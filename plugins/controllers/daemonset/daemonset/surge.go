package daemonset

import (
	"time"

	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
)

// RollingUpdate with maxSurge, as Kubernetes' DaemonSet controller does
// it: on up to maxSurge nodes at a time the new pod starts beside the old
// one, and the old one is deleted once the new one is available, so a
// node never lacks an available daemon pod while both work. A node whose
// old pod is not available gets its new pod at once, without counting
// against maxSurge.

// surgePods keeps at most two of a node's live pods (oldest first): the
// oldest of the current template and the oldest of an older one, the
// latter only while it is ready and the new one is not yet available
// (Kubernetes' podsShouldBeOnNode with surge). It returns the kept pods.
func surgePods(live []*kube.Pod, hash string, minReady time.Duration, now time.Time, del func(*kube.Pod)) []*kube.Pod {
	var newest, oldest *kube.Pod
	for _, p := range live {
		switch {
		case p.Meta.Labels[HashLabel] == hash && newest == nil:
			newest = p
		case p.Meta.Labels[HashLabel] != hash && oldest == nil:
			oldest = p
		default:
			del(p)
		}
	}
	if newest != nil && oldest != nil {
		if avail, _ := newest.Available(minReady, now); !oldest.Ready || avail {
			del(oldest)
			oldest = nil
		}
	}
	var kept []*kube.Pod
	for _, p := range []*kube.Pod{oldest, newest} {
		if p != nil {
			kept = append(kept, p)
		}
	}
	return kept
}

// surgeUpdate replaces old pods with surge (Kubernetes' rollingUpdate
// when maxSurge > 0): nodes with an unavailable old pod get a new pod at
// once; nodes with an available old pod get one while fewer than
// maxSurge new pods are still becoming available; an old pod goes once
// the new pod beside it is available. Old pods on nodes that should no
// longer get a daemon pod are deleted only while more pods are available
// than nodes should run them.
func surgeUpdate(hash string, names []string, states map[string]*nodeState, maxSurge int64,
	minReady time.Duration, now time.Time, del func(*kube.Pod), create func(*nodeState, string)) {
	var desired, numSurge, numAvailable int64
	var allowed, candidates []string
	var shouldNotRun []*kube.Pod
	for _, name := range names {
		st := states[name]
		if st.run {
			desired++
		}
		var newPod, oldPod *kube.Pod
		excess := false
		for i := range st.pods {
			p := &st.pods[i]
			if p.Meta.Deleting {
				continue
			}
			slot := &oldPod
			if p.Meta.Labels[HashLabel] == hash {
				slot = &newPod
			}
			if *slot != nil {
				excess = true
			}
			*slot = p
		}
		if excess { // the manage loop cleans up first
			numSurge++
			continue
		}
		available := func(p *kube.Pod) bool { ok, _ := p.Available(minReady, now); return ok }
		switch {
		case oldPod != nil && available(oldPod), oldPod == nil && newPod != nil && available(newPod):
			numAvailable++
		}
		switch {
		case oldPod == nil:
		case newPod == nil && !available(oldPod):
			if !st.run {
				del(oldPod)
				continue
			}
			allowed = append(allowed, name)
		case newPod == nil:
			if !st.run {
				shouldNotRun = append(shouldNotRun, oldPod)
				continue
			}
			candidates = append(candidates, name)
		case !available(newPod):
			numSurge++
		default:
			del(oldPod)
		}
	}
	if deletable := numAvailable - desired; deletable > 0 {
		for _, p := range shouldNotRun[:min(deletable, int64(len(shouldNotRun)))] {
			del(p)
		}
	}
	remaining := min(max(maxSurge-numSurge, 0), int64(len(candidates)))
	for _, name := range append(allowed, candidates[:remaining]...) {
		create(states[name], name)
	}
}
