package apiserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// cachedEnv is an env whose watch cache is live and current, with the
// cache's catch-up wait raised so that which path serves a read does not
// depend on timing.
func cachedEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := newEnv(t, opts...)
	e.api.SetCacheFreshWait(time.Minute)
	waitCache(t, e.api)
	return e
}

// waitCache waits (hang guard only) until the cache has applied every
// write the store has acknowledged.
func waitCache(t testing.TB, api *apiserver.Server) {
	t.Helper()
	if err := api.WaitCacheFresh(ctxT(t)); err != nil {
		t.Fatalf("watch cache never caught up: %v", err)
	}
}

// listsFrom returns how many lists of resource the source served.
func listsFrom(t testing.TB, e *env, resource, source string) float64 {
	t.Helper()
	return counterValue(t, e, "tugboat_watch_cache_lists_total", map[string]string{"resource": resource, "source": source})
}

// TestCacheListReadYourWrites: a list with resourceVersion "" served by the
// watch cache reflects every write acknowledged before it, including writes
// to other resources (its resourceVersion is not older than theirs), in
// protobuf (typed client) and in JSON with a selector.
func TestCacheListReadYourWrites(t *testing.T) {
	e := cachedEnv(t)
	ctx := ctxT(t)
	pods := e.client.CoreV1().Pods("default")
	want := map[string]string{} // pod name -> label "v"
	var lastRV int64
	acked := func(rv string) {
		t.Helper()
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		lastRV = n
	}
	check := func(step string) {
		t.Helper()
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("%s: list: %v", step, err)
		}
		got := map[string]string{}
		for _, p := range list.Items {
			got[p.Name] = p.Labels["v"]
		}
		if !maps.Equal(got, want) {
			t.Fatalf("%s: list has %v, want %v", step, got, want)
		}
		if rv, _ := strconv.ParseInt(list.ResourceVersion, 10, 64); rv < lastRV {
			t.Fatalf("%s: list at revision %d, older than the acknowledged write at %d", step, rv, lastRV)
		}
		// The same through JSON and a selector (also served by the cache).
		code, body, _ := e.do(t, http.MethodGet, "/api/v1/namespaces/default/pods?labelSelector=v", "", nil)
		var sel corev1.PodList
		if err := json.Unmarshal(body, &sel); code != http.StatusOK || err != nil {
			t.Fatalf("%s: selected list: %d %v", step, code, err)
		}
		if len(sel.Items) != len(want) {
			t.Fatalf("%s: selected list has %d pods, want %d", step, len(sel.Items), len(want))
		}
	}
	lists := 0
	for i := range 24 {
		name := fmt.Sprintf("p%02d", i)
		switch i % 4 {
		case 0, 1:
			p, err := pods.Create(ctx, testPod(name, map[string]string{"v": strconv.Itoa(i)}), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want[name] = strconv.Itoa(i)
			acked(p.ResourceVersion)
		case 2:
			prev := fmt.Sprintf("p%02d", i-2)
			p, err := pods.Get(ctx, prev, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p.Labels["v"] = "updated-" + strconv.Itoa(i)
			if p, err = pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			want[prev] = p.Labels["v"]
			acked(p.ResourceVersion)
		case 3:
			prev := fmt.Sprintf("p%02d", i-2)
			if err := pods.Delete(ctx, prev, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			delete(want, prev)
			// A write to another resource: the pods' list must still be
			// at least as new as it.
			cm, err := e.client.CoreV1().ConfigMaps("default").Create(ctx, testConfigMap("cm-"+name), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			acked(cm.ResourceVersion)
		}
		check(fmt.Sprintf("step %d", i))
		lists += 2
	}
	if got := listsFrom(t, e, "pods", "cache"); got != float64(lists) {
		t.Fatalf("the cache served %v of %d lists (store: %v)", got, lists, listsFrom(t, e, "pods", "store"))
	}
}

// faultStore wraps a real store and replaces the watch cache's first
// watch of store.Root (the one that follows the initial fill) by fault.
type faultStore struct {
	store.Store
	mu      sync.Mutex
	watches int
	fault   func(ctx context.Context, s store.Store, after int64) (store.Watcher, error)
}

func (f *faultStore) Watch(ctx context.Context, prefix string, after int64) (store.Watcher, error) {
	if prefix != store.Root {
		return f.Store.Watch(ctx, prefix, after)
	}
	f.mu.Lock()
	f.watches++
	first := f.watches == 1
	f.mu.Unlock()
	if !first {
		return f.Store.Watch(ctx, prefix, after)
	}
	return f.fault(ctx, f.Store, after)
}

// cutWatcher is a watch that the store has already ended with err.
type cutWatcher struct {
	ch  chan store.Event
	err error
}

func (c *cutWatcher) Events() <-chan store.Event { return c.ch }
func (c *cutWatcher) Err() error                 { return c.err }
func (c *cutWatcher) Stop()                      {}

// writeGapConfigMap writes a ConfigMap straight to the store, as another
// API server would, while the cache is between its fill and its watch.
func writeGapConfigMap(ctx context.Context, s store.Store) error {
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "gap", Namespace: "default", UID: "gap-uid", CreationTimestamp: metav1.Now()},
		Data:       map[string]string{"written": "between fill and watch"},
	}
	data, err := json.Marshal(cm)
	if err != nil {
		return err
	}
	_, err = s.Create(ctx, store.Key("configmaps", "default", "gap"), data, store.WriteOptions{})
	return err
}

// TestCacheRelists: when the cache's watch cannot start (its revision was
// compacted) or is cut off (it fell behind), the cache lists the store
// again and then serves lists that include what it missed.
func TestCacheRelists(t *testing.T) {
	tests := []struct {
		name  string
		fault func(ctx context.Context, s store.Store, after int64) (store.Watcher, error)
	}{
		{"compacted", func(ctx context.Context, s store.Store, after int64) (store.Watcher, error) {
			if err := writeGapConfigMap(ctx, s); err != nil {
				return nil, err
			}
			if err := s.Compact(ctx, s.Revision()); err != nil {
				return nil, err
			}
			w, err := s.Watch(ctx, store.Root, after)
			if !errors.Is(err, errdefs.ErrGone) {
				t.Errorf("watch from compacted revision %d: %v, want ErrGone", after, err)
			}
			return w, err
		}},
		{"too slow", func(ctx context.Context, s store.Store, _ int64) (store.Watcher, error) {
			if err := writeGapConfigMap(ctx, s); err != nil {
				return nil, err
			}
			w := &cutWatcher{ch: make(chan store.Event), err: fmt.Errorf("watcher fell behind: %w", errdefs.ErrTooSlow)}
			close(w.ch)
			return w, nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *envConfig) {
				c.wrap = func(s store.Store) store.Store { return &faultStore{Store: s, fault: tc.fault} }
			})
			e.api.SetCacheFreshWait(time.Minute)
			ctx := ctxT(t)
			for counterValue(t, e, "tugboat_watch_cache_fills_total", nil) < 2 {
				if ctx.Err() != nil {
					t.Fatal("the watch cache did not relist after the fault")
				}
				time.Sleep(10 * time.Millisecond)
			}
			waitCache(t, e.api)
			if _, err := e.client.CoreV1().ConfigMaps("default").Create(ctx, testConfigMap("after"), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			list, err := e.client.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]bool{}
			for _, cm := range list.Items {
				names[cm.Name] = true
			}
			if !names["gap"] || !names["after"] || len(names) != 2 {
				t.Fatalf("configmaps %v, want gap and after", names)
			}
			if got := listsFrom(t, e, "configmaps", "cache"); got != 1 {
				t.Fatalf("the cache served %v lists, want 1", got)
			}
		})
	}
}

