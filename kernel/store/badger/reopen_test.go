package badger_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

// openDir opens the store in dir with short background intervals. The caller
// closes it; a cleanup closes it too, in case the test stops early.
func openDir(t testing.TB, dir string) *tbadger.Store {
	t.Helper()
	s, err := tbadger.Open(tbadger.Options{
		Dir:                dir,
		LeaseCheckInterval: 50 * time.Millisecond,
		Logger:             slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("open badger store in %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("close badger store: %v", err)
		}
	})
	return s
}

func closeStore(t testing.TB, s *tbadger.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// kvList formats KVs for failure messages.
type kvList []store.KV

func (l kvList) String() string {
	var b strings.Builder
	for _, kv := range l {
		fmt.Fprintf(&b, "{%s %q create=%d mod=%d lease=%d} ", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Lease)
	}
	return b.String()
}

func sameKVs(a, b []store.KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) || a[i].CreateRevision != b[i].CreateRevision ||
			a[i].ModRevision != b[i].ModRevision || a[i].Lease != b[i].Lease {
			return false
		}
	}
	return true
}

// reopenState is what TestReopenKeepsState wrote before closing the store.
type reopenState struct {
	lease     int64
	compactAt int64  // the compacted revision
	middle    int64  // a retained revision between compactAt and rev
	rev       int64  // the last revision
	current   kvList // the keys at rev
	atMiddle  kvList // the keys at middle
}

// writeReopenState makes keys with and without a lease, updates, a delete
// and a compaction, and records the result.
func writeReopenState(t *testing.T, s *tbadger.Store) reopenState {
	t.Helper()
	ctx := t.Context()
	var st reopenState
	var err error
	if st.lease, err = s.Grant(ctx, time.Minute); err != nil {
		t.Fatalf("Grant: %v", err)
	}
	var last store.KV
	for i := range 10 {
		key := store.Key("pods", "ns", fmt.Sprintf("p%d", i))
		opts := store.WriteOptions{}
		if i%3 == 0 {
			opts.Lease = st.lease
		}
		if last, err = s.Create(ctx, key, fmt.Appendf(nil, "v%d", i), opts); err != nil {
			t.Fatalf("Create(%q): %v", key, err)
		}
	}
	st.compactAt = last.ModRevision
	for i := range 5 { // p0 and p3 lose their lease
		key := store.Key("pods", "ns", fmt.Sprintf("p%d", i))
		if _, err := s.Update(ctx, key, fmt.Appendf(nil, "v%d-updated", i), 0, store.WriteOptions{}); err != nil {
			t.Fatalf("Update(%q): %v", key, err)
		}
	}
	if _, _, err := s.Delete(ctx, store.Key("pods", "ns", "p7"), 0); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	st.middle = s.Revision()
	if _, err := s.Update(ctx, store.Key("pods", "ns", "p8"), []byte("after middle"), 0, store.WriteOptions{}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := s.Compact(ctx, st.compactAt); err != nil {
		t.Fatalf("Compact(%d): %v", st.compactAt, err)
	}
	st.rev = s.Revision()
	st.current = listOrFail(t, s, 0)
	st.atMiddle = listOrFail(t, s, st.middle)
	return st
}

// TestReopenKeepsState checks that keys, values, revisions, history after the
// compacted revision, the compacted revision and leases survive Close and
// Open on the same directory.
func TestReopenKeepsState(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s := openDir(t, dir)
	st := writeReopenState(t, s)
	lease, compactAt, middle, rev, before, beforeMiddle := st.lease, st.compactAt, st.middle, st.rev, st.current, st.atMiddle
	closeStore(t, s)

	s = openDir(t, dir)
	if got := s.Revision(); got != rev {
		t.Fatalf("Revision() after reopen = %d, want %d", got, rev)
	}
	if got := s.CompactedRevision(); got != compactAt {
		t.Fatalf("CompactedRevision() after reopen = %d, want %d", got, compactAt)
	}
	if got := listOrFail(t, s, 0); !sameKVs(got, before) {
		t.Fatalf("keys after reopen:\n got  %v\n want %v", got, before)
	}
	for _, kv := range before {
		got, err := s.Get(ctx, kv.Key)
		if err != nil || !sameKVs([]store.KV{got}, []store.KV{kv}) {
			t.Fatalf("Get(%q) after reopen = %v, %v; want %v", kv.Key, kvList{got}, err, kvList{kv})
		}
	}
	if got := listOrFail(t, s, middle); !sameKVs(got, beforeMiddle) {
		t.Fatalf("List at revision %d after reopen:\n got  %v\n want %v", middle, got, beforeMiddle)
	}
	if _, err := s.List(ctx, store.Root, store.ListOptions{Revision: compactAt - 1}); !errors.Is(err, errdefs.ErrGone) {
		t.Fatalf("List before the compacted revision after reopen: error %v, want ErrGone", err)
	}

	// Watches resume from retained history written before the restart.
	w, err := s.Watch(ctx, store.Root, middle)
	if err != nil {
		t.Fatalf("Watch after revision %d after reopen: %v", middle, err)
	}
	defer w.Stop()
	select {
	case ev := <-w.Events():
		if ev.Type != store.Modified || ev.Revision != middle+1 || ev.KV.Key != store.Key("pods", "ns", "p8") ||
			string(ev.KV.Value) != "after middle" || string(ev.PrevValue) != "v8" {
			t.Fatalf("resumed watch: event %v@%d %v prev %q, want MODIFIED@%d of p8", ev.Type, ev.Revision, kvList{ev.KV}, ev.PrevValue, middle+1)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("resumed watch: no event within 10s: Err() = %v", w.Err())
	}

	kv, err := s.Create(ctx, store.Key("pods", "ns", "new"), []byte("new"), store.WriteOptions{})
	if err != nil {
		t.Fatalf("Create after reopen: %v", err)
	}
	if kv.ModRevision != rev+1 || s.Revision() != rev+1 {
		t.Fatalf("first write after reopen: revision %d, Revision() %d; want %d", kv.ModRevision, s.Revision(), rev+1)
	}

	// The lease survived, with its keys: revoking it deletes them.
	if err := s.KeepAlive(ctx, lease); err != nil {
		t.Fatalf("KeepAlive after reopen: %v", err)
	}
	if err := s.Revoke(ctx, lease); err != nil {
		t.Fatalf("Revoke after reopen: %v", err)
	}
	var want kvList
	for _, kv := range before {
		if kv.Lease != lease {
			want = append(want, kv)
		}
	}
	if len(want) == len(before) {
		t.Fatal("no key was attached to the lease")
	}
	want = append(kvList{kv}, want...) // "new" sorts before "p0"
	if got := listOrFail(t, s, 0); !sameKVs(got, want) {
		t.Fatalf("keys after revoking the lease:\n got  %v\n want %v", got, want)
	}
}

// TestReopenLeaseExpires checks that a lease granted before a restart and not
// renewed after it still expires and takes its key with it.
func TestReopenLeaseExpires(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s := openDir(t, dir)
	lease, err := s.Grant(ctx, time.Second)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	key := store.Key("pods", "ns", "leased")
	kv, err := s.Create(ctx, key, []byte("v"), store.WriteOptions{Lease: lease})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	closeStore(t, s)

	s = openDir(t, dir)
	w, err := s.Watch(ctx, store.Root, kv.ModRevision)
	if err != nil {
		t.Fatalf("Watch after reopen: %v", err)
	}
	defer w.Stop()
	const bound = 15 * time.Second // a hang guard, not a timing assertion
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatalf("watch closed: %v", w.Err())
		}
		if ev.Type != store.Deleted || ev.Revision != kv.ModRevision+1 || ev.KV.Key != key || ev.KV.Lease != lease {
			t.Fatalf("event %v %d %+v, want the deletion of %s at %d", ev.Type, ev.Revision, ev.KV, key, kv.ModRevision+1)
		}
	case <-time.After(bound):
		t.Fatalf("key of an unrenewed lease not deleted within %v of reopening", bound)
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get after the lease expired: error %v, want ErrNotFound", err)
	}
	if err := s.KeepAlive(ctx, lease); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("KeepAlive after the lease expired: error %v, want ErrNotFound", err)
	}
}

