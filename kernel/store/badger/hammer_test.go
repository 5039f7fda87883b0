package badger_test

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

// hangGuard bounds waits that only a bug could make endless, so that such a
// bug fails the test with a message instead of hanging the suite. It is not a
// timing assertion: healthy runs finish orders of magnitude sooner.
const hangGuard = time.Minute

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func openScratchStore(t testing.TB, opts tbadger.Options) *tbadger.Store {
	t.Helper()
	opts.Dir = t.TempDir()
	opts.Logger = quietLogger()
	s, err := tbadger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// waitGroupOrFail waits for wg, failing the test if that takes longer than
// hangGuard.
func waitGroupOrFail(t testing.TB, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatalf("%s: still not done after %v", what, hangGuard)
	}
}

// fanRec is one write as acknowledged to a writer or seen by a watcher.
type fanRec struct {
	Rev  int64
	Type store.EventType
	Key  string
}

// fanBookmark is a Bookmark a watcher received after seen events.
type fanBookmark struct {
	rev  int64
	seen int
}

// fanWatch collects one watcher's events until it sees stopKey.
type fanWatch struct {
	w         store.Watcher
	recs      []fanRec
	bookmarks []fanBookmark
	problems  []string
	closedErr error // set if the channel closed before stopKey
	closed    bool
}

func (f *fanWatch) run(stopKey string) {
	for ev := range f.w.Events() {
		if ev.Type == store.Bookmark {
			f.bookmarks = append(f.bookmarks, fanBookmark{ev.Revision, len(f.recs)})
			continue
		}
		if ev.Type != store.Deleted && ev.Revision != ev.KV.ModRevision {
			f.problems = append(f.problems, fmt.Sprintf("%v %s at revision %d carries mod revision %d", ev.Type, ev.KV.Key, ev.Revision, ev.KV.ModRevision))
		}
		if ev.Type == store.Deleted && ev.KV.ModRevision >= ev.Revision {
			f.problems = append(f.problems, fmt.Sprintf("deletion of %s at revision %d carries mod revision %d", ev.KV.Key, ev.Revision, ev.KV.ModRevision))
		}
		f.recs = append(f.recs, fanRec{ev.Revision, ev.Type, ev.KV.Key})
		if ev.KV.Key == stopKey {
			return
		}
	}
	f.closed = true
	f.closedErr = f.w.Err()
}

// check compares what the watcher saw with want (sorted by revision).
func (f *fanWatch) check(want []fanRec) error {
	if len(f.problems) > 0 {
		return errors.New(f.problems[0])
	}
	if f.closed {
		return fmt.Errorf("channel closed after %d of %d events: %v", len(f.recs), len(want), f.closedErr)
	}
	if !slices.Equal(f.recs, want) {
		for i := range min(len(f.recs), len(want)) {
			if f.recs[i] != want[i] {
				return fmt.Errorf("event %d is %+v, want %+v (%d events, want %d)", i, f.recs[i], want[i], len(f.recs), len(want))
			}
		}
		return fmt.Errorf("got %d events, want %d", len(f.recs), len(want))
	}
	for _, b := range f.bookmarks {
		n, _ := slices.BinarySearchFunc(want, b.rev+1, func(r fanRec, rev int64) int { return cmp.Compare(r.Rev, rev) })
		if n != b.seen {
			return fmt.Errorf("bookmark at revision %d came after %d events; %d events are at or before it", b.rev, b.seen, n)
		}
	}
	return nil
}

