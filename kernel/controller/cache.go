package controller

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// object is one cached object: its JSON as the API server sent it (with
// apiVersion and kind filled in) and the metadata the driver indexes.
type object struct {
	raw        []byte
	namespace  string
	name       string
	uid        string
	rv         uint64 // 0 if not a number
	labels     map[string]string
	owners     []ownerRef
	deleting   bool
	finalizers []string
}

type ownerRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller bool   `json:"controller"`
}

func (r ownerRef) isController() bool { return r.Controller }

// objectMeta is what decodeObject reads of an object.
type objectMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name              string            `json:"name"`
		Namespace         string            `json:"namespace"`
		UID               string            `json:"uid"`
		ResourceVersion   string            `json:"resourceVersion"`
		Labels            map[string]string `json:"labels"`
		OwnerReferences   []ownerRef        `json:"ownerReferences"`
		DeletionTimestamp *string           `json:"deletionTimestamp"`
		Finalizers        []string          `json:"finalizers"`
	} `json:"metadata"`
}

// decodeObject reads raw's metadata; a raw without kind (list items) gets
// apiVersion and kind of info prepended.
func decodeObject(info *resourceInfo, raw []byte) (*object, error) {
	var m objectMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w: %w", info.name, errdefs.ErrInvalid, err)
	}
	if m.Kind == "" && len(raw) > 1 && raw[0] == '{' {
		head := `{"apiVersion":` + strconv.Quote(info.apiVersion()) + `,"kind":` + strconv.Quote(info.kind)
		if len(raw) > 2 {
			head += ","
		}
		raw = append([]byte(head), raw[1:]...)
	}
	o := &object{
		raw: raw, namespace: m.Metadata.Namespace, name: m.Metadata.Name, uid: m.Metadata.UID,
		labels: m.Metadata.Labels, owners: m.Metadata.OwnerReferences,
		deleting: m.Metadata.DeletionTimestamp != nil, finalizers: m.Metadata.Finalizers,
	}
	o.rv, _ = strconv.ParseUint(m.Metadata.ResourceVersion, 10, 64)
	return o, nil
}

// newer reports whether o replaces old (same or unknown versions count as
// newer, so a relist always wins).
func (o *object) newer(old *object) bool {
	return old == nil || o.rv == 0 || old.rv == 0 || o.rv > old.rv || o.uid != old.uid
}

// nsIndex holds one namespace's objects of a resource, with an inverted
// index of "key=value" labels.
type nsIndex struct {
	objs    map[string]*object
	byLabel map[string]map[string]*object
}

func labelKey(k, v string) string { return k + "=" + v }

func (n *nsIndex) put(o *object) {
	if old := n.objs[o.name]; old != nil {
		n.unindex(old)
	}
	n.objs[o.name] = o
	for k, v := range o.labels {
		lk := labelKey(k, v)
		m := n.byLabel[lk]
		if m == nil {
			m = make(map[string]*object)
			n.byLabel[lk] = m
		}
		m[o.name] = o
	}
}

func (n *nsIndex) unindex(o *object) {
	for k, v := range o.labels {
		lk := labelKey(k, v)
		delete(n.byLabel[lk], o.name)
		if len(n.byLabel[lk]) == 0 {
			delete(n.byLabel, lk)
		}
	}
}

func (n *nsIndex) remove(name string) *object {
	old := n.objs[name]
	if old != nil {
		n.unindex(old)
		delete(n.objs, name)
	}
	return old
}

// resourceCache is the cache of one resource. Safe for concurrent use.
type resourceCache struct {
	info *resourceInfo
	mu   sync.RWMutex
	byNS map[string]*nsIndex
	// tombs: keys of deleted objects (seen through the watch or deleted
	// by the driver itself) with the uid removed. A uid never comes back,
	// so a late watch event or a late write result of that uid is ignored:
	// without this, a write's result processed after the watch already
	// delivered the object's deletion (a patch that removes the last
	// finalizer deletes the object) would put a deleted object back into
	// the cache for good.
	tombs    map[string]tomb
	tombSeen time.Time // last prune
	synced   bool
}

// tomb is a deleted object's uid and when it was deleted.
type tomb struct {
	uid string
	at  time.Time
}

// tombTTL bounds how long a tomb is kept: late events and write results
// arrive within moments of the deletion.
const tombTTL = time.Minute

// bury records a tomb for key, pruning old ones now and then.
func (c *resourceCache) bury(key, uid string) {
	now := time.Now()
	c.tombs[key] = tomb{uid: uid, at: now}
	if now.Sub(c.tombSeen) > tombTTL {
		for k, t := range c.tombs {
			if now.Sub(t.at) > tombTTL {
				delete(c.tombs, k)
			}
		}
		c.tombSeen = now
	}
}

