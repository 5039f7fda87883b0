package storetest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// model is the expected current state: key -> KV.
type model map[string]store.KV

// under returns the model's KVs whose key has the string prefix, in key order.
func (m model) under(prefix string) []store.KV {
	var kvs []store.KV
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if strings.HasPrefix(k, prefix) {
			kvs = append(kvs, m[k])
		}
	}
	return kvs
}

func testListPrefix(t *testing.T, s store.Store, _ config) {
	m := model{}
	// Created out of order, with keys that share string prefixes.
	for _, key := range []string{
		"/registry/pods/ns1/b", "/registry/pods/ns10/x", "/registry/pods/ns1/a", "/registry/services/ns1/s",
		"/registry/pods/ns2/y", "/registry/pods/ns1/c", "/registry/pods/a", "/registry/pods/ab/z",
	} {
		m[key] = create(t, s, key, "value of "+key)
	}
	rev := s.Revision()
	tests := []struct {
		prefix string
		want   []string
	}{
		{"/registry/pods/ns1/", []string{"/registry/pods/ns1/a", "/registry/pods/ns1/b", "/registry/pods/ns1/c"}},
		{"/registry/pods/ns1", []string{"/registry/pods/ns1/a", "/registry/pods/ns1/b", "/registry/pods/ns1/c", "/registry/pods/ns10/x"}},
		{"/registry/pods/ab/", []string{"/registry/pods/ab/z"}},
		{"/registry/pods/a", []string{"/registry/pods/a", "/registry/pods/ab/z"}},
		{"/registry/pods/", []string{"/registry/pods/a", "/registry/pods/ab/z", "/registry/pods/ns1/a", "/registry/pods/ns1/b",
			"/registry/pods/ns1/c", "/registry/pods/ns10/x", "/registry/pods/ns2/y"}},
		{"/registry/", slices.Sorted(maps.Keys(m))},
		{"/registry/nothing/", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			res := list(t, s, tt.prefix, store.ListOptions{})
			want := make([]store.KV, len(tt.want))
			for i, k := range tt.want {
				want[i] = m[k]
			}
			wantKVs(t, res.KVs, want, fmt.Sprintf("List(%q)", tt.prefix))
			if res.More || res.Revision != rev {
				t.Fatalf("List(%q): More = %v, Revision = %d; want false, %d", tt.prefix, res.More, res.Revision, rev)
			}
		})
	}
	t.Run("Get is exact", func(t *testing.T) {
		for _, key := range []string{"/registry/pods/ns1", "/registry/pods/ab", "/registry/pods/ns1/a0"} {
			_, err := s.Get(t.Context(), key)
			wantErr(t, err, errdefs.ErrNotFound, fmt.Sprintf("Get(%q)", key))
		}
	})
}

// createPages creates n keys prefix+"k00".. and neighbours just outside
// prefix on both sides in key order.
func createPages(t testing.TB, s store.Store, prefix string, n int) model {
	t.Helper()
	m := model{}
	for i := range n {
		key := fmt.Sprintf("%sk%02d", prefix, i)
		m[key] = create(t, s, key, "v"+key)
	}
	before := strings.TrimSuffix(prefix, "/") + "-/x" // '-' sorts before '/'
	after := strings.TrimSuffix(prefix, "/") + "0/x"  // '0' sorts after '/'
	create(t, s, before, "outside")
	create(t, s, after, "outside")
	return m
}

func testListPagination(t *testing.T, s store.Store, _ config) {
	const prefix = "/registry/pods/p/"
	m := createPages(t, s, prefix, 25)
	all := m.under(prefix)
	rev := s.Revision()
	for _, limit := range []int{10, 1, 5, 24, 25, 26, 0} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			var got []store.KV
			start := ""
			for page := 0; ; page++ {
				res := list(t, s, prefix, store.ListOptions{StartKey: start, Limit: limit})
				remaining := len(all) - len(got)
				wantLen := remaining
				if limit > 0 && limit < remaining {
					wantLen = limit
				}
				wantKVs(t, res.KVs, all[len(got):len(got)+wantLen], fmt.Sprintf("page %d", page))
				got = append(got, res.KVs...)
				if wantMore := len(got) < len(all); res.More != wantMore {
					t.Fatalf("page %d: More = %v, want %v", page, res.More, wantMore)
				}
				if res.Revision != rev {
					t.Fatalf("page %d: Revision = %d, want %d", page, res.Revision, rev)
				}
				if !res.More {
					break
				}
				start = res.KVs[len(res.KVs)-1].Key + "\x00"
			}
		})
	}
	t.Run("start key", func(t *testing.T) {
		res := list(t, s, prefix, store.ListOptions{StartKey: prefix + "k10"})
		wantKVs(t, res.KVs, all[10:], "List from an existing key")
		res = list(t, s, prefix, store.ListOptions{StartKey: prefix + "k10\x00", Limit: 3})
		wantKVs(t, res.KVs, all[11:14], "List from between keys")
		if !res.More {
			t.Fatal("List from between keys: More = false, want true")
		}
		res = list(t, s, prefix, store.ListOptions{StartKey: prefix + "k99"})
		if len(res.KVs) != 0 || res.More {
			t.Fatalf("List from past the last key = %s, More %v; want none, false", fmtKVs(res.KVs), res.More)
		}
	})
}

