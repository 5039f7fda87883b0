package storetest

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

func testCompact(t *testing.T, s store.Store, _ config) {
	const prefix = "/registry/pods/ns/"
	old := create(t, s, prefix+"old", "written once, before the compaction")
	gone := create(t, s, prefix+"gone", "deleted before the compaction")
	del(t, s, gone.Key, 0)
	a1 := create(t, s, prefix+"a", "a1")
	a2 := update(t, s, a1.Key, "a2", 0)
	r := a2.ModRevision
	a3 := update(t, s, a1.Key, "a3", 0)
	b := create(t, s, prefix+"b", "b")
	rev := s.Revision()

	if err := s.Compact(t.Context(), r); err != nil {
		t.Fatalf("Compact(%d): %v", r, err)
	}
	if got := s.CompactedRevision(); got != r {
		t.Fatalf("CompactedRevision() = %d, want %d", got, r)
	}
	wantRevision(t, s, rev, "after Compact")

	t.Run("reads before the compacted revision are gone", func(t *testing.T) {
		for _, at := range []int64{old.ModRevision, gone.ModRevision, r - 1} {
			_, err := s.List(t.Context(), prefix, store.ListOptions{Revision: at})
			wantErr(t, err, errdefs.ErrGone, fmt.Sprintf("List at revision %d (compacted %d)", at, r))
		}
	})
	t.Run("read at the compacted revision", func(t *testing.T) {
		res := list(t, s, prefix, store.ListOptions{Revision: r})
		wantKVs(t, res.KVs, []store.KV{a2, old}, fmt.Sprintf("List at revision %d", r))
	})
	t.Run("current reads", func(t *testing.T) {
		res := list(t, s, prefix, store.ListOptions{})
		wantKVs(t, res.KVs, []store.KV{a3, b, old}, "current List")
		wantKV(t, get(t, s, old.Key), old, "Get of a key last written before the compaction")
		_, err := s.Get(t.Context(), gone.Key)
		wantErr(t, err, errdefs.ErrNotFound, "Get of a key deleted before the compaction")
	})
	t.Run("watches before the compacted revision are gone", func(t *testing.T) {
		for _, after := range []int64{old.ModRevision, r - 1} {
			w, err := s.Watch(t.Context(), prefix, after)
			if err == nil {
				w.Stop()
			}
			wantErr(t, err, errdefs.ErrGone, fmt.Sprintf("Watch after revision %d (compacted %d)", after, r))
		}
	})
	t.Run("watch from the compacted revision", func(t *testing.T) {
		w := watch(t, s, prefix, r)
		c := create(t, s, prefix+"c", "c")
		if c.ModRevision != rev+1 {
			t.Fatalf("first write after Compact got revision %d, want %d", c.ModRevision, rev+1)
		}
		wantEvents(t, w, modified(a3, a2.Value), added(b), added(c))
	})
	t.Run("compacting backwards", func(t *testing.T) {
		// The contract leaves the result of compacting to an already
		// compacted revision open; the compacted revision must not move back.
		for _, back := range []int64{r - 1, r} {
			_ = s.Compact(t.Context(), back)
			if got := s.CompactedRevision(); got != r {
				t.Fatalf("CompactedRevision() after Compact(%d) = %d, want %d", back, got, r)
			}
		}
	})
}

func testCompactCurrent(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a")
	b := create(t, s, podKey("ns", "b"), "b")
	r := s.Revision()
	if err := s.Compact(t.Context(), r); err != nil {
		t.Fatalf("Compact(%d) at the current revision: %v", r, err)
	}
	wantKVs(t, list(t, s, store.Root, store.ListOptions{}).KVs, []store.KV{a, b}, "current List")
	wantKVs(t, list(t, s, store.Root, store.ListOptions{Revision: r}).KVs, []store.KV{a, b}, "List at the compacted revision")
	_, err := s.List(t.Context(), store.Root, store.ListOptions{Revision: r - 1})
	wantErr(t, err, errdefs.ErrGone, "List before the compacted revision")
	w := watch(t, s, store.Root, r)
	c := create(t, s, podKey("ns", "c"), "c")
	wantEvents(t, w, added(c))
}

func testCompactFuture(t *testing.T, s store.Store, _ config) {
	initial := s.CompactedRevision()
	a := create(t, s, podKey("ns", "a"), "a1")
	a2 := update(t, s, a.Key, "a2", 0)
	rev := s.Revision()
	for _, future := range []int64{rev + 1, rev + 100} {
		err := s.Compact(t.Context(), future)
		wantErr(t, err, errdefs.ErrFutureRevision, fmt.Sprintf("Compact(%d) at current revision %d", future, rev))
	}
	if got := s.CompactedRevision(); got != initial {
		t.Fatalf("CompactedRevision() after failed compactions = %d, want %d", got, initial)
	}
	wantRevision(t, s, rev, "after failed compactions")
	res := list(t, s, store.Root, store.ListOptions{Revision: a.ModRevision})
	wantKVs(t, res.KVs, []store.KV{a}, "List at an old revision after failed compactions")
	wantKV(t, get(t, s, a.Key), a2, "Get after failed compactions")
}

// testConcurrentCompact compacts to several revisions at once, round after
// round: the compacted revision ends at the highest and never moves back.
func testConcurrentCompact(t *testing.T, s store.Store, _ config) {
	key := podKey("ns", "a")
	kv := create(t, s, key, "0")
	for round := range 10 {
		revs := make([]int64, 6)
		for i := range revs {
			kv = update(t, s, key, fmt.Sprintf("%d-%d", round, i), 0)
			revs[i] = kv.ModRevision
		}
		highest := revs[len(revs)-1]
		rand.Shuffle(len(revs), func(i, j int) { revs[i], revs[j] = revs[j], revs[i] })
		var wg sync.WaitGroup
		for _, r := range revs {
			wg.Go(func() { _ = s.Compact(t.Context(), r) }) // lower ones may fail: the contract leaves that open
		}
		wg.Wait()
		if got := s.CompactedRevision(); got != highest {
			t.Fatalf("round %d: CompactedRevision() after concurrent Compact to %v = %d, want %d", round, revs, got, highest)
		}
		_, err := s.List(t.Context(), store.Root, store.ListOptions{Revision: highest - 1})
		wantErr(t, err, errdefs.ErrGone, fmt.Sprintf("round %d: List before the highest compacted revision", round))
	}
}
