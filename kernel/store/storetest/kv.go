package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

func testCreateGet(t *testing.T, s store.Store, _ config) {
	values := []struct {
		name  string
		value []byte
	}{
		{"empty", []byte{}},
		{"json", []byte(`{"kind":"Pod","metadata":{"name":"web-0"}}`)},
		{"binary", []byte{0, 1, 0xff, '\n', 0}},
		{"max size", bytes.Repeat([]byte{'m'}, MaxValueSize)},
	}
	for i, v := range values {
		t.Run(v.name, func(t *testing.T) {
			key := podKey("ns", fmt.Sprintf("p%d", i))
			before := s.Revision()
			kv, err := s.Create(t.Context(), key, v.value, store.WriteOptions{})
			if err != nil {
				t.Fatalf("Create(%q): %v", key, err)
			}
			want := store.KV{Key: key, Value: v.value, CreateRevision: before + 1, ModRevision: before + 1}
			wantKV(t, kv, want, "Create")
			wantRevision(t, s, before+1, "after Create")
			wantKV(t, get(t, s, key), want, "Get")
		})
	}
}

func testRevisionIncrements(t *testing.T, s store.Store, _ config) {
	rev := s.Revision()
	step := func(op string, got int64) {
		t.Helper()
		rev++
		if got != rev {
			t.Fatalf("%s got revision %d, want %d", op, got, rev)
		}
		wantRevision(t, s, rev, "after "+op)
	}
	a := create(t, s, podKey("ns", "a"), "a1")
	step("create a", a.ModRevision)
	b := create(t, s, podKey("ns", "b"), "b1")
	step("create b", b.ModRevision)
	a = update(t, s, a.Key, "a2", a.ModRevision)
	step("conditional update a", a.ModRevision)
	a = update(t, s, a.Key, "a3", 0)
	step("unconditional update a", a.ModRevision)
	_, r := del(t, s, b.Key, 0)
	step("delete b", r)
	b = create(t, s, b.Key, "b2")
	step("re-create b", b.ModRevision)
	_, r = del(t, s, a.Key, a.ModRevision)
	step("conditional delete a", r)
	if res := list(t, s, store.Root, store.ListOptions{}); res.Revision != rev {
		t.Fatalf("List().Revision = %d, want %d", res.Revision, rev)
	}
}

// testFailedWritesChangeNothing checks that every kind of failed write leaves
// the revision, the data and the event stream untouched.
func testFailedWritesChangeNothing(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a1")
	stale := a.ModRevision
	a = update(t, s, a.Key, "a2", a.ModRevision)
	rev := s.Revision()
	w := watch(t, s, store.Root, rev)
	missing := podKey("ns", "missing")
	failures := failingWrites(t.Context(), s, a, stale, missing)
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			wantErr(t, f.write(), f.want, f.name)
			wantRevision(t, s, rev, "after a failed write")
			wantKV(t, get(t, s, a.Key), a, "Get after a failed write")
			_, err := s.Get(t.Context(), missing)
			wantErr(t, err, errdefs.ErrNotFound, "Get of a key no write succeeded on")
		})
	}
	// The first event after the failures is the next successful write, at
	// the very next revision: the failures published nothing.
	b := create(t, s, podKey("ns", "b"), "b1")
	if b.ModRevision != rev+1 {
		t.Fatalf("first successful write after failures got revision %d, want %d", b.ModRevision, rev+1)
	}
	wantEvents(t, w, added(b))
}

// failingWrite is a write that must fail with an error in category want.
type failingWrite struct {
	name  string
	write func() error
	want  error
}

