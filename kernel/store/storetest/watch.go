package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

func testWatchEvents(t *testing.T, s store.Store, _ config) {
	w := watch(t, s, store.Root, s.Revision())
	a1 := create(t, s, podKey("ns", "a"), "a1")
	a2 := update(t, s, a1.Key, "a2", a1.ModRevision)
	_, rev := del(t, s, a1.Key, a2.ModRevision)
	wantEvents(t, w, added(a1), modified(a2, a1.Value), deleted(a2, rev))
}

func testWatchPrefix(t *testing.T, s store.Store, _ config) {
	// A first write, so that start is a revision to resume from (a fresh
	// store may be at revision 0, and after 0 means "from now").
	start := create(t, s, "/registry/pods/ns0/x", "before the watches").ModRevision
	slash := watch(t, s, "/registry/pods/ns1/", 0)
	ns10 := create(t, s, "/registry/pods/ns10/x", "x1")
	create(t, s, "/registry/services/ns1/x", "svc")
	ns1Key := create(t, s, "/registry/pods/ns1", "cluster-scoped pod named ns1")
	a := create(t, s, "/registry/pods/ns1/a", "a")
	ns10b := update(t, s, ns10.Key, "x2", 0)
	_, ns10Gone := del(t, s, ns10.Key, 0)
	b := create(t, s, "/registry/pods/ns1/b", "b")
	wantEvents(t, slash, added(a), added(b))

	noSlash := watch(t, s, "/registry/pods/ns1", start)
	wantEvents(t, noSlash, added(ns10), added(ns1Key), added(a), modified(ns10b, ns10.Value), deleted(ns10b, ns10Gone), added(b))
}

func testWatchFromNow(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a1")
	create(t, s, podKey("ns", "b"), "b1")
	w := watch(t, s, store.Root, 0)
	c := create(t, s, podKey("ns", "c"), "c1")
	a2 := update(t, s, a.Key, "a2", 0)
	wantEvents(t, w, added(c), modified(a2, a.Value))
}

// history makes 50 writes of every kind under prefix and returns the events
// they must produce, in order.
func history(t testing.TB, s store.Store, prefix string) []store.Event {
	t.Helper()
	var evs []store.Event
	kvs := make([]store.KV, 10)
	for i := range kvs {
		kvs[i] = create(t, s, fmt.Sprintf("%sk%d", prefix, i), fmt.Sprintf("k%d-v0", i))
		evs = append(evs, added(kvs[i]))
	}
	for round := 1; round <= 3; round++ {
		for i, kv := range kvs {
			kvs[i] = update(t, s, kv.Key, fmt.Sprintf("k%d-v%d", i, round), kv.ModRevision)
			evs = append(evs, modified(kvs[i], kv.Value))
		}
	}
	for i := range 5 {
		_, rev := del(t, s, kvs[i].Key, 0)
		evs = append(evs, deleted(kvs[i], rev))
		kvs[i] = create(t, s, kvs[i].Key, fmt.Sprintf("k%d-again", i))
		evs = append(evs, added(kvs[i]))
	}
	return evs
}

func testWatchResume(t *testing.T, s store.Store, _ config) {
	const prefix = "/registry/pods/ns/"
	// A first write, so that there is a revision before the history to
	// resume from (after 0 would mean "from now").
	first := create(t, s, "/registry/pods/other/x", "before the history").ModRevision
	evs := history(t, s, prefix)
	if len(evs) != 50 || evs[49].Revision != first+50 {
		t.Fatalf("history made %d events up to revision %d, want 50 up to %d", len(evs), evs[len(evs)-1].Revision, first+50)
	}
	for _, from := range []int{0, 1, 24, 49, 50} {
		t.Run(fmt.Sprintf("after event %d", from), func(t *testing.T) {
			after := first
			if from > 0 {
				after = evs[from-1].Revision
			}
			w := watch(t, s, prefix, after)
			wantEvents(t, w, evs[from:]...)
			// The watch carries on live, without a gap, after the replay.
			// The live write joins the history later subtests replay.
			last := evs[len(evs)-1].KV
			live := update(t, s, last.Key, fmt.Sprintf("live-%d", from), 0)
			evs = append(evs, modified(live, last.Value))
			wantEvents(t, w, evs[len(evs)-1])
		})
	}
}

// recorder keeps the event every acknowledged write must produce, by
// revision; writers on several goroutines share it.
type recorder struct {
	mu     sync.Mutex
	events map[int64]store.Event
}

func (r *recorder) add(ev store.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[ev.Revision] = ev
}

