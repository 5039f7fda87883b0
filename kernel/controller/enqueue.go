package controller

import (
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// ownerIndex maps uids to cached objects and owner uids to their
// dependents. Safe for concurrent use.
type ownerIndex struct {
	mu         sync.RWMutex
	byUID      map[string]key
	dependents map[string]map[key]struct{}
}

func newOwnerIndex() *ownerIndex {
	return &ownerIndex{byUID: make(map[string]key), dependents: make(map[string]map[key]struct{})}
}

// update moves an object's entries from old to cur (either may be nil).
func (x *ownerIndex) update(res string, old, cur *object) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old != nil {
		k := key{res, old.namespace, old.name}
		if x.byUID[old.uid] == k {
			delete(x.byUID, old.uid)
		}
		for _, r := range old.owners {
			if m := x.dependents[r.UID]; m != nil {
				delete(m, k)
				if len(m) == 0 {
					delete(x.dependents, r.UID)
				}
			}
		}
	}
	if cur != nil {
		k := key{res, cur.namespace, cur.name}
		if cur.uid != "" {
			x.byUID[cur.uid] = k
		}
		for _, r := range cur.owners {
			m := x.dependents[r.UID]
			if m == nil {
				m = make(map[key]struct{})
				x.dependents[r.UID] = m
			}
			m[k] = struct{}{}
		}
	}
}

// dependentsOf returns the keys of the objects owned by uid.
func (x *ownerIndex) dependentsOf(uid string) []key {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]key, 0, len(x.dependents[uid]))
	for k := range x.dependents[uid] {
		out = append(out, k)
	}
	return out
}

func (x *ownerIndex) lookup(uid string) (key, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	k, ok := x.byUID[uid]
	return k, ok
}

// gcFinalizing reports whether o is being deleted with a finalizer the
// garbage collector handles.
func gcFinalizing(o *object) bool {
	return o != nil && o.deleting && (slices.Contains(o.finalizers, metav1.FinalizerOrphanDependents) ||
		slices.Contains(o.finalizers, metav1.FinalizerDeleteDependents))
}

// notify handles one cache change of resource info (old or cur nil for an
// addition or a deletion): it updates the owner index and enqueues the
// keys each controller's watches map it to.
func (t *term) notify(info *resourceInfo, old, cur *object) {
	t.owners.update(info.name, old, cur)
	obj := cur
	if obj == nil {
		obj = old
	}
	for c, q := range t.queues {
		for _, mode := range c.modes[info.name] {
			switch mode {
			case hostapi.EnqueueSelf:
				q.Add(key{info.name, obj.namespace, obj.name})
			case hostapi.EnqueueOwner:
				t.enqueueOwners(c, q, old, cur)
			case hostapi.EnqueueNamespace:
				t.enqueueNamespace(c, q, obj.namespace)
			case hostapi.EnqueueName:
				t.enqueueName(c, q, obj)
			case hostapi.EnqueueGC:
				t.enqueueGC(q, info, old, cur)
			}
		}
	}
}

type queue interface{ Add(key) }

// enqueueOwners enqueues the controller owners of old and cur that are
// primaries of c; an orphan enqueues every primary of its namespace.
func (t *term) enqueueOwners(c *ctrl, q queue, old, cur *object) {
	orphan := cur != nil && !cur.deleting
	for _, o := range []*object{old, cur} {
		if o == nil {
			continue
		}
		for _, r := range o.owners {
			if !r.isController() {
				continue
			}
			if o == cur {
				orphan = false
			}
			if info := t.res.forOwner(r.APIVersion, r.Kind); info != nil && c.self[info.name] {
				q.Add(key{info.name, o.namespace, r.Name})
			}
		}
	}
	if orphan {
		t.enqueueNamespace(c, q, cur.namespace)
	}
}

// enqueueNamespace enqueues every primary of c in namespace ("" for all).
func (t *term) enqueueNamespace(c *ctrl, q queue, namespace string) {
	for res := range c.self {
		cache := t.caches[res]
		if cache == nil {
			continue
		}
		ns := namespace
		if !cache.info.namespaced {
			ns = ""
		}
		for _, nn := range cache.keys(ns) {
			q.Add(key{res, nn[0], nn[1]})
		}
	}
}

// enqueueName enqueues the primaries of c named like obj.
func (t *term) enqueueName(c *ctrl, q queue, obj *object) {
	for res := range c.self {
		ns := obj.namespace
		if cache := t.caches[res]; cache != nil && !cache.info.namespaced {
			ns = ""
		}
		q.Add(key{res, ns, obj.name})
	}
}

// enqueueGC is the garbage collector's mapping (hostapi.EnqueueGC).
func (t *term) enqueueGC(q queue, info *resourceInfo, old, cur *object) {
	if old != nil && cur != nil && old.uid == cur.uid && old.deleting == cur.deleting &&
		slices.Equal(old.owners, cur.owners) && slices.Equal(old.finalizers, cur.finalizers) {
		return // nothing the collector looks at changed (a status update)
	}
	if cur != nil && (len(cur.owners) > 0 || gcFinalizing(cur)) {
		q.Add(key{info.name, cur.namespace, cur.name})
	}
	obj := cur
	if obj == nil {
		obj = old
	}
	startedDeleting := cur == nil || (cur.deleting && (old == nil || !old.deleting)) ||
		(gcFinalizing(cur) && !gcFinalizing(old))
	if startedDeleting {
		for _, k := range t.owners.dependentsOf(obj.uid) {
			q.Add(k)
		}
	}
	if cur == nil {
		for _, r := range old.owners {
			if k, ok := t.owners.lookup(r.UID); ok {
				q.Add(k)
			}
		}
	}
}