// fanWrite has writers goroutines make total writes under prefix (creates,
// updates and deletes of keys each writer owns) and returns the acknowledged
// ones.
func fanWrite(t testing.TB, s store.Store, prefix, tag string, writers, total int) []fanRec {
	t.Helper()
	ctx := t.Context()
	acks := make([][]fanRec, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), uint64(tag[len(tag)-1])))
			var live []string
			for i := range total / writers {
				switch r := rng.IntN(10); {
				case len(live) < 3 || r < 4:
					key := fmt.Sprintf("%s%s-w%d-%d", prefix, tag, g, i)
					kv, err := s.Create(ctx, key, []byte(key), store.WriteOptions{})
					if err != nil {
						t.Errorf("create %s: %v", key, err)
						return
					}
					live = append(live, key)
					acks[g] = append(acks[g], fanRec{kv.ModRevision, store.Added, key})
				case r < 8:
					key := live[rng.IntN(len(live))]
					kv, err := s.Update(ctx, key, fmt.Appendf(nil, "%s-%d", key, i), 0, store.WriteOptions{})
					if err != nil {
						t.Errorf("update %s: %v", key, err)
						return
					}
					acks[g] = append(acks[g], fanRec{kv.ModRevision, store.Modified, key})
				default:
					j := rng.IntN(len(live))
					key := live[j]
					live = slices.Delete(live, j, j+1)
					_, rev, err := s.Delete(ctx, key, 0)
					if err != nil {
						t.Errorf("delete %s: %v", key, err)
						return
					}
					acks[g] = append(acks[g], fanRec{rev, store.Deleted, key})
				}
			}
		})
	}
	waitGroupOrFail(t, &wg, "writers")
	all := slices.Concat(acks...)
	if len(all) != total {
		t.Fatalf("%d of %d writes acknowledged", len(all), total)
	}
	return all
}

func sortRecs(recs []fanRec) []fanRec {
	slices.SortFunc(recs, func(a, b fanRec) int { return cmp.Compare(a.Rev, b.Rev) })
	return recs
}