// writeKey creates key, updates it n-2 times and deletes it, recording every
// write in rec. It reports failures with t.Errorf, so it may run on any
// goroutine.
func writeKey(t testing.TB, s store.Store, rec *recorder, key string, n int, progress func()) {
	kv, err := s.Create(t.Context(), key, []byte("0"), store.WriteOptions{})
	if err != nil {
		t.Errorf("Create(%q): %v", key, err)
		return
	}
	rec.add(added(kv))
	progress()
	for i := 1; i < n-1; i++ {
		next, err := s.Update(t.Context(), key, fmt.Appendf(nil, "%d", i), kv.ModRevision, store.WriteOptions{})
		if err != nil {
			t.Errorf("Update(%q): %v", key, err)
			return
		}
		rec.add(modified(next, kv.Value))
		kv = next
		progress()
	}
	if _, rev, err := s.Delete(t.Context(), key, kv.ModRevision); err != nil {
		t.Errorf("Delete(%q): %v", key, err)
	} else {
		rec.add(deleted(kv, rev))
	}
	progress()
}

// testWatchResumeWhileWriting starts a watch from a past revision while
// writes go on, so the replay of history has to hand over to live events.
func testWatchResumeWhileWriting(t *testing.T, s store.Store, _ config) {
	const writes = 200
	start := s.Revision()
	rec := &recorder{events: map[int64]store.Event{}}
	halfway := make(chan struct{})
	var wg sync.WaitGroup
	count := 0 // used only by the writer
	wg.Go(func() {
		writeKey(t, s, rec, podKey("ns", "busy"), writes, func() {
			if count++; count == writes/4 {
				close(halfway)
			}
		})
	})
	select {
	case <-halfway:
	case <-time.After(3 * eventTimeout):
		t.Fatal("writer made no progress")
	}
	const after = 10
	w := watch(t, s, store.Root, start+after)
	evs, err := collect(w, writes-after)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSequence(evs, start+after, rec.events); err != nil {
		t.Fatal(err)
	}
}

// testWatchConcurrentWriters checks that watchers see every write of many
// concurrent writers exactly once, in revision order.
func testWatchConcurrentWriters(t *testing.T, s store.Store, _ config) {
	const writers, perWriter, watchers = 8, 50, 3
	const total = writers * perWriter
	start := s.Revision()
	ws := make([]store.Watcher, watchers)
	for i := range ws {
		ws[i] = watch(t, s, "/registry/pods/", start)
	}
	results := make([][]store.Event, watchers)
	errs := make([]error, watchers)
	var readers sync.WaitGroup
	for i, w := range ws {
		readers.Go(func() { results[i], errs[i] = collect(w, total) })
	}
	rec := &recorder{events: map[int64]store.Event{}}
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() { writeKey(t, s, rec, podKey("ns", fmt.Sprintf("w%d", i)), perWriter, func() {}) })
	}
	wg.Wait()
	readers.Wait()
	if t.Failed() {
		return
	}
	if len(rec.events) != total {
		t.Fatalf("writers recorded %d distinct revisions, want %d", len(rec.events), total)
	}
	wantRevision(t, s, start+total, "after concurrent writes")
	for i := range ws {
		if errs[i] != nil {
			t.Fatalf("watcher %d: %v", i, errs[i])
		}
		if err := checkSequence(results[i], start, rec.events); err != nil {
			t.Fatalf("watcher %d: %v", i, err)
		}
	}
}

