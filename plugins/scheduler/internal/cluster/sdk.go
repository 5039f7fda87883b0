package cluster

import (
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
)

// NodeChanged applies a change of the SDK's node table (the arguments of
// sched.NodeWatcher.NodeChanged): cur nil removes old, otherwise cur's
// name and labels are set.
func (s *State) NodeChanged(old, cur *sched.Node) {
	if cur == nil {
		if old != nil {
			s.RemoveNode(int(old.Index))
		}
		return
	}
	if old != nil && old.Name == cur.Name && sameLabels(old.Labels, cur.Labels) && s.Has(int(cur.Index)) {
		return
	}
	s.SetNode(int(cur.Index), cur.Name, selector.MakeLabels(cur.Labels))
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// NewPod converts an SDK pod summary (its labels sorted once here).
func NewPod(p *sched.PodInfo) *Pod {
	return &Pod{
		ID:          p.ID,
		Namespace:   p.Namespace,
		Name:        p.Name,
		Labels:      selector.MakeLabels(p.Labels),
		Terminating: p.Terminating,
	}
}
