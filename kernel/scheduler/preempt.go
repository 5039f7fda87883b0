package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Victim is a pod preemption evicts.
type Victim struct {
	Namespace, Name string
	UID             types.UID
	Priority        int32
}

// Preemption is the outcome of Profile.Preempt: the node where the pod
// fits once the victims are gone ("" when there is none).
type Preemption struct {
	Node    string
	Victims []Victim
	// Candidates is the number of nodes where preemption would work.
	Candidates int
}

// maxPreemptionCandidates bounds the nodes where victims are selected
// (kube-scheduler's DefaultPreemption: 10% of the nodes, at least 100).
func maxPreemptionCandidates(n int) int { return max(n/10, 100) }

// Preempt is kube-scheduler's DefaultPreemption PostFilter for a pod that
// fits nowhere: on each node holding pods of lower priority it asks the
// profile's filters whether the pod fits with all of them removed (a
// what-if: the snapshot loses those pods for the call, and the plugins see
// it as ordinary changes), then gives pods back, highest priority (then
// oldest) first, as long as the pod still fits; the rest are the node's
// victims. Among the candidates it picks the node whose most important
// victim has the lowest priority, then the smallest sum of victim
// priorities, then the fewest victims, then the most recently started
// most important victim. Nodes res (the attempt that found no fit)
// shows rejected for unresolvable reasons (a filter's RejectUnresolvable:
// node name, cordon, affinity, taints) are not tried. The snapshot is left
// as it was. PodDisruption-
// Budgets are not considered. The driver decides whether the pod may
// preempt (preemptionPolicy) and carries the preemption out.
func (p *Profile) Preempt(ctx context.Context, snap *Snapshot, pod *corev1.Pod, res *Result) (Preemption, error) {
	var out Preemption
	prio := priority(pod)
	cp := *pod
	cp.ManagedFields = nil
	if cp.APIVersion == "" {
		cp.APIVersion, cp.Kind = "v1", "Pod"
	}
	js, err := json.Marshal(&cp)
	if err != nil {
		return out, fmt.Errorf("encode pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	req := podRequests(pod)
	p.facts = podFacts(pod) | snap.facts()
	limit := maxPreemptionCandidates(len(snap.order))
	var best *candidate
	for _, idx := range append([]int32(nil), snap.order...) {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		if res != nil && res.unresolvable[idx] {
			continue
		}
		n := snap.nodes[idx]
		c, err := p.selectVictims(ctx, snap, pod, &req, js, prio, n)
		if err != nil {
			return out, err
		}
		if c == nil {
			continue
		}
		out.Candidates++
		if best == nil || c.better(best) {
			best = c
		}
		if out.Candidates >= limit {
			break
		}
	}
	if best == nil {
		return out, nil
	}
	out.Node = best.node.name
	for _, v := range best.victims {
		out.Victims = append(out.Victims, Victim{Namespace: v.key.namespace, Name: v.key.name, UID: v.uid, Priority: v.priority})
	}
	return out, nil
}

// candidate is a node where preemption works, with its victims (most
// important first).
type candidate struct {
	node    *nodeState
	victims []*podState
}

// better reports whether c beats o by kube-scheduler's
// pickOneNodeForPreemption criteria (without PodDisruptionBudgets).
func (c *candidate) better(o *candidate) bool {
	if len(c.victims) == 0 || len(o.victims) == 0 {
		return len(c.victims) < len(o.victims)
	}
	if a, b := c.victims[0].priority, o.victims[0].priority; a != b {
		return a < b
	}
	if a, b := c.prioritySum(), o.prioritySum(); a != b {
		return a < b
	}
	if len(c.victims) != len(o.victims) {
		return len(c.victims) < len(o.victims)
	}
	return c.victims[0].created.After(o.victims[0].created)
}

// prioritySum sums the victims' priorities, each shifted to be positive
// (as kube-scheduler does).
func (c *candidate) prioritySum() int64 {
	var sum int64
	for _, v := range c.victims {
		sum += int64(v.priority) + math.MaxInt32 + 1
	}
	return sum
}

// selectVictims returns the candidate for node n, or nil if the pod does
// not fit there even without every pod of lower priority.
func (p *Profile) selectVictims(ctx context.Context, snap *Snapshot, pod *corev1.Pod, req *requests, js []byte, prio int32, n *nodeState) (*candidate, error) {
	var lower []*podState
	for _, q := range n.pods {
		if q.priority < prio {
			lower = append(lower, q)
		}
	}
	if len(lower) == 0 {
		return nil, nil
	}
	for _, q := range lower {
		snap.detach(q)
	}
	restore := func(qs []*podState) {
		for _, q := range qs {
			snap.attach(q, n)
		}
	}
	fits, err := p.fitsOn(ctx, snap, pod, req, js, n.index)
	if err != nil || !fits {
		restore(lower)
		return nil, err
	}
	// Give pods back, most important first; those that no longer let
	// the pod fit are the victims.
	sort.SliceStable(lower, func(i, j int) bool {
		if lower[i].priority != lower[j].priority {
			return lower[i].priority > lower[j].priority
		}
		return lower[i].created.Before(lower[j].created)
	})
	c := &candidate{node: n}
	for i, q := range lower {
		snap.attach(q, n)
		ok, err := p.fitsOn(ctx, snap, pod, req, js, n.index)
		if err != nil {
			restore(lower[i+1:])
			restore(c.victims)
			return nil, err
		}
		if !ok {
			snap.detach(q)
			c.victims = append(c.victims, q)
		}
	}
	restore(c.victims)
	return c, nil
}

// fitsOn reports whether every filter of the profile passes pod on the
// node with index idx in the snapshot as it is now. Each call is a new
// attempt for the plugins (a new sequence number), since the snapshot
// changed.
func (p *Profile) fitsOn(ctx context.Context, snap *Snapshot, pod *corev1.Pod, req *requests, js []byte, idx int32) (bool, error) {
	p.podPart = appendPod(p.podPart[:0], podSeq.Add(1), pod, req, js)
	for _, f := range p.filters {
		f.skip = !relevant(f.filterWhen, p.facts)
	}
	p.cands = append(p.cands[:0], idx)
	p.pos = append(p.pos[:0], 0)
	rejected := len(p.rejected)
	err := p.filterChunk(ctx, snap)
	p.rejected = p.rejected[:rejected]
	return err == nil && len(p.cands) == 1, err
}