// failingWrites lists one failing write of every kind, given the current
// state a of a key, a stale revision of it, and a key missing that does not
// exist.
func failingWrites(ctx context.Context, s store.Store, a store.KV, stale int64, missing string) []failingWrite {
	big := make([]byte, MaxValueSize+1)
	return []failingWrite{
		{"create existing", func() error {
			_, err := s.Create(ctx, a.Key, []byte("x"), store.WriteOptions{})
			return err
		}, errdefs.ErrAlreadyExists},
		{"update missing", func() error {
			_, err := s.Update(ctx, missing, []byte("x"), 0, store.WriteOptions{})
			return err
		}, errdefs.ErrNotFound},
		{"update stale", func() error {
			_, err := s.Update(ctx, a.Key, []byte("x"), stale, store.WriteOptions{})
			return err
		}, errdefs.ErrConflict},
		{"update future revision", func() error {
			_, err := s.Update(ctx, a.Key, []byte("x"), a.ModRevision+100, store.WriteOptions{})
			return err
		}, errdefs.ErrConflict},
		{"delete stale", func() error {
			_, _, err := s.Delete(ctx, a.Key, stale)
			return err
		}, errdefs.ErrConflict},
		{"delete missing", func() error {
			_, _, err := s.Delete(ctx, missing, 0)
			return err
		}, errdefs.ErrNotFound},
		{"delete missing conditional", func() error {
			_, _, err := s.Delete(ctx, missing, a.ModRevision)
			return err
		}, errdefs.ErrNotFound},
		{"create invalid key", func() error {
			_, err := s.Create(ctx, "/registry/pods//x", []byte("x"), store.WriteOptions{})
			return err
		}, errdefs.ErrInvalid},
		{"update invalid key", func() error {
			_, err := s.Update(ctx, "/registry/pods/../x", []byte("x"), 0, store.WriteOptions{})
			return err
		}, errdefs.ErrInvalid},
		{"delete invalid key", func() error {
			_, _, err := s.Delete(ctx, "pods/x", 0)
			return err
		}, errdefs.ErrInvalid},
		{"create too large", func() error {
			_, err := s.Create(ctx, missing, big, store.WriteOptions{})
			return err
		}, errdefs.ErrTooLarge},
		{"update too large", func() error {
			_, err := s.Update(ctx, a.Key, big, 0, store.WriteOptions{})
			return err
		}, errdefs.ErrTooLarge},
		{"create with unknown lease", func() error {
			_, err := s.Create(ctx, missing, []byte("x"), store.WriteOptions{Lease: unknownLease})
			return err
		}, errdefs.ErrNotFound},
		{"update with unknown lease", func() error {
			_, err := s.Update(ctx, a.Key, []byte("x"), 0, store.WriteOptions{Lease: unknownLease})
			return err
		}, errdefs.ErrNotFound},
	}
}

func testCreateExisting(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a1")
	_, err := s.Create(t.Context(), a.Key, []byte("a2"), store.WriteOptions{})
	wantErr(t, err, errdefs.ErrAlreadyExists, "Create of an existing key")
	wantKV(t, get(t, s, a.Key), a, "Get after a failed Create")
	wantRevision(t, s, a.ModRevision, "after a failed Create")
}

func testUpdateMissing(t *testing.T, s store.Store, _ config) {
	gone := create(t, s, podKey("ns", "gone"), "v")
	_, rev := del(t, s, gone.Key, 0)
	for _, key := range []string{podKey("ns", "never"), gone.Key} {
		for _, ifRevision := range []int64{0, gone.ModRevision} {
			_, err := s.Update(t.Context(), key, []byte("x"), ifRevision, store.WriteOptions{})
			wantErr(t, err, errdefs.ErrNotFound, fmt.Sprintf("Update(%q, ifRevision %d)", key, ifRevision))
			_, err = s.Get(t.Context(), key)
			wantErr(t, err, errdefs.ErrNotFound, "Get after a failed Update")
		}
	}
	wantRevision(t, s, rev, "after failed Updates")
}

func testUpdateConditional(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a1")
	other := create(t, s, podKey("ns", "other"), "o1")
	a2 := update(t, s, a.Key, "a2", a.ModRevision)
	want := store.KV{Key: a.Key, Value: []byte("a2"), CreateRevision: a.CreateRevision, ModRevision: other.ModRevision + 1}
	wantKV(t, a2, want, "conditional Update")
	for _, stale := range []int64{a.ModRevision, other.ModRevision, a2.ModRevision + 1} {
		_, err := s.Update(t.Context(), a.Key, []byte("a3"), stale, store.WriteOptions{})
		wantErr(t, err, errdefs.ErrConflict, fmt.Sprintf("Update with ifRevision %d (current %d)", stale, a2.ModRevision))
		wantKV(t, get(t, s, a.Key), a2, "Get after a conflicting Update")
	}
	wantRevision(t, s, a2.ModRevision, "after conflicting Updates")
	a3 := update(t, s, a.Key, "a3", a2.ModRevision)
	wantKV(t, a3, store.KV{Key: a.Key, Value: []byte("a3"), CreateRevision: a.CreateRevision, ModRevision: a2.ModRevision + 1}, "second conditional Update")
}

func testUpdateUnconditional(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a1")
	for i := 2; i <= 4; i++ {
		value := fmt.Sprintf("a%d", i)
		got := update(t, s, a.Key, value, 0)
		want := store.KV{Key: a.Key, Value: []byte(value), CreateRevision: a.CreateRevision, ModRevision: a.ModRevision + int64(i) - 1}
		wantKV(t, got, want, "unconditional Update")
		wantKV(t, get(t, s, a.Key), want, "Get after Update")
	}
}

