package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// leaseTTL is the shortest TTL the contract allows; the expiry tests use it.
const leaseTTL = time.Second

// unknownLease is an ID the suite never obtained from Grant.
const unknownLease int64 = 987654321

func grant(t testing.TB, s store.Store, ttl time.Duration) int64 {
	t.Helper()
	id, err := s.Grant(t.Context(), ttl)
	if err != nil {
		t.Fatalf("Grant(%v): %v", ttl, err)
	}
	if id == 0 {
		t.Fatalf("Grant(%v) returned lease 0, which means no lease", ttl)
	}
	return id
}

func createWithLease(t testing.TB, s store.Store, key, value string, lease int64) store.KV {
	t.Helper()
	kv, err := s.Create(t.Context(), key, []byte(value), store.WriteOptions{Lease: lease})
	if err != nil {
		t.Fatalf("Create(%q, lease %d): %v", key, lease, err)
	}
	if kv.Lease != lease {
		t.Fatalf("Create(%q, lease %d) returned %s", key, lease, fmtKV(kv))
	}
	return kv
}

// wantDeletedBy waits for the Deleted events of kvs (in any order) at the
// revisions after `after`, for at most `within`.
func wantDeletedBy(t testing.TB, w store.Watcher, after int64, within time.Duration, kvs ...store.KV) {
	t.Helper()
	timeout := time.After(within)
	remaining := slices.Clone(kvs)
	for rev := after + 1; len(remaining) > 0; {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch closed: Err() = %v", w.Err())
			}
			if ev.Type == store.Bookmark {
				continue
			}
			i := slices.IndexFunc(remaining, func(kv store.KV) bool { return kv.Key == ev.KV.Key })
			if i < 0 || !eventEqual(ev, deleted(remaining[i], rev)) {
				t.Fatalf("event %s, want the deletion at revision %d of one of %s", fmtEvent(ev), rev, fmtKVs(remaining))
			}
			remaining = slices.Delete(remaining, i, i+1)
			rev++
		case <-timeout:
			t.Fatalf("keys %s not deleted within %v", fmtKVs(remaining), within)
		}
	}
}

func testLeaseGrant(t *testing.T, s store.Store, _ config) {
	create(t, s, podKey("ns", "a"), "a")
	rev := s.Revision()
	for _, ttl := range []time.Duration{-time.Second, 0, time.Millisecond, 999 * time.Millisecond} {
		_, err := s.Grant(t.Context(), ttl)
		wantErr(t, err, errdefs.ErrInvalid, fmt.Sprintf("Grant(%v)", ttl))
	}
	ids := map[int64]bool{}
	for _, ttl := range []time.Duration{leaseTTL, time.Minute, time.Minute} {
		id := grant(t, s, ttl)
		if ids[id] {
			t.Fatalf("Grant returned lease %d twice", id)
		}
		ids[id] = true
		if err := s.KeepAlive(t.Context(), id); err != nil {
			t.Fatalf("KeepAlive(%d) of a fresh lease: %v", id, err)
		}
	}
	wantRevision(t, s, rev, "after Grant and KeepAlive (they write no key)")
}

func testLeaseAttach(t *testing.T, s store.Store, _ config) {
	id := grant(t, s, time.Minute)
	w := watch(t, s, store.Root, s.Revision())
	a := createWithLease(t, s, podKey("ns", "a"), "a1", id)
	wantKV(t, get(t, s, a.Key), a, "Get of a key with a lease")
	wantEvents(t, w, added(a))

	a2, err := s.Update(t.Context(), a.Key, []byte("a2"), 0, store.WriteOptions{Lease: id})
	if err != nil || a2.Lease != id {
		t.Fatalf("Update with the same lease = %s, %v; want lease %d", fmtKV(a2), err, id)
	}
	b := createWithLease(t, s, podKey("ns", "b"), "b1", id)
	b2 := update(t, s, b.Key, "b2", 0) // no lease: detaches b
	if b2.Lease != 0 {
		t.Fatalf("Update with lease 0 = %s, want lease 0", fmtKV(b2))
	}
	c := create(t, s, podKey("ns", "c"), "c1")
	c2, err := s.Update(t.Context(), c.Key, []byte("c2"), 0, store.WriteOptions{Lease: id})
	if err != nil || c2.Lease != id {
		t.Fatalf("Update attaching a lease = %s, %v; want lease %d", fmtKV(c2), err, id)
	}
	other := grant(t, s, time.Minute)
	d := createWithLease(t, s, podKey("ns", "d"), "d1", id)
	d2, err := s.Update(t.Context(), d.Key, []byte("d2"), 0, store.WriteOptions{Lease: other})
	if err != nil || d2.Lease != other {
		t.Fatalf("Update moving to another lease = %s, %v; want lease %d", fmtKV(d2), err, other)
	}
	wantKVs(t, list(t, s, store.Root, store.ListOptions{}).KVs, []store.KV{a2, b2, c2, d2}, "List shows leases")

	if err := s.Revoke(t.Context(), id); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	wantKVs(t, list(t, s, store.Root, store.ListOptions{}).KVs, []store.KV{b2, d2},
		"List after Revoke (only the detached and the moved key remain)")
	if err := s.Revoke(t.Context(), other); err != nil {
		t.Fatalf("Revoke of the other lease: %v", err)
	}
	wantKVs(t, list(t, s, store.Root, store.ListOptions{}).KVs, []store.KV{b2}, "List after revoking the other lease")
}