// TestCacheConcurrentReaders is a hammer test (meaningful under -race):
// readers encode the cache's shared objects concurrently, as protobuf,
// JSON and Tables, while a writer changes them. Every list sees all pods.
func TestCacheConcurrentReaders(t *testing.T) {
	e := cachedEnv(t)
	ctx := ctxT(t)
	cs, _ := protoClient(t, e)
	const n = 8
	for i := range n {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, richPod(fmt.Sprintf("rich-%d", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitCache(t, e.api)
	reads := []func() (int, error){
		func() (int, error) {
			l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			code, body, _ := e.do(t, http.MethodGet, "/api/v1/pods?labelSelector=app%3Drich", "", nil)
			var l corev1.PodList
			if err := json.Unmarshal(body, &l); err != nil || code != http.StatusOK {
				return 0, fmt.Errorf("selected list: %d %v", code, err)
			}
			return len(l.Items), nil
		},
		func() (int, error) {
			code, body, _ := e.do(t, http.MethodGet, "/api/v1/namespaces/default/pods", "", nil,
				"Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
			var tbl metav1.Table
			if err := json.Unmarshal(body, &tbl); err != nil || code != http.StatusOK {
				return 0, fmt.Errorf("table: %d %v", code, err)
			}
			return len(tbl.Rows), nil
		},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 6 {
		wg.Go(func() {
			for range 15 {
				got, err := reads[g%len(reads)]()
				if err == nil && got != n {
					err = fmt.Errorf("reader %d: %d pods, want %d", g, got, n)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 30 {
			name := fmt.Sprintf("rich-%d", i%n)
			p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				p.Annotations["round"] = strconv.Itoa(i)
				_, err = cs.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{})
			}
			if err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