// testListConsistentPaging reads later pages at the first page's revision
// while the keys change between pages.
func testListConsistentPaging(t *testing.T, s store.Store, _ config) {
	const prefix = "/registry/pods/p/"
	m := createPages(t, s, prefix, 25)
	snapshot := m.under(prefix)
	page1 := list(t, s, prefix, store.ListOptions{Limit: 10})
	wantKVs(t, page1.KVs, snapshot[:10], "page 1")
	r := page1.Revision

	// Change keys in every page, including ones not read yet.
	_, rev := del(t, s, prefix+"k05", 0)
	delete(m, prefix+"k05")
	_, rev = del(t, s, prefix+"k12", 0)
	delete(m, prefix+"k12")
	m[prefix+"k15"] = update(t, s, prefix+"k15", "changed", 0)
	m[prefix+"k13a"] = create(t, s, prefix+"k13a", "new")
	m[prefix+"k22"] = update(t, s, prefix+"k22", "changed", 0)
	m[prefix+"k30"] = create(t, s, prefix+"k30", "new")
	if rev <= r {
		t.Fatalf("delete after page 1 got revision %d, not after %d", rev, r)
	}

	start := page1.KVs[len(page1.KVs)-1].Key + "\x00"
	page2 := list(t, s, prefix, store.ListOptions{StartKey: start, Limit: 10, Revision: r})
	wantKVs(t, page2.KVs, snapshot[10:20], "page 2 at the first page's revision")
	if !page2.More || page2.Revision != r {
		t.Fatalf("page 2: More = %v, Revision = %d; want true, %d", page2.More, page2.Revision, r)
	}
	start = page2.KVs[len(page2.KVs)-1].Key + "\x00"
	page3 := list(t, s, prefix, store.ListOptions{StartKey: start, Limit: 10, Revision: r})
	wantKVs(t, page3.KVs, snapshot[20:], "page 3 at the first page's revision")
	if page3.More || page3.Revision != r {
		t.Fatalf("page 3: More = %v, Revision = %d; want false, %d", page3.More, page3.Revision, r)
	}
	whole := list(t, s, prefix, store.ListOptions{Revision: r})
	wantKVs(t, whole.KVs, snapshot, "whole list at the first page's revision")

	current := list(t, s, prefix, store.ListOptions{})
	wantKVs(t, current.KVs, m.under(prefix), "current list")
	if current.Revision != s.Revision() {
		t.Fatalf("current list Revision = %d, want %d", current.Revision, s.Revision())
	}
}

// testListAtRevision reads the state as of each revision of a short history.
func testListAtRevision(t *testing.T, s store.Store, _ config) {
	const prefix = "/registry/pods/ns/"
	a1 := create(t, s, prefix+"a", "a1")
	b1 := create(t, s, prefix+"b", "b1")
	create(t, s, "/registry/services/ns/a", "elsewhere")
	a2 := update(t, s, a1.Key, "a2", 0)
	_, bGone := del(t, s, b1.Key, 0)
	b2 := create(t, s, b1.Key, "b2")
	c1 := create(t, s, prefix+"c", "c1")
	tests := []struct {
		rev  int64
		want []store.KV
	}{
		{a1.ModRevision, []store.KV{a1}},
		{b1.ModRevision, []store.KV{a1, b1}},
		{b1.ModRevision + 1, []store.KV{a1, b1}},
		{a2.ModRevision, []store.KV{a2, b1}},
		{bGone, []store.KV{a2}},
		{b2.ModRevision, []store.KV{a2, b2}},
		{c1.ModRevision, []store.KV{a2, b2, c1}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("revision %d", tt.rev), func(t *testing.T) {
			res := list(t, s, prefix, store.ListOptions{Revision: tt.rev})
			wantKVs(t, res.KVs, tt.want, fmt.Sprintf("List at revision %d", tt.rev))
			if res.Revision != tt.rev || res.More {
				t.Fatalf("List at revision %d: Revision = %d, More = %v; want %d, false", tt.rev, res.Revision, res.More, tt.rev)
			}
		})
	}
}

func testListFutureRevision(t *testing.T, s store.Store, _ config) {
	a := create(t, s, podKey("ns", "a"), "a")
	for _, rev := range []int64{a.ModRevision + 1, a.ModRevision + 1000} {
		_, err := s.List(t.Context(), store.Root, store.ListOptions{Revision: rev})
		wantErr(t, err, errdefs.ErrFutureRevision, fmt.Sprintf("List at revision %d (current %d)", rev, a.ModRevision))
	}
	res := list(t, s, store.Root, store.ListOptions{Revision: a.ModRevision})
	wantKVs(t, res.KVs, []store.KV{a}, "List at the current revision")
}

func testListInvalidOptions(t *testing.T, s store.Store, _ config) {
	create(t, s, podKey("ns", "a"), "a")
	const prefix = "/registry/pods/ns/"
	tests := []struct {
		name string
		opts store.ListOptions
	}{
		{"negative limit", store.ListOptions{Limit: -1}},
		{"negative revision", store.ListOptions{Revision: -1}},
		{"start key after prefix", store.ListOptions{StartKey: "/registry/services/ns/a"}},
		{"start key before prefix", store.ListOptions{StartKey: "/registry/pods/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.List(t.Context(), prefix, tt.opts)
			wantErr(t, err, errdefs.ErrInvalid, fmt.Sprintf("List(%q, %+v)", prefix, tt.opts))
		})
	}
}