func listOrFail(t testing.TB, s store.Store, rev int64) kvList {
	t.Helper()
	res, err := s.List(t.Context(), store.Root, store.ListOptions{Revision: rev})
	if err != nil {
		t.Fatalf("List at revision %d: %v", rev, err)
	}
	return res.KVs
}

// TestReopenLongLease checks that any TTL Grant accepts also survives a
// restart: the lease is still there, with its key.
func TestReopenLongLease(t *testing.T) {
	ttls := []time.Duration{time.Hour, 50 * 365 * 24 * time.Hour, time.Duration(1 << 62)}
	for _, ttl := range ttls {
		t.Run(ttl.String(), func(t *testing.T) {
			dir := t.TempDir()
			ctx := t.Context()
			s := openDir(t, dir)
			lease, err := s.Grant(ctx, ttl)
			if errors.Is(err, errdefs.ErrInvalid) {
				return // refusing a TTL is allowed; accepting one it cannot reload is not
			}
			if err != nil {
				t.Fatalf("Grant(%v): %v", ttl, err)
			}
			key := store.Key("pods", "ns", "leased")
			if _, err := s.Create(ctx, key, []byte("v"), store.WriteOptions{Lease: lease}); err != nil {
				t.Fatalf("Create: %v", err)
			}
			closeStore(t, s)

			s = openDir(t, dir)
			if err := s.KeepAlive(ctx, lease); err != nil {
				t.Fatalf("KeepAlive after reopen: %v", err)
			}
			if kv, err := s.Get(ctx, key); err != nil || kv.Lease != lease {
				t.Fatalf("Get after reopen = %v, %v; want the key with lease %d", kvList{kv}, err, lease)
			}
		})
	}
}