func newResourceCache(info *resourceInfo) *resourceCache {
	return &resourceCache{info: info, byNS: make(map[string]*nsIndex), tombs: make(map[string]tomb)}
}

func (c *resourceCache) ns(namespace string, create bool) *nsIndex {
	n := c.byNS[namespace]
	if n == nil && create {
		n = &nsIndex{objs: make(map[string]*object), byLabel: make(map[string]map[string]*object)}
		c.byNS[namespace] = n
	}
	return n
}

// get returns the cached object or nil.
func (c *resourceCache) get(namespace, name string) *object {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if n := c.byNS[namespace]; n != nil {
		return n.objs[name]
	}
	return nil
}

// upsert stores o if it is newer than the cached object and returns the
// object it replaced and whether it stored o. Objects of a deleted uid (a
// tomb) are dropped, whether they come from the watch or a write.
func (c *resourceCache) upsert(o *object, fromWatch bool) (old *object, stored bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := o.namespace + "/" + o.name
	if t, ok := c.tombs[key]; ok {
		if t.uid == o.uid {
			return nil, false
		}
		delete(c.tombs, key)
	}
	n := c.ns(o.namespace, true)
	old = n.objs[o.name]
	if !o.newer(old) {
		return old, false
	}
	n.put(o)
	return old, true
}

// remove drops namespace/name (uid, if not empty, must match) and returns
// the removed object; a tomb remembers the uid against late events and
// write results.
func (c *resourceCache) remove(namespace, name, uid string) *object {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := namespace + "/" + name
	if uid != "" {
		c.bury(key, uid)
	}
	n := c.byNS[namespace]
	if n == nil {
		return nil
	}
	old := n.objs[name]
	if old == nil || (uid != "" && old.uid != uid) {
		return nil
	}
	n.remove(name)
	c.bury(key, old.uid)
	return old
}

// replace swaps in a full list and returns the events that turn the old
// content into the new: pairs of (old, new), new nil for deletions.
func (c *resourceCache) replace(objs []*object) [][2]*object {
	c.mu.Lock()
	defer c.mu.Unlock()
	var events [][2]*object
	seen := make(map[string]bool, len(objs))
	fresh := make(map[string]*nsIndex)
	for _, o := range objs {
		n := fresh[o.namespace]
		if n == nil {
			n = &nsIndex{objs: make(map[string]*object), byLabel: make(map[string]map[string]*object)}
			fresh[o.namespace] = n
		}
		n.put(o)
		key := o.namespace + "/" + o.name
		seen[key] = true
		var old *object
		if on := c.byNS[o.namespace]; on != nil {
			old = on.objs[o.name]
		}
		if old == nil || old.rv != o.rv || old.uid != o.uid {
			events = append(events, [2]*object{old, o})
		}
	}
	for ns, n := range c.byNS {
		for name, o := range n.objs {
			if !seen[ns+"/"+name] {
				events = append(events, [2]*object{o, nil})
			}
		}
	}
	c.byNS = fresh
	c.tombs = make(map[string]tomb)
	c.synced = true
	return events
}

// names returns the names of a namespace's objects ("" namespace: all,
// as namespace/name pairs).
func (c *resourceCache) keys(namespace string) [][2]string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out [][2]string
	for ns, n := range c.byNS {
		if namespace != "" && ns != namespace {
			continue
		}
		for name := range n.objs {
			out = append(out, [2]string{ns, name})
		}
	}
	return out
}

// list returns the objects of namespace ("" for all) matching sel, in
// namespace/name order. Equality requirements use the label index.
func (c *resourceCache) list(namespace string, sel labels.Selector) []*object {
	c.mu.RLock()
	var out []*object
	if namespace != "" {
		if n := c.byNS[namespace]; n != nil {
			out = n.match(sel, out)
		}
	} else {
		for _, n := range c.byNS {
			out = n.match(sel, out)
		}
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b *object) int {
		if a.namespace != b.namespace {
			if a.namespace < b.namespace {
				return -1
			}
			return 1
		}
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	return out
}

// match appends n's objects that match sel, starting from the smallest
// posting list of sel's equality requirements.
func (n *nsIndex) match(sel labels.Selector, out []*object) []*object {
	candidates := n.objs
	if reqs, ok := sel.Requirements(); ok {
		for _, r := range reqs {
			op := r.Operator()
			if (op != selection.Equals && op != selection.DoubleEquals && op != selection.In) || r.Values().Len() != 1 {
				continue
			}
			posting := n.byLabel[labelKey(r.Key(), r.Values().UnsortedList()[0])]
			if len(posting) < len(candidates) {
				candidates = posting
			}
		}
	}
	for _, o := range candidates {
		if sel.Matches(labels.Set(o.labels)) {
			out = append(out, o)
		}
	}
	return out
}