func testLeaseRevoke(t *testing.T, s store.Store, _ config) {
	id := grant(t, s, time.Minute)
	a := createWithLease(t, s, podKey("ns", "a"), "a", id)
	b := createWithLease(t, s, podKey("ns", "b"), "b", id)
	b = func() store.KV {
		kv, err := s.Update(t.Context(), b.Key, []byte("b2"), 0, store.WriteOptions{Lease: id})
		if err != nil {
			t.Fatalf("Update(%q, lease %d): %v", b.Key, id, err)
		}
		return kv
	}()
	c := create(t, s, podKey("ns", "c"), "no lease")
	// d was attached, then deleted and created again without the lease:
	// revoking must leave it alone.
	d := createWithLease(t, s, podKey("ns", "d"), "d", id)
	del(t, s, d.Key, 0)
	d = create(t, s, d.Key, "d again, no lease")
	rev := s.Revision()
	w := watch(t, s, store.Root, rev)

	if err := s.Revoke(t.Context(), id); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	wantRevision(t, s, rev+2, "after revoking a lease with two keys")
	for _, kv := range []store.KV{a, b} {
		_, err := s.Get(t.Context(), kv.Key)
		wantErr(t, err, errdefs.ErrNotFound, "Get of a key of a revoked lease")
	}
	wantKV(t, get(t, s, c.Key), c, "Get of a key without a lease")
	wantKV(t, get(t, s, d.Key), d, "Get of a key re-created without the lease")
	wantDeletedBy(t, w, rev, eventTimeout, a, b)

	wantErr(t, s.KeepAlive(t.Context(), id), errdefs.ErrNotFound, "KeepAlive of a revoked lease")
	wantErr(t, s.Revoke(t.Context(), id), errdefs.ErrNotFound, "second Revoke")
	_, err := s.Create(t.Context(), podKey("ns", "e"), []byte("e"), store.WriteOptions{Lease: id})
	wantErr(t, err, errdefs.ErrNotFound, "Create with a revoked lease")

	empty := grant(t, s, time.Minute)
	if err := s.Revoke(t.Context(), empty); err != nil {
		t.Fatalf("Revoke of a lease without keys: %v", err)
	}
	wantRevision(t, s, rev+2, "after revoking a lease without keys")
}

func testLeaseUnknown(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a")
	wantErr(t, s.KeepAlive(t.Context(), unknownLease), errdefs.ErrNotFound, "KeepAlive of an unknown lease")
	wantErr(t, s.Revoke(t.Context(), unknownLease), errdefs.ErrNotFound, "Revoke of an unknown lease")
	_, err := s.Create(t.Context(), podKey("ns", "b"), []byte("b"), store.WriteOptions{Lease: unknownLease})
	wantErr(t, err, errdefs.ErrNotFound, "Create with an unknown lease")
	_, err = s.Update(t.Context(), a.Key, []byte("a2"), 0, store.WriteOptions{Lease: unknownLease})
	wantErr(t, err, errdefs.ErrNotFound, "Update with an unknown lease")
	wantKV(t, get(t, s, a.Key), a, "Get after writes with an unknown lease")
	wantRevision(t, s, a.ModRevision, "after writes with an unknown lease")
}

// testLeaseKeepAlive renews a one-second lease for well past its TTL, then
// stops and waits for its key to be deleted.
func testLeaseKeepAlive(t *testing.T, s store.Store, cfg config) {
	id := grant(t, s, leaseTTL)
	a := createWithLease(t, s, podKey("ns", "a"), "a", id)
	w := watch(t, s, store.Root, a.ModRevision)
	for start := time.Now(); time.Since(start) < 5*leaseTTL/2; {
		time.Sleep(3 * leaseTTL / 10)
		if err := s.KeepAlive(t.Context(), id); err != nil {
			t.Fatalf("KeepAlive of a lease renewed every %v (TTL %v): %v", 3*leaseTTL/10, leaseTTL, err)
		}
	}
	wantKV(t, get(t, s, a.Key), a, "Get of a key whose lease was kept alive")
	wantRevision(t, s, a.ModRevision, "while the lease was kept alive")

	wantDeletedBy(t, w, a.ModRevision, leaseTTL+cfg.leaseGrace, a)
	wantErr(t, s.KeepAlive(t.Context(), id), errdefs.ErrNotFound, "KeepAlive of an expired lease")
	_, err := s.Get(t.Context(), a.Key)
	wantErr(t, err, errdefs.ErrNotFound, "Get of a key whose lease expired")
}

// testLeaseExpiry lets a one-second lease with two keys expire.
func testLeaseExpiry(t *testing.T, s store.Store, cfg config) {
	id := grant(t, s, leaseTTL)
	a := createWithLease(t, s, podKey("ns", "a"), "a", id)
	b := createWithLease(t, s, podKey("ns", "b"), strings.Repeat("b", 100), id)
	c := create(t, s, podKey("ns", "c"), "no lease")
	w := watch(t, s, store.Root, c.ModRevision)

	wantDeletedBy(t, w, c.ModRevision, leaseTTL+cfg.leaseGrace, a, b)
	wantRevision(t, s, c.ModRevision+2, "after the lease expired")
	wantKVs(t, list(t, s, store.Root, store.ListOptions{}).KVs, []store.KV{c}, "List after the lease expired")
	wantErr(t, s.KeepAlive(t.Context(), id), errdefs.ErrNotFound, "KeepAlive of an expired lease")
	wantErr(t, s.Revoke(t.Context(), id), errdefs.ErrNotFound, "Revoke of an expired lease")
	_, err := s.Create(t.Context(), podKey("ns", "d"), []byte("d"), store.WriteOptions{Lease: id})
	wantErr(t, err, errdefs.ErrNotFound, "Create with an expired lease")
}