func testDeleteReturnsPrevious(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a1")
	a = update(t, s, a.Key, "a2", 0)
	prev, rev := del(t, s, a.Key, 0)
	wantKV(t, prev, a, "Delete's previous KV")
	if rev != a.ModRevision+1 {
		t.Fatalf("Delete revision = %d, want %d", rev, a.ModRevision+1)
	}
	wantRevision(t, s, rev, "after Delete")
	_, err := s.Get(t.Context(), a.Key)
	wantErr(t, err, errdefs.ErrNotFound, "Get after Delete")
	_, _, err = s.Delete(t.Context(), a.Key, 0)
	wantErr(t, err, errdefs.ErrNotFound, "second Delete")
	if res := list(t, s, store.Root, store.ListOptions{}); len(res.KVs) != 0 {
		t.Fatalf("List after Delete = %s, want none", fmtKVs(res.KVs))
	}
}

func testDeleteConditional(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a1")
	a = update(t, s, a.Key, "a2", 0)
	for _, stale := range []int64{a.CreateRevision, a.ModRevision + 1} {
		_, _, err := s.Delete(t.Context(), a.Key, stale)
		wantErr(t, err, errdefs.ErrConflict, fmt.Sprintf("Delete with ifRevision %d (current %d)", stale, a.ModRevision))
		wantKV(t, get(t, s, a.Key), a, "Get after a conflicting Delete")
		wantRevision(t, s, a.ModRevision, "after a conflicting Delete")
	}
	prev, rev := del(t, s, a.Key, a.ModRevision)
	wantKV(t, prev, a, "conditional Delete's previous KV")
	if rev != a.ModRevision+1 {
		t.Fatalf("conditional Delete revision = %d, want %d", rev, a.ModRevision+1)
	}
}

func testRecreateAfterDelete(t *testing.T, s store.Store, _ config) {
	start := s.Revision()
	w := watch(t, s, store.Root, start)
	a1 := create(t, s, podKey("ns", "a"), "first")
	prev, rev := del(t, s, a1.Key, 0)
	a2 := create(t, s, a1.Key, "second")
	want := store.KV{Key: a1.Key, Value: []byte("second"), CreateRevision: rev + 1, ModRevision: rev + 1}
	wantKV(t, a2, want, "re-Create")
	wantKV(t, get(t, s, a1.Key), want, "Get after re-Create")
	wantEvents(t, w, added(a1), deleted(prev, rev), added(a2))
}

