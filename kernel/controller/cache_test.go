package controller

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

var podInfo = &resourceInfo{name: "pods", version: "v1", plural: "pods", kind: "Pod", namespaced: true}

func obj(t testing.TB, raw string) *object {
	t.Helper()
	o, err := decodeObject(podInfo, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func names(objs []*object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.namespace+"/"+o.name)
	}
	return out
}

func TestCacheListBySelector(t *testing.T) {
	c := newResourceCache(podInfo)
	c.replace([]*object{
		obj(t, `{"metadata":{"name":"a","namespace":"x","uid":"1","resourceVersion":"1","labels":{"app":"web","tier":"front"}}}`),
		obj(t, `{"metadata":{"name":"b","namespace":"x","uid":"2","resourceVersion":"2","labels":{"app":"web","tier":"back"}}}`),
		obj(t, `{"metadata":{"name":"c","namespace":"x","uid":"3","resourceVersion":"3","labels":{"app":"db"}}}`),
		obj(t, `{"metadata":{"name":"a","namespace":"y","uid":"4","resourceVersion":"4","labels":{"app":"web"}}}`),
	})
	for _, tc := range []struct {
		ns, sel string
		want    []string
	}{
		{"x", "", []string{"x/a", "x/b", "x/c"}},
		{"", "app=web", []string{"x/a", "x/b", "y/a"}},
		{"x", "app=web,tier=front", []string{"x/a"}},
		{"x", "app in (web,db),tier notin (front)", []string{"x/b", "x/c"}},
		{"x", "!tier", []string{"x/c"}},
		{"x", "app=none", nil},
		{"z", "", nil},
	} {
		t.Run(tc.ns+" "+tc.sel, func(t *testing.T) {
			sel, err := labels.Parse(tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(c.list(tc.ns, sel)); !slices.Equal(got, tc.want) {
				t.Errorf("list(%q, %q) = %v, want %v", tc.ns, tc.sel, got, tc.want)
			}
		})
	}

	t.Run("relabel moves the object between posting lists", func(t *testing.T) {
		if _, stored := c.upsert(obj(t, `{"metadata":{"name":"a","namespace":"x","uid":"1","resourceVersion":"9","labels":{"app":"db"}}}`), true); !stored {
			t.Fatal("newer version not stored")
		}
		web, _ := labels.Parse("app=web")
		db, _ := labels.Parse("app=db")
		if got := names(c.list("x", web)); !slices.Equal(got, []string{"x/b"}) {
			t.Errorf("app=web after relabel: %v", got)
		}
		if got := names(c.list("x", db)); !slices.Equal(got, []string{"x/a", "x/c"}) {
			t.Errorf("app=db after relabel: %v", got)
		}
	})
}

func TestCacheVersionsAndTombstones(t *testing.T) {
	c := newResourceCache(podInfo)
	v := func(rv, uid string) *object {
		return obj(t, `{"metadata":{"name":"p","namespace":"x","uid":"`+uid+`","resourceVersion":"`+rv+`"}}`)
	}
	if _, stored := c.upsert(v("5", "u1"), false); !stored {
		t.Fatal("first version not stored")
	}
	if _, stored := c.upsert(v("4", "u1"), true); stored {
		t.Error("an older watch event replaced a newer write")
	}
	if _, stored := c.upsert(v("5", "u1"), true); stored {
		t.Error("the watch event of the driver's own write was stored twice")
	}
	if old := c.remove("x", "p", ""); old == nil || old.uid != "u1" {
		t.Fatalf("remove returned %+v", old)
	}
	if _, stored := c.upsert(v("6", "u1"), true); stored {
		t.Error("a late event of a deleted object came back")
	}
	if c.get("x", "p") != nil {
		t.Error("deleted object still cached")
	}
	if _, stored := c.upsert(v("7", "u2"), true); !stored || c.get("x", "p").uid != "u2" {
		t.Error("a recreated object (new uid) was not stored")
	}

	// The watch delivers a deletion before the result of the write that
	// caused it (a patch removing the last finalizer): the late write
	// result must not bring the deleted object back.
	if old := c.remove("x", "p", "u2"); old == nil {
		t.Fatal("watch deletion of u2 removed nothing")
	}
	if _, stored := c.upsert(v("8", "u2"), false); stored || c.get("x", "p") != nil {
		t.Error("a write result processed after the watch deleted the object put it back")
	}
}

func TestDecodeObjectAddsKind(t *testing.T) {
	o := obj(t, `{"metadata":{"name":"p","namespace":"x"}}`)
	want := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"x"}}`
	if string(o.raw) != want {
		t.Errorf("raw %s, want %s", o.raw, want)
	}
	o = obj(t, `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"}}`)
	if string(o.raw) != `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"}}` {
		t.Errorf("an object with a kind was rewritten: %s", o.raw)
	}
}
