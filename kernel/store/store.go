// Package store defines Tugboat's consistent key-value store: the contract
// every backend (Badger by default, etcd for HA) satisfies, the key layout, and
// the types that flow through watches.
//
// Every write is assigned the next value of one global, monotonically
// increasing revision; that revision is the Kubernetes resourceVersion. A
// write is acknowledged only once it is durable (it survives kill -9 and a
// machine crash). Backends are safe for concurrent use.
//
// Errors are the categories of kernel/errdefs: ErrNotFound, ErrAlreadyExists,
// ErrConflict (failed revision precondition), ErrInvalid (bad key, option or
// revision), ErrTooLarge (value over the configured limit), ErrGone (revision
// compacted), ErrFutureRevision, ErrUnavailable (store closed).
package store

import (
	"context"
	"time"
)

// KV is one stored key at one revision.
type KV struct {
	Key   string
	Value []byte
	// CreateRevision is the revision at which the key was (last) created.
	CreateRevision int64
	// ModRevision is the revision of the last write to the key.
	ModRevision int64
	// Lease is the lease the key is attached to, or 0.
	Lease int64
}

// EventType says what happened to a key.
type EventType uint8

// Event types. Bookmark carries only a Revision: every event up to and
// including it has been delivered.
const (
	Added EventType = iota + 1
	Modified
	Deleted
	Bookmark
)

func (t EventType) String() string {
	switch t {
	case Added:
		return "ADDED"
	case Modified:
		return "MODIFIED"
	case Deleted:
		return "DELETED"
	case Bookmark:
		return "BOOKMARK"
	}
	return "UNKNOWN"
}

// Event is one change delivered by a watch.
//
// For Added and Modified, KV is the new state. For Deleted, KV holds the last
// value the key had (its ModRevision is that value's revision). PrevValue is
// the value before this event (nil for Added); Revision is the revision of the
// change itself.
type Event struct {
	Type      EventType
	Revision  int64
	KV        KV
	PrevValue []byte
}

// ListOptions selects a page of keys under a prefix.
type ListOptions struct {
	// StartKey, if set, is the first key (inclusive) to return; it must lie
	// under the prefix. Callers continue a list with the key after the last
	// one they received (last + "\x00").
	StartKey string
	// Limit caps the number of keys returned; 0 means no limit.
	Limit int
	// Revision reads the state as of that revision (a consistent snapshot for
	// paging); 0 reads the current state. A compacted revision is ErrGone, a
	// revision not yet written is ErrFutureRevision.
	Revision int64
}

// ListResult is one page of a list.
type ListResult struct {
	KVs []KV
	// Revision is the revision the page was read at; pass it back in
	// ListOptions.Revision to read the next page from the same snapshot.
	Revision int64
	// More reports whether keys remain after the last one returned.
	More bool
}

// WriteOptions modify a create or update.
type WriteOptions struct {
	// Lease attaches the key to a lease: when the lease expires or is
	// revoked, the key is deleted. 0 means no lease.
	Lease int64
}

// Reader reads the current (or a retained past) state.
type Reader interface {
	// Get returns the current value of key, or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns keys under prefix in key order.
	List(ctx context.Context, prefix string, opts ListOptions) (ListResult, error)
	// Revision returns the revision of the last acknowledged write.
	Revision() int64
}

// Writer changes keys. Each successful call consumes exactly one revision.
type Writer interface {
	// Create writes key only if it does not exist (else ErrAlreadyExists).
	Create(ctx context.Context, key string, value []byte, opts WriteOptions) (KV, error)
	// Update replaces key's value. If ifRevision is not 0, the write happens
	// only if the key's ModRevision equals it (else ErrConflict). A missing
	// key is ErrNotFound.
	Update(ctx context.Context, key string, value []byte, ifRevision int64, opts WriteOptions) (KV, error)
	// Delete removes key, with the same precondition as Update. It returns
	// the last state of the key and the revision of the deletion.
	Delete(ctx context.Context, key string, ifRevision int64) (prev KV, rev int64, err error)
}

// Watcher is a running watch. Events arrive on Events in revision order with
// no gaps or duplicates; when the channel closes, Err says why (nil after
// Stop or context cancellation, errdefs.ErrTooSlow when the consumer fell
// behind, errdefs.ErrGone if the start revision was compacted meanwhile).
type Watcher interface {
	Events() <-chan Event
	Err() error
	Stop()
}

// Watchable starts watches.
type Watchable interface {
	// Watch delivers every change under prefix with a revision greater than
	// afterRevision (0 means: from now on). An afterRevision older than the
	// compacted revision is ErrGone; one beyond the current revision is
	// ErrFutureRevision.
	Watch(ctx context.Context, prefix string, afterRevision int64) (Watcher, error)
}

// Leaser manages leases: TTL'd handles that keys attach to. A lease that is
// not renewed within its TTL expires and its keys are deleted (each deletion a
// normal write with its own revision and Deleted event).
type Leaser interface {
	// Grant creates a lease with the given TTL (at least one second).
	Grant(ctx context.Context, ttl time.Duration) (id int64, err error)
	// KeepAlive renews the lease for another TTL; ErrNotFound if it expired.
	KeepAlive(ctx context.Context, id int64) error
	// Revoke deletes the lease and all keys attached to it.
	Revoke(ctx context.Context, id int64) error
}

// Store is a complete backend.
type Store interface {
	Reader
	Writer
	Watchable
	Leaser
	// Compact discards history at and before rev: afterwards reads and
	// watches at revisions older than rev are ErrGone.
	Compact(ctx context.Context, rev int64) error
	// CompactedRevision is the revision of the last compaction (0 if none).
	CompactedRevision() int64
	// Close stops background work and releases the store; pending and later
	// calls fail with ErrUnavailable.
	Close() error
}
