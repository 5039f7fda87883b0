// Package lease tracks leases: TTL'd handles that expire unless renewed, and
// the keys attached to each.
//
// The Lessor keeps only deadlines and attachments in memory; a store backend
// persists the leases themselves and turns an expiry into deletions of the
// attached keys. Like etcd, a restart grants every surviving lease a fresh
// TTL. A Lessor is safe for concurrent use.
package lease

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// MinTTL and MaxTTL bound a lease's TTL.
const (
	MinTTL = time.Second
	MaxTTL = 10 * 365 * 24 * time.Hour
)

// Lessor holds lease deadlines and attached keys.
type Lessor struct {
	now func() time.Time

	mu     sync.Mutex
	leases map[int64]*entry
}

type entry struct {
	ttl      time.Duration
	deadline time.Time
	keys     map[string]struct{}
}

// New returns an empty Lessor reading time from now (time.Now if nil).
func New(now func() time.Time) *Lessor {
	if now == nil {
		now = time.Now
	}
	return &Lessor{now: now, leases: make(map[int64]*entry)}
}

// ValidateTTL reports ErrInvalid for a TTL outside MinTTL..MaxTTL.
func ValidateTTL(ttl time.Duration) error {
	if ttl < MinTTL || ttl > MaxTTL {
		return fmt.Errorf("lease ttl %v outside %v..%v: %w", ttl, MinTTL, MaxTTL, errdefs.ErrInvalid)
	}
	return nil
}

// Grant adds (or resets) lease id with the given TTL, expiring ttl from now.
func (l *Lessor) Grant(id int64, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.leases[id]
	if e == nil {
		e = &entry{keys: make(map[string]struct{})}
		l.leases[id] = e
	}
	e.ttl = ttl
	e.deadline = l.now().Add(ttl)
}

// Renew pushes lease id's deadline one TTL from now. A lease that is unknown
// or already past its deadline is ErrNotFound.
func (l *Lessor) Renew(id int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.leases[id]
	now := l.now()
	if e == nil || now.After(e.deadline) {
		return fmt.Errorf("renew lease %d: %w", id, errdefs.ErrNotFound)
	}
	e.deadline = now.Add(e.ttl)
	return nil
}

// Live reports whether lease id exists and has not passed its deadline.
func (l *Lessor) Live(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.leases[id]
	return e != nil && !l.now().After(e.deadline)
}

// Exists reports whether lease id is known, expired or not.
func (l *Lessor) Exists(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leases[id] != nil
}

// Attach records that key belongs to lease id; unknown leases are ignored.
func (l *Lessor) Attach(id int64, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.leases[id]; e != nil {
		e.keys[key] = struct{}{}
	}
}

// Detach forgets that key belongs to lease id.
func (l *Lessor) Detach(id int64, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.leases[id]; e != nil {
		delete(e.keys, key)
	}
}

// Keys returns the keys attached to lease id, sorted.
func (l *Lessor) Keys(id int64) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.leases[id]
	if e == nil {
		return nil
	}
	keys := make([]string, 0, len(e.keys))
	for k := range e.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Remove forgets lease id.
func (l *Lessor) Remove(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.leases, id)
}

// Expired returns the leases whose deadline has passed, in id order.
func (l *Lessor) Expired() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var ids []int64
	for id, e := range l.leases {
		if now.After(e.deadline) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