func TestWatchFanOutHammer(t *testing.T) {
	const (
		watchers = 1000
		others   = 50
		writes   = 500
		writers  = 4
		// buffer is well above what a reading watcher lags behind, and well
		// below the writes a watcher that never reads misses.
		buffer = 200
	)
	s := openScratchStore(t, tbadger.Options{WatchBuffer: buffer, BookmarkInterval: 100 * time.Millisecond})
	ctx := t.Context()
	prefixA := store.Prefix("configmaps", "fan-a")
	prefixB := store.Prefix("configmaps", "fan-b")
	endA, endB := prefixA+"zz-end", prefixB+"zz-end"

	start := func(prefix, stopKey string, n int) ([]*fanWatch, *sync.WaitGroup) {
		ws := make([]*fanWatch, n)
		var wg sync.WaitGroup
		for i := range ws {
			w, err := s.Watch(ctx, prefix, 0)
			if err != nil {
				t.Fatalf("watch %s: %v", prefix, err)
			}
			ws[i] = &fanWatch{w: w}
			wg.Go(func() { ws[i].run(stopKey) })
		}
		return ws, &wg
	}
	watchA, wgA := start(prefixA, endA, watchers)
	watchB, wgB := start(prefixB, endB, others)

	acked := fanWrite(t, s, prefixA, "p1", writers, writes)

	// A watcher that never reads falls behind by more than its buffer while
	// the others keep up and the writers keep going.
	revBeforeSlow := s.Revision()
	slow, err := s.Watch(ctx, prefixA, 0)
	if err != nil {
		t.Fatal(err)
	}
	acked = append(acked, fanWrite(t, s, prefixA, "p2", writers, writes)...)

	kv, err := s.Create(ctx, endA, nil, store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	acked = append(acked, fanRec{kv.ModRevision, store.Added, endA})
	kv, err = s.Create(ctx, endB, nil, store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantB := []fanRec{{kv.ModRevision, store.Added, endB}}
	wantA := sortRecs(acked)

	waitGroupOrFail(t, wgA, "watchers of "+prefixA)
	waitGroupOrFail(t, wgB, "watchers of "+prefixB)
	bad := 0
	for i, f := range watchA {
		if err := f.check(wantA); err != nil {
			if bad++; bad <= 5 {
				t.Errorf("watcher %d of %s: %v", i, prefixA, err)
			}
		}
	}
	for i, f := range watchB {
		if err := f.check(wantB); err != nil {
			if bad++; bad <= 10 {
				t.Errorf("watcher %d of %s: %v", i, prefixB, err)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d watchers missed, repeated or reordered events", bad, watchers+others)
	}

	// The slow watcher got a gap-free prefix of its events, then ErrTooSlow.
	var wantSlow []fanRec
	for _, r := range wantA {
		if r.Rev > revBeforeSlow {
			wantSlow = append(wantSlow, r)
		}
	}
	var slowGot []fanRec
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for ev := range slow.Events() {
			if ev.Type != store.Bookmark {
				slowGot = append(slowGot, fanRec{ev.Revision, ev.Type, ev.KV.Key})
			}
		}
	}()
	select {
	case <-drained:
	case <-time.After(hangGuard):
		slow.Stop()
		t.Fatalf("slow watcher (buffer %d, %d events behind) was never cut off", buffer, len(wantSlow))
	}
	if !errors.Is(slow.Err(), errdefs.ErrTooSlow) {
		t.Errorf("slow watcher ended with %v after %d of %d events, want ErrTooSlow", slow.Err(), len(slowGot), len(wantSlow))
	}
	if len(slowGot) >= len(wantSlow) || !slices.Equal(slowGot, wantSlow[:len(slowGot)]) {
		t.Errorf("slow watcher received %d events that are not a proper prefix of the %d written", len(slowGot), len(wantSlow))
	}

	// Stop ends the others cleanly.
	for _, f := range slices.Concat(watchA, watchB) {
		f.w.Stop()
		for ev := range f.w.Events() {
			if ev.Type != store.Bookmark {
				t.Errorf("event %v %s at %d after the last write", ev.Type, ev.KV.Key, ev.Revision)
			}
		}
		if err := f.w.Err(); err != nil {
			t.Errorf("Err() after Stop = %v, want nil", err)
			break
		}
	}
}

func TestLeaseExpiryHammer(t *testing.T) {
	const (
		leases   = 200
		perLease = 3
		revoked  = 20 // of the renewed leases
		ttl      = time.Second
		renewal  = 200 * time.Millisecond
		settle   = 3 * time.Second
	)
	s := openScratchStore(t, tbadger.Options{LeaseCheckInterval: 50 * time.Millisecond})
	ctx := t.Context()
	prefix := store.Prefix("leases", "hammer")

	// One watch sees every deletion.
	w, err := s.Watch(ctx, prefix, 0)
	if err != nil {
		t.Fatal(err)
	}
	var (
		evMu    sync.Mutex
		deleted = map[string]store.Event{}
		evErrs  []string
	)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		var last int64
		for ev := range w.Events() {
			evMu.Lock()
			if ev.Type != store.Bookmark && ev.Revision <= last {
				evErrs = append(evErrs, fmt.Sprintf("event at revision %d after %d", ev.Revision, last))
			}
			last = max(last, ev.Revision)
			if ev.Type == store.Deleted {
				if _, dup := deleted[ev.KV.Key]; dup {
					evErrs = append(evErrs, "second deletion of "+ev.KV.Key)
				}
				deleted[ev.KV.Key] = ev
			}
			evMu.Unlock()
		}
	}()

	type leaseState struct {
		id      int64
		keys    []string
		created []int64 // revision of each key's creation
		renewed bool
		revoked atomic.Bool
		stop    chan struct{}
	}
	ls := make([]*leaseState, leases)
	var renewers sync.WaitGroup
	renew := func(l *leaseState) {
		tick := time.NewTicker(renewal)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			if err := s.KeepAlive(ctx, l.id); err != nil {
				if !errors.Is(err, errdefs.ErrNotFound) || !l.revoked.Load() {
					t.Errorf("keep lease %d alive: %v", l.id, err)
				}
				return
			}
		}
	}

	// Set up: 8 workers grant leases and attach keys; renewed leases start
	// being renewed as soon as they exist.
	var setup sync.WaitGroup
	next := atomic.Int64{}
	for range 8 {
		setup.Go(func() {
			for i := int(next.Add(1) - 1); i < leases; i = int(next.Add(1) - 1) {
				l := &leaseState{renewed: i%2 == 0, stop: make(chan struct{})}
				ls[i] = l
				id, err := s.Grant(ctx, ttl)
				if err != nil {
					t.Errorf("grant: %v", err)
					return
				}
				l.id = id
				if l.renewed {
					renewers.Go(func() { renew(l) })
				}
				for k := range perLease {
					key := fmt.Sprintf("%sl%03d-k%d", prefix, i, k)
					kv, err := s.Create(ctx, key, []byte(key), store.WriteOptions{Lease: id})
					if err != nil {
						t.Errorf("create %s with lease %d: %v (setup slower than the %v ttl?)", key, id, err, ttl)
						return
					}
					if kv.Lease != id {
						t.Errorf("create %s with lease %d returned lease %d", key, id, kv.Lease)
					}
					l.keys = append(l.keys, key)
					l.created = append(l.created, kv.ModRevision)
				}
			}
		})
	}
	setup.Wait()
	stopRenewers := func() {
		for _, l := range ls {
			if l != nil && l.renewed {
				close(l.stop)
			}
		}
		renewers.Wait()
	}
	if t.Failed() {
		stopRenewers()
		t.FailNow()
	}
	setupDone := time.Now()

	// Revoke some renewed leases while they are being renewed.
	var revokers sync.WaitGroup
	for i := 0; i < 2*revoked; i += 2 {
		l := ls[i]
		revokers.Go(func() {
			time.Sleep(time.Duration(rand.Int64N(int64(ttl))))
			l.revoked.Store(true)
			if err := s.Revoke(ctx, l.id); err != nil {
				t.Errorf("revoke lease %d: %v", l.id, err)
			}
		})
	}
	revokers.Wait()

	// Wait for the deletion of every key of an expired or revoked lease,
	// and for at least settle after setup.
	var gone, alive []string
	leaseOf := map[string]*leaseState{}
	for _, l := range ls {
		for _, k := range l.keys {
			leaseOf[k] = l
			if !l.renewed || l.revoked.Load() {
				gone = append(gone, k)
			} else {
				alive = append(alive, k)
			}
		}
	}
	deadline := time.Now().Add(hangGuard)
	for {
		evMu.Lock()
		seen := 0
		for _, k := range gone {
			if _, ok := deleted[k]; ok {
				seen++
			}
		}
		evMu.Unlock()
		if seen == len(gone) && time.Since(setupDone) >= settle {
			break
		}
		if time.Now().After(deadline) {
			stopRenewers()
			t.Fatalf("only %d of %d keys of expired or revoked leases deleted after %v", seen, len(gone), hangGuard)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// While the renewed leases are still being renewed: their keys are all
	// there and nothing else is.
	for _, k := range alive {
		kv, err := s.Get(ctx, k)
		if err != nil {
			t.Errorf("key %s of renewed lease %d: %v", k, leaseOf[k].id, err)
			continue
		}
		if kv.Lease != leaseOf[k].id {
			t.Errorf("key %s has lease %d, want %d", k, kv.Lease, leaseOf[k].id)
		}
	}
	for _, k := range gone {
		if _, err := s.Get(ctx, k); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("key %s of expired or revoked lease %d: Get = %v, want ErrNotFound", k, leaseOf[k].id, err)
		}
	}
	var listed []string
	for kv, err := range listPaged(ctx, s, prefix, 0) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, kv.Key)
	}
	slices.Sort(alive)
	if !slices.Equal(listed, alive) {
		t.Errorf("list has %d keys, want the %d keys of live leases", len(listed), len(alive))
	}
	for _, l := range ls {
		if l.renewed && !l.revoked.Load() {
			continue
		}
		if err := s.KeepAlive(ctx, l.id); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("KeepAlive of expired or revoked lease %d = %v, want ErrNotFound", l.id, err)
		}
	}
	stopRenewers()

	w.Stop()
	<-watchDone
	evMu.Lock()
	defer evMu.Unlock()
	for _, e := range evErrs {
		t.Error(e)
	}
	for k, ev := range deleted {
		l, ok := leaseOf[k]
		switch {
		case !ok:
			t.Errorf("deletion of unknown key %s", k)
		case l.renewed && !l.revoked.Load():
			t.Errorf("key %s of renewed lease %d deleted at revision %d", k, l.id, ev.Revision)
		case ev.KV.Lease != l.id || ev.KV.ModRevision != l.created[slices.Index(l.keys, k)] || ev.Revision <= ev.KV.ModRevision:
			t.Errorf("deletion of %s at revision %d carries lease %d mod revision %d; want lease %d mod revision %d",
				k, ev.Revision, ev.KV.Lease, ev.KV.ModRevision, l.id, l.created[slices.Index(l.keys, k)])
		}
	}
}
