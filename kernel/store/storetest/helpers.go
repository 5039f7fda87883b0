package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/store"
)

// eventTimeout bounds every wait for an event that must arrive. It only turns
// a hang into a failure; nothing is asserted about how fast events arrive.
const eventTimeout = 10 * time.Second

// podKey is the key of pod name in namespace ns.
func podKey(ns, name string) string { return store.Key("pods", ns, name) }

func create(t testing.TB, s store.Store, key, value string) store.KV {
	t.Helper()
	kv, err := s.Create(t.Context(), key, []byte(value), store.WriteOptions{})
	if err != nil {
		t.Fatalf("Create(%q): %v", key, err)
	}
	return kv
}

func update(t testing.TB, s store.Store, key, value string, ifRevision int64) store.KV {
	t.Helper()
	kv, err := s.Update(t.Context(), key, []byte(value), ifRevision, store.WriteOptions{})
	if err != nil {
		t.Fatalf("Update(%q, ifRevision %d): %v", key, ifRevision, err)
	}
	return kv
}

func del(t testing.TB, s store.Store, key string, ifRevision int64) (store.KV, int64) {
	t.Helper()
	prev, rev, err := s.Delete(t.Context(), key, ifRevision)
	if err != nil {
		t.Fatalf("Delete(%q, ifRevision %d): %v", key, ifRevision, err)
	}
	return prev, rev
}

func get(t testing.TB, s store.Store, key string) store.KV {
	t.Helper()
	kv, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return kv
}

func list(t testing.TB, s store.Store, prefix string, opts store.ListOptions) store.ListResult {
	t.Helper()
	res, err := s.List(t.Context(), prefix, opts)
	if err != nil {
		t.Fatalf("List(%q, %+v): %v", prefix, opts, err)
	}
	return res
}

// wantErr fails t unless err is in the category target.
func wantErr(t testing.TB, err, target error, op string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", op, err, target)
	}
}

// wantRevision fails t unless the store's revision is want.
func wantRevision(t testing.TB, s store.Store, want int64, when string) {
	t.Helper()
	if got := s.Revision(); got != want {
		t.Fatalf("Revision() %s = %d, want %d", when, got, want)
	}
}

func wantKV(t testing.TB, got, want store.KV, op string) {
	t.Helper()
	if !kvEqual(got, want) {
		t.Fatalf("%s = %s, want %s", op, fmtKV(got), fmtKV(want))
	}
}

// wantKVs fails t unless got and want hold equal KVs in the same order.
func wantKVs(t testing.TB, got, want []store.KV, op string) {
	t.Helper()
	if len(got) == len(want) {
		same := true
		for i := range got {
			same = same && kvEqual(got[i], want[i])
		}
		if same {
			return
		}
	}
	t.Fatalf("%s:\n got  %s\n want %s", op, fmtKVs(got), fmtKVs(want))
}

func kvEqual(a, b store.KV) bool {
	return a.Key == b.Key && bytes.Equal(a.Value, b.Value) && a.CreateRevision == b.CreateRevision &&
		a.ModRevision == b.ModRevision && a.Lease == b.Lease
}

func fmtKV(kv store.KV) string {
	return fmt.Sprintf("{%s %s create=%d mod=%d lease=%d}", kv.Key, shortValue(kv.Value), kv.CreateRevision, kv.ModRevision, kv.Lease)
}