// testValuesAreCopied checks that the store neither keeps the caller's value
// slices nor hands out its own.
func testValuesAreCopied(t *testing.T, s store.Store, _ config) {
	key := podKey("ns", "a")
	check := func(want, after string) {
		t.Helper()
		if got := get(t, s, key); string(got.Value) != want {
			t.Fatalf("Get after mutating %s = %q, want %q", after, got.Value, want)
		}
		if res := list(t, s, "/registry/pods/", store.ListOptions{}); len(res.KVs) != 1 || string(res.KVs[0].Value) != want {
			t.Fatalf("List after mutating %s = %s, want one value %q", after, fmtKVs(res.KVs), want)
		}
	}
	// A first write, so that start is a revision to resume from.
	start := create(t, s, "/registry/services/ns/first", "first").ModRevision
	w := watch(t, s, "/registry/pods/", 0)
	buf := []byte("original")
	kv, err := s.Create(t.Context(), key, buf, store.WriteOptions{})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	buf[0] = 'X'
	check("original", "the slice passed to Create")
	if ev := next(t, w); string(ev.KV.Value) != "original" {
		t.Fatalf("watch event after mutating the slice passed to Create = %s, want value %q", fmtEvent(ev), "original")
	}
	if ev := next(t, watch(t, s, "/registry/pods/", start)); string(ev.KV.Value) != "original" {
		t.Fatalf("resumed watch event after mutating the slice passed to Create = %s, want value %q", fmtEvent(ev), "original")
	}
	kv.Value[1] = 'X'
	check("original", "the slice Create returned")
	got := get(t, s, key)
	got.Value[2] = 'X'
	check("original", "the slice Get returned")
	res := list(t, s, "/registry/pods/", store.ListOptions{})
	res.KVs[0].Value[3] = 'X'
	check("original", "the slice List returned")
	buf = []byte("updated")
	if kv, err = s.Update(t.Context(), key, buf, 0, store.WriteOptions{}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	buf[0] = 'X'
	check("updated", "the slice passed to Update")
	kv.Value[1] = 'X'
	check("updated", "the slice Update returned")
}

var invalidKeys = []struct {
	name string
	key  string
}{
	{"empty", ""},
	{"root", "/registry/"},
	{"one segment", "/registry/pods"},
	{"relative", "pods/x"},
	{"trailing slash", "/registry/pods/x/"},
	{"empty segment", "/registry/pods//x"},
	{"dot dot", "/registry/pods/../x"},
	{"five segments", "/registry/a/b/c/d/e"},
	{"space", "/registry/pods/a b"},
	{"NUL", "/registry/pods/a\x00b"},
	{"non-ASCII", "/registry/pods/caf\u00e9"},
	{"too long", "/registry/pods/" + strings.Repeat("x", store.MaxKeyLen)},
}

func testInvalidKeys(t *testing.T, s store.Store, _ config) {
	rev := s.Revision()
	ctx := t.Context()
	for _, k := range invalidKeys {
		t.Run(k.name, func(t *testing.T) {
			_, err := s.Get(ctx, k.key)
			wantErr(t, err, errdefs.ErrInvalid, "Get")
			_, err = s.Create(ctx, k.key, []byte("x"), store.WriteOptions{})
			wantErr(t, err, errdefs.ErrInvalid, "Create")
			_, err = s.Update(ctx, k.key, []byte("x"), 0, store.WriteOptions{})
			wantErr(t, err, errdefs.ErrInvalid, "Update")
			_, _, err = s.Delete(ctx, k.key, 0)
			wantErr(t, err, errdefs.ErrInvalid, "Delete")
			wantRevision(t, s, rev, "after invalid writes")
		})
	}
}

func testInvalidPrefixes(t *testing.T, s store.Store, _ config) {
	create(t, s, podKey("ns", "a"), "a")
	prefixes := []struct {
		name   string
		prefix string
	}{
		{"empty", ""},
		{"root without slash", "/registry"},
		{"relative", "pods/"},
		{"root double slash", "/registry//"},
		{"double slash", "/registry/pods//"},
		{"dot dot", "/registry/pods/../"},
		{"space", "/registry/po ds/"},
		{"NUL", "/registry/pods\x00/"},
		{"non-ASCII", "/registry/p\u00f6ds/"},
		{"too long", "/registry/" + strings.Repeat("p", store.MaxKeyLen) + "/"},
	}
	for _, p := range prefixes {
		t.Run(p.name, func(t *testing.T) {
			_, err := s.List(t.Context(), p.prefix, store.ListOptions{})
			wantErr(t, err, errdefs.ErrInvalid, "List")
			w, err := s.Watch(t.Context(), p.prefix, 0)
			if err == nil {
				w.Stop()
			}
			wantErr(t, err, errdefs.ErrInvalid, "Watch")
		})
	}
}

func testTooLarge(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a1")
	big := bytes.Repeat([]byte{'b'}, MaxValueSize+1)
	_, err := s.Create(t.Context(), podKey("ns", "big"), big, store.WriteOptions{})
	wantErr(t, err, errdefs.ErrTooLarge, "Create of MaxValueSize+1 bytes")
	_, err = s.Get(t.Context(), podKey("ns", "big"))
	wantErr(t, err, errdefs.ErrNotFound, "Get after a too-large Create")
	_, err = s.Update(t.Context(), a.Key, big, 0, store.WriteOptions{})
	wantErr(t, err, errdefs.ErrTooLarge, "Update to MaxValueSize+1 bytes")
	wantKV(t, get(t, s, a.Key), a, "Get after a too-large Update")
	wantRevision(t, s, a.ModRevision, "after too-large writes")
	atMax := update(t, s, a.Key, string(big[:MaxValueSize]), 0)
	if len(get(t, s, a.Key).Value) != MaxValueSize || atMax.ModRevision != a.ModRevision+1 {
		t.Fatalf("Update to exactly MaxValueSize bytes: got %s", fmtKV(atMax))
	}
}

func testConcurrentCreate(t *testing.T, s store.Store, _ config) {
	const n = 8
	key := podKey("ns", "contended")
	rev := s.Revision()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Create(t.Context(), key, []byte(strconv.Itoa(i)), store.WriteOptions{})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("Creates %d and %d of the same key both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, errdefs.ErrAlreadyExists):
			t.Fatalf("Create %d: error %v, want nil or ErrAlreadyExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no concurrent Create succeeded")
	}
	want := store.KV{Key: key, Value: []byte(strconv.Itoa(winner)), CreateRevision: rev + 1, ModRevision: rev + 1}
	wantKV(t, get(t, s, key), want, "Get after concurrent Creates")
	wantRevision(t, s, rev+1, "after concurrent Creates")
}

// testConcurrentCompareAndSwap runs read-modify-write increments of one
// counter from several goroutines; conditional updates make them atomic.
func testConcurrentCompareAndSwap(t *testing.T, s store.Store, _ config) {
	const workers, increments = 4, 25
	counter := create(t, s, podKey("ns", "counter"), "0")
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for done := 0; done < increments; {
				kv, err := s.Get(t.Context(), counter.Key)
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				n, err := strconv.Atoi(string(kv.Value))
				if err != nil {
					t.Errorf("counter value %q: %v", kv.Value, err)
					return
				}
				_, err = s.Update(t.Context(), counter.Key, []byte(strconv.Itoa(n+1)), kv.ModRevision, store.WriteOptions{})
				switch {
				case err == nil:
					done++
				case !errors.Is(err, errdefs.ErrConflict):
					t.Errorf("Update: error %v, want nil or ErrConflict", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	want := store.KV{Key: counter.Key, Value: []byte(strconv.Itoa(workers * increments)),
		CreateRevision: counter.ModRevision, ModRevision: counter.ModRevision + workers*increments}
	wantKV(t, get(t, s, counter.Key), want, "counter after concurrent increments")
	wantRevision(t, s, want.ModRevision, "after concurrent increments")
}

// testCloseDuringWrites closes the store while writers and a watcher are
// busy: every call fails only with ErrUnavailable, and the watch ends.
func testCloseDuringWrites(t *testing.T, s store.Store, _ config) {
	const writers = 4
	w := watch(t, s, store.Root, 0)
	started := make(chan struct{}, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			key := podKey("ns", fmt.Sprintf("w%d", i))
			for n := 0; ; n++ {
				var err error
				if n == 0 {
					_, err = s.Create(t.Context(), key, []byte("0"), store.WriteOptions{})
				} else {
					_, err = s.Update(t.Context(), key, []byte(strconv.Itoa(n)), 0, store.WriteOptions{})
				}
				if n == 0 {
					started <- struct{}{}
				}
				if err != nil {
					if !errors.Is(err, errdefs.ErrUnavailable) {
						t.Errorf("write %d of %s during Close: error %v, want ErrUnavailable", n, key, err)
					}
					return
				}
			}
		})
	}
	for range writers {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close during writes: %v", err)
	}
	wg.Wait()
	waitClosed(t, w)
	wantErr(t, w.Err(), errdefs.ErrUnavailable, "Err() of a watch ended by Close")
}

// testClosed checks that every call on a closed store fails with
// ErrUnavailable and that running watches end.
func testClosed(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a1")
	lease, err := s.Grant(t.Context(), time.Minute)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	w := watch(t, s, store.Root, 0)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, a.Key); return err }},
		{"List", func() error { _, err := s.List(ctx, store.Root, store.ListOptions{}); return err }},
		{"Create", func() error {
			_, err := s.Create(ctx, podKey("ns", "b"), []byte("b"), store.WriteOptions{})
			return err
		}},
		{"Update", func() error { _, err := s.Update(ctx, a.Key, []byte("a2"), 0, store.WriteOptions{}); return err }},
		{"Delete", func() error { _, _, err := s.Delete(ctx, a.Key, 0); return err }},
		{"Watch", func() error {
			w, err := s.Watch(ctx, store.Root, 0)
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"Grant", func() error { _, err := s.Grant(ctx, time.Minute); return err }},
		{"KeepAlive", func() error { return s.KeepAlive(ctx, lease) }},
		{"Revoke", func() error { return s.Revoke(ctx, lease) }},
		{"Compact", func() error { return s.Compact(ctx, a.ModRevision) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, c.call(), errdefs.ErrUnavailable, c.name+" after Close")
		})
	}
	t.Run("running watch", func(t *testing.T) {
		for _, ev := range waitClosed(t, w) {
			if ev.Type != store.Bookmark {
				t.Fatalf("watch delivered %s after Close with no write", fmtEvent(ev))
			}
		}
		wantErr(t, w.Err(), errdefs.ErrUnavailable, "Err() of a watch ended by Close")
	})
	t.Run("second Close", func(t *testing.T) {
		if err := s.Close(); err != nil && !errors.Is(err, errdefs.ErrUnavailable) {
			t.Fatalf("second Close: error %v, want nil or ErrUnavailable", err)
		}
	})
}