func testWatchFutureRevision(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a")
	tests := []struct {
		after int64
		want  error
	}{
		{a.ModRevision + 1, errdefs.ErrFutureRevision},
		{a.ModRevision + 100, errdefs.ErrFutureRevision},
		{-1, errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		w, err := s.Watch(t.Context(), store.Root, tt.after)
		if err == nil {
			w.Stop()
		}
		wantErr(t, err, tt.want, fmt.Sprintf("Watch after revision %d (current %d)", tt.after, a.ModRevision))
	}
	w := watch(t, s, store.Root, a.ModRevision)
	b := create(t, s, podKey("ns", "b"), "b")
	wantEvents(t, w, added(b))
}

func testWatchStop(t *testing.T, s store.Store, _ config) {
	other := watch(t, s, store.Root, 0)
	w := watch(t, s, store.Root, 0)
	a := create(t, s, podKey("ns", "a"), "a")
	w.Stop()
	for _, ev := range waitClosed(t, w) {
		if ev.Type != store.Bookmark && !eventEqual(ev, added(a)) {
			t.Fatalf("stopped watch delivered %s", fmtEvent(ev))
		}
	}
	if err := w.Err(); err != nil {
		t.Fatalf("Err() after Stop = %v, want nil", err)
	}
	w.Stop() // a second Stop is harmless
	// Writes go on, and reach the other watcher.
	b := create(t, s, podKey("ns", "b"), "b")
	wantEvents(t, other, added(a), added(b))
}

func testWatchContextCancel(t *testing.T, s store.Store, _ config) {
	ctx, cancel := context.WithCancel(t.Context())
	w, err := s.Watch(ctx, store.Root, 0)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(w.Stop)
	a := create(t, s, podKey("ns", "a"), "a")
	wantEvents(t, w, added(a))
	cancel()
	for _, ev := range waitClosed(t, w) {
		if ev.Type != store.Bookmark {
			t.Fatalf("watch delivered %s after its context ended, with no write", fmtEvent(ev))
		}
	}
	if err := w.Err(); err != nil {
		t.Fatalf("Err() after context cancellation = %v, want nil", err)
	}
	create(t, s, podKey("ns", "b"), "b")
}

// testWatchSlowConsumer checks that a watcher that does not read is cut off
// with ErrTooSlow, without stalling writers or a watcher that reads.
func testWatchSlowConsumer(t *testing.T, s store.Store, cfg config) {
	if cfg.watchBuffer <= 0 {
		t.Skip("the backend's watch buffer is unknown; enable with storetest.WithWatchBuffer")
	}
	const writers = 4
	perWriter := (2*cfg.watchBuffer + 10 + writers - 1) / writers
	total := writers * perWriter
	start := s.Revision()
	slow := watch(t, s, store.Root, start)
	fast := watch(t, s, store.Root, start)

	// Writers never get more than half a buffer ahead of the reading
	// watcher, so it cannot be cut off however the goroutines are
	// scheduled, while the unread one falls ever further behind.
	var read, written atomic.Int64
	fastDone := make(chan struct{})
	var fastEvents []store.Event
	var fastErr error
	go func() {
		defer close(fastDone)
		fastEvents, fastErr = collectCounting(fast, total, &read)
	}()
	pace := func() {
		written.Add(1)
		for written.Load()-read.Load() >= int64(cfg.watchBuffer/2) {
			select {
			case <-fastDone:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
	rec := &recorder{events: map[int64]store.Event{}}
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() { writeKey(t, s, rec, podKey("ns", fmt.Sprintf("flood%d", i)), perWriter, pace) })
	}
	writesDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(writesDone)
	}()
	select {
	case <-writesDone:
	case <-time.After(6 * eventTimeout):
		t.Fatal("writes stalled behind a watcher that does not read")
	}
	<-fastDone
	if t.Failed() {
		return
	}
	if fastErr != nil {
		t.Fatalf("reading watcher: %v", fastErr)
	}
	if err := checkSequence(fastEvents, start, rec.events); err != nil {
		t.Fatalf("reading watcher: %v", err)
	}

	var got []store.Event
	for _, ev := range waitClosed(t, slow) {
		if ev.Type != store.Bookmark {
			got = append(got, ev)
		}
	}
	if len(got) >= total {
		t.Fatalf("unread watcher with a buffer of %d delivered all %d events", cfg.watchBuffer, total)
	}
	if err := checkSequence(got, start, rec.events); err != nil {
		t.Fatalf("events delivered before the cut-off: %v", err)
	}
	wantErr(t, slow.Err(), errdefs.ErrTooSlow, "Err() of a watcher that did not read")
}

// testWatchBookmarks checks that an idle watch receives bookmarks that
// advance to the store's revision, never go backwards, and never claim an
// event that has not been delivered.
func testWatchBookmarks(t *testing.T, s store.Store, cfg config) {
	if cfg.bookmarkInterval <= 0 {
		t.Skip("the backend's bookmark interval is unknown; enable with storetest.WithBookmarks")
	}
	w := watch(t, s, "/registry/pods/", 0)
	a := create(t, s, podKey("ns", "a"), "a")
	elsewhere := create(t, s, "/registry/services/ns/x", "outside the watch")
	wait := 20*cfg.bookmarkInterval + eventTimeout
	timeout := time.After(wait)
	var covered int64 // highest revision delivered or bookmarked
	sawA := false
	for done := false; !done; {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch closed: Err() = %v", w.Err())
			}
			switch {
			case ev.Type != store.Bookmark:
				if sawA || !eventEqual(ev, added(a)) {
					t.Fatalf("event %s, want only %s", fmtEvent(ev), fmtEvent(added(a)))
				}
				sawA = true
			case ev.Revision < covered:
				t.Fatalf("bookmark at %d after revision %d was covered", ev.Revision, covered)
			case !sawA && ev.Revision >= a.ModRevision:
				t.Fatalf("bookmark at %d before the event of revision %d", ev.Revision, a.ModRevision)
			case sawA && ev.Revision >= elsewhere.ModRevision:
				done = true
			}
			covered = max(covered, ev.Revision)
		case <-timeout:
			t.Fatalf("no bookmark at or after revision %d within %v (sent every %v); last covered %d",
				elsewhere.ModRevision, wait, cfg.bookmarkInterval, covered)
		}
	}
	b := create(t, s, podKey("ns", "b"), "b")
	wantEvents(t, w, added(b))
}