func fmtKVs(kvs []store.KV) string {
	s := make([]string, len(kvs))
	for i, kv := range kvs {
		s[i] = fmtKV(kv)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func shortValue(v []byte) string {
	if len(v) > 40 {
		return fmt.Sprintf("%q...(%d bytes)", v[:40], len(v))
	}
	return fmt.Sprintf("%q", v)
}

func fmtEvent(ev store.Event) string {
	if ev.Type == store.Bookmark {
		return fmt.Sprintf("%s@%d", ev.Type, ev.Revision)
	}
	return fmt.Sprintf("%s@%d %s prev=%s", ev.Type, ev.Revision, fmtKV(ev.KV), shortValue(ev.PrevValue))
}

func eventEqual(a, b store.Event) bool {
	return a.Type == b.Type && a.Revision == b.Revision && kvEqual(a.KV, b.KV) && bytes.Equal(a.PrevValue, b.PrevValue)
}

// added, modified and deleted build the events the contract says a write
// produces, from what the write returned.
func added(kv store.KV) store.Event {
	return store.Event{Type: store.Added, Revision: kv.ModRevision, KV: kv}
}

func modified(kv store.KV, prev []byte) store.Event {
	return store.Event{Type: store.Modified, Revision: kv.ModRevision, KV: kv, PrevValue: prev}
}

func deleted(prev store.KV, rev int64) store.Event {
	return store.Event{Type: store.Deleted, Revision: rev, KV: prev, PrevValue: prev.Value}
}

// watch starts a watch that is stopped when the test ends.
func watch(t testing.TB, s store.Store, prefix string, afterRevision int64) store.Watcher {
	t.Helper()
	w, err := s.Watch(t.Context(), prefix, afterRevision)
	if err != nil {
		t.Fatalf("Watch(%q, after %d): %v", prefix, afterRevision, err)
	}
	t.Cleanup(w.Stop)
	return w
}

// next returns the next non-bookmark event of w.
func next(t testing.TB, w store.Watcher) store.Event {
	t.Helper()
	timeout := time.After(eventTimeout)
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch closed while an event was expected: Err() = %v", w.Err())
			}
			if ev.Type != store.Bookmark {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event within %v", eventTimeout)
		}
	}
}

// wantEvents fails t unless the next non-bookmark events of w are want.
func wantEvents(t testing.TB, w store.Watcher, want ...store.Event) {
	t.Helper()
	for i, we := range want {
		if got := next(t, w); !eventEqual(got, we) {
			t.Fatalf("event %d = %s, want %s", i, fmtEvent(got), fmtEvent(we))
		}
	}
}

// collect reads n non-bookmark events from w, for use off the test goroutine.
func collect(w store.Watcher, n int) ([]store.Event, error) {
	return collectCounting(w, n, new(atomic.Int64))
}

// collectCounting is collect that counts the events it has read in count.
func collectCounting(w store.Watcher, n int, count *atomic.Int64) ([]store.Event, error) {
	evs := make([]store.Event, 0, n)
	timeout := time.After(3 * eventTimeout)
	for len(evs) < n {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				return evs, fmt.Errorf("watch closed after %d of %d events: Err() = %v", len(evs), n, w.Err())
			}
			if ev.Type != store.Bookmark {
				evs = append(evs, ev)
				count.Add(1)
			}
		case <-timeout:
			return evs, fmt.Errorf("only %d of %d events within %v", len(evs), n, 3*eventTimeout)
		}
	}
	return evs, nil
}

// waitClosed drains w until its channel closes and returns the events it
// delivered meanwhile.
func waitClosed(t testing.TB, w store.Watcher) []store.Event {
	t.Helper()
	var evs []store.Event
	timeout := time.After(eventTimeout)
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		case <-timeout:
			t.Fatalf("watch channel still open after %v", eventTimeout)
		}
	}
}

// checkSequence fails with a description unless evs are exactly the events
// of revisions from+1, from+2, ... as recorded in writes (by revision).
func checkSequence(evs []store.Event, from int64, writes map[int64]store.Event) error {
	for i, ev := range evs {
		wantRev := from + 1 + int64(i)
		if ev.Revision != wantRev {
			return fmt.Errorf("event %d has revision %d, want %d (gap, duplicate or reorder): %s", i, ev.Revision, wantRev, fmtEvent(ev))
		}
		if want, ok := writes[wantRev]; ok && !eventEqual(ev, want) {
			return fmt.Errorf("event %d = %s, want %s", i, fmtEvent(ev), fmtEvent(want))
		}
	}
	return nil
}
