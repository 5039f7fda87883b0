package apiserver

import (
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
)

// cachedObject is one object of the watch cache: its store key, its
// ModRevision and the decoded object, whose resourceVersion is rev. The
// object is shared by every request that reads it and is never modified
// after it is published (freezeObject); a change replaces the cachedObject.
type cachedObject struct {
	key string
	rev int64
	obj runtime.Object
}

func compareKey(c *cachedObject, key string) int { return strings.Compare(c.key, key) }

// objectSet holds one resource's cached objects in key order (the order a
// store list returns). It is safe for concurrent use: the watch cache's
// applier is its only writer.
type objectSet struct {
	res *resource

	mu sync.RWMutex
	// items is sorted by key. Lookups binary-search it, so no index map is
	// kept (a map would cost more memory than it saves time at this size).
	items []*cachedObject
	// applied is the revision of the last event applied to this set.
	applied int64
	// broken is set when a stored value of this resource could not be
	// decoded: the set is incomplete and its reads go to the store until a
	// relist succeeds.
	broken bool
}

// get returns the cached object of key, or nil.
func (s *objectSet) get(key string) *cachedObject {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := slices.BinarySearchFunc(s.items, key, compareKey)
	if !ok {
		return nil
	}
	return s.items[i]
}

// put inserts or replaces an object and records rev as applied.
func (s *objectSet) put(c *cachedObject, rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := slices.BinarySearchFunc(s.items, c.key, compareKey)
	if ok {
		s.items[i] = c
	} else {
		s.items = slices.Insert(s.items, i, c)
	}
	s.applied = rev
}

// remove deletes key (if cached) and records rev as applied.
func (s *objectSet) remove(key string, rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := slices.BinarySearchFunc(s.items, key, compareKey); ok {
		s.items[i] = nil
		s.items = slices.Delete(s.items, i, i+1)
	}
	s.applied = rev
}

// markBroken records an event that could not be applied.
func (s *objectSet) markBroken(rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broken, s.applied = true, rev
}

// replace installs the result of a (re)list at revision rev.
func (s *objectSet) replace(items []*cachedObject, broken bool, rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items, s.broken, s.applied = items, broken, rev
}

// snapshot returns the cached objects under prefix (in key order) and the
// revision of the last event applied to the set, or ok false if the set is
// broken. The slice is the caller's; the objects are shared and read-only.
func (s *objectSet) snapshot(prefix string) (items []*cachedObject, applied int64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.broken {
		return nil, 0, false
	}
	lo, _ := slices.BinarySearchFunc(s.items, prefix, compareKey)
	// The keys under prefix are contiguous from lo: find their end.
	n, _ := slices.BinarySearchFunc(s.items[lo:], prefix, func(c *cachedObject, p string) int {
		if strings.HasPrefix(c.key, p) {
			return -1
		}
		return strings.Compare(c.key, p)
	})
	return slices.Clone(s.items[lo : lo+n]), s.applied, true
}

// all returns the cached objects for a relist to reuse. Only the applier,
// the set's single writer, calls it, so the slice is not copied.
func (s *objectSet) all() []*cachedObject {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.items
}

// len returns the number of cached objects.
func (s *objectSet) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.items)
}
