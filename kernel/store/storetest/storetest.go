// Package storetest is the conformance suite every store.Store backend passes,
// in the manner of containerd's snapshotter suite: a backend's tests call Run
// with a function that opens a fresh, empty store, and the suite checks the
// contract of package store against it (revisions, preconditions, lists and
// snapshots, watches, compaction, leases, Close).
//
// The suite assumes the store it is given is used by nothing else, so that
// every revision it sees is one of its own writes.
package storetest

import (
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/store"
)

// MaxValueSize is the value-size limit, in bytes, Run expects the stores it
// opens to be configured with: a value of exactly this size is accepted, one
// byte more is ErrTooLarge.
const MaxValueSize = 64 << 10

// Option enables or tunes a part of the suite that depends on how the backend
// was configured.
type Option func(*config)

type config struct {
	bookmarkInterval time.Duration
	watchBuffer      int
	leaseGrace       time.Duration
}

// WithBookmarks declares that the stores were opened to send a Bookmark event
// to every watcher about every interval, and enables the bookmark checks.
func WithBookmarks(interval time.Duration) Option {
	return func(c *config) { c.bookmarkInterval = interval }
}

// WithWatchBuffer declares that the stores cut a watcher off with ErrTooSlow
// once it has n unread events, and enables the slow-watcher check (which
// writes about 2n events). n must be at least 400 (see Run).
func WithWatchBuffer(n int) Option {
	return func(c *config) { c.watchBuffer = n }
}

// WithLeaseGrace sets how long after its TTL an unrenewed lease may take to
// expire before the suite reports it as never expiring (default 2s). It
// bounds a wait; it is not a timing assertion.
func WithLeaseGrace(d time.Duration) Option {
	return func(c *config) { c.leaseGrace = d }
}

// Run runs the conformance suite as subtests of t. Each subtest calls open for
// a fresh, empty store configured with MaxValueSize as its value limit; open
// registers the store's cleanup on the testing.TB it is given, and that
// cleanup must tolerate a store the suite has already closed (Close then
// returns nil or ErrUnavailable). Subtests that wait on real time (lease
// TTLs, bookmarks) run in parallel with each other, so open must be safe to
// call concurrently.
//
// A store may cut off a watcher that falls behind, but one subtest writes 400
// events in a burst from 8 goroutines to watchers that read as fast as they
// are scheduled; the stores must let a watcher fall at least that far behind.
func Run(t *testing.T, open func(t testing.TB) store.Store, opts ...Option) {
	cfg := config{leaseGrace: 2 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store, config)
		// slow subtests wait on real time (lease TTLs, bookmark ticks) and
		// run in parallel with each other.
		slow bool
	}{
		{name: "CreateGet", fn: testCreateGet},
		{name: "RevisionIncrements", fn: testRevisionIncrements},
		{name: "FailedWritesChangeNothing", fn: testFailedWritesChangeNothing},
		{name: "CreateExisting", fn: testCreateExisting},
		{name: "UpdateMissing", fn: testUpdateMissing},
		{name: "UpdateConditional", fn: testUpdateConditional},
		{name: "UpdateUnconditional", fn: testUpdateUnconditional},
		{name: "DeleteReturnsPrevious", fn: testDeleteReturnsPrevious},
		{name: "DeleteConditional", fn: testDeleteConditional},
		{name: "RecreateAfterDelete", fn: testRecreateAfterDelete},
		{name: "ValuesAreCopied", fn: testValuesAreCopied},
		{name: "InvalidKeys", fn: testInvalidKeys},
		{name: "InvalidPrefixes", fn: testInvalidPrefixes},
		{name: "TooLarge", fn: testTooLarge},
		{name: "ConcurrentCreate", fn: testConcurrentCreate},
		{name: "ConcurrentCompareAndSwap", fn: testConcurrentCompareAndSwap},

		{name: "ListPrefix", fn: testListPrefix},
		{name: "ListPagination", fn: testListPagination},
		{name: "ListConsistentPaging", fn: testListConsistentPaging},
		{name: "ListAtRevision", fn: testListAtRevision},
		{name: "ListFutureRevision", fn: testListFutureRevision},
		{name: "ListInvalidOptions", fn: testListInvalidOptions},

		{name: "WatchEvents", fn: testWatchEvents},
		{name: "WatchPrefix", fn: testWatchPrefix},
		{name: "WatchFromNow", fn: testWatchFromNow},
		{name: "WatchResume", fn: testWatchResume},
		{name: "WatchResumeWhileWriting", fn: testWatchResumeWhileWriting},
		{name: "WatchConcurrentWriters", fn: testWatchConcurrentWriters},
		{name: "WatchFutureRevision", fn: testWatchFutureRevision},
		{name: "WatchStop", fn: testWatchStop},
		{name: "WatchContextCancel", fn: testWatchContextCancel},
		{name: "WatchSlowConsumer", fn: testWatchSlowConsumer},
		{name: "WatchBookmarks", fn: testWatchBookmarks, slow: true},

		{name: "Compact", fn: testCompact},
		{name: "CompactCurrent", fn: testCompactCurrent},
		{name: "CompactFuture", fn: testCompactFuture},
		{name: "FreshStore", fn: testFreshStore},
		{name: "ConcurrentCompact", fn: testConcurrentCompact},

		{name: "LeaseGrant", fn: testLeaseGrant},
		{name: "LeaseAttach", fn: testLeaseAttach},
		{name: "LeaseRevoke", fn: testLeaseRevoke},
		{name: "LeaseUnknown", fn: testLeaseUnknown},
		{name: "LeaseKeepAlive", fn: testLeaseKeepAlive, slow: true},
		{name: "LeaseExpiry", fn: testLeaseExpiry, slow: true},

		{name: "Closed", fn: testClosed},
		{name: "CloseDuringWrites", fn: testCloseDuringWrites},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.slow {
				t.Parallel()
			}
			tt.fn(t, open(t), cfg)
		})
	}
}

// testFreshStore pins the starting point every backend shares with etcd: a
// fresh store is at revision 1, so a list of an empty store returns a
// revision that a watch can start from without meaning "from now".
func testFreshStore(t *testing.T, s store.Store, _ config) {
	if got := s.Revision(); got != 1 {
		t.Fatalf("fresh store Revision() = %d, want 1", got)
	}
	res, err := s.List(t.Context(), store.Root, store.ListOptions{})
	if err != nil || res.Revision != 1 || len(res.KVs) != 0 {
		t.Fatalf("List of a fresh store = %d keys at revision %d, err %v; want 0 keys at revision 1", len(res.KVs), res.Revision, err)
	}
	w, err := s.Watch(t.Context(), store.Root, res.Revision)
	if err != nil {
		t.Fatalf("Watch from the fresh list's revision: %v", err)
	}
	defer w.Stop()
	kv := create(t, s, podKey("ns", "first"), "v")
	if kv.ModRevision != 2 {
		t.Fatalf("first write at revision %d, want 2", kv.ModRevision)
	}
	wantEvents(t, w, added(kv))
}
