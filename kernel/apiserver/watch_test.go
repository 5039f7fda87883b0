package apiserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// next returns the next watch event or fails after a generous deadline
// (a hang guard, not a timing assertion).
func next(t testing.TB, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no watch event")
	}
	return watch.Event{}
}

func expectEvent(t testing.TB, w watch.Interface, typ watch.EventType, name string) *corev1.Pod {
	t.Helper()
	ev := next(t, w)
	pod, ok := ev.Object.(*corev1.Pod)
	if ev.Type != typ || !ok || pod.Name != name {
		t.Fatalf("event %s %T, want %s of pod %s (%+v)", ev.Type, ev.Object, typ, name, ev.Object)
	}
	return pod
}

func TestWatchResumeAndGone(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	pods := e.client.CoreV1().Pods("default")
	createPods(t, e, "default", 2, nil)
	from := strconv.FormatInt(e.store.Revision(), 10)
	createPods(t, e, "kube-system", 1, nil) // another namespace: not seen
	third, err := pods.Create(ctx, testPod("third", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	third.Labels = map[string]string{"x": "y"}
	if _, err := pods.Update(ctx, third, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "pod-aa", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: from})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	added := expectEvent(t, w, watch.Added, "third")
	mod := expectEvent(t, w, watch.Modified, "third")
	del := expectEvent(t, w, watch.Deleted, "pod-aa")
	a, _ := strconv.Atoi(added.ResourceVersion)
	m, _ := strconv.Atoi(mod.ResourceVersion)
	d, _ := strconv.Atoi(del.ResourceVersion)
	if !(a < m && m < d) || int64(d) != e.store.Revision() {
		t.Fatalf("event revisions %d %d %d, store %d", a, m, d, e.store.Revision())
	}

	// Once compacted, resuming from the old revision is 410 Gone.
	if err := e.store.Compact(ctx, e.store.Revision()); err != nil {
		t.Fatal(err)
	}
	w2, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: from})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	ev := next(t, w2)
	st, ok := ev.Object.(*metav1.Status)
	if ev.Type != watch.Error || !ok || st.Code != http.StatusGone {
		t.Fatalf("compacted resume: %s %+v, want ERROR 410", ev.Type, ev.Object)
	}
	if !apierrors.IsResourceExpired(apierrors.FromObject(st)) && !apierrors.IsGone(apierrors.FromObject(st)) {
		t.Fatalf("status %+v is not Expired/Gone", st)
	}
}

func TestWatchSelectorTransitions(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	pods := e.client.CoreV1().Pods("default")
	w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: "app=a", ResourceVersion: strconv.FormatInt(e.store.Revision(), 10)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	p, err := pods.Create(ctx, testPod("p", map[string]string{"app": "b"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	update := func(app string) {
		t.Helper()
		p.Labels["app"] = app
		if p, err = pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update("a") // enters the selection
	expectEvent(t, w, watch.Added, "p")
	p.Annotations = map[string]string{"k": "v"}
	if p, err = pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, watch.Modified, "p")
	update("c") // leaves it
	left := expectEvent(t, w, watch.Deleted, "p")
	if left.Labels["app"] != "a" || left.ResourceVersion != p.ResourceVersion {
		t.Fatalf("DELETED carries labels %v rv %s, want previous content at rv %s", left.Labels, left.ResourceVersion, p.ResourceVersion)
	}
	if err := pods.Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	q, err := pods.Create(ctx, testPod("q", map[string]string{"app": "a"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, watch.Added, q.Name) // p's deletion outside the selection was not sent
}

// rawWatch opens a watch with query q and returns a line reader.
func rawWatch(t testing.TB, e *env, path string) (*bufio.Scanner, func()) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch %s: %d", path, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	return sc, func() { resp.Body.Close() }
}

type rawEvent struct {
	Type   string `json:"type"`
	Object struct {
		Kind     string            `json:"kind"`
		Metadata metav1.ObjectMeta `json:"metadata"`
	} `json:"object"`
}

func readEvent(t testing.TB, sc *bufio.Scanner) rawEvent {
	t.Helper()
	if !sc.Scan() {
		t.Fatalf("watch stream ended: %v", sc.Err())
	}
	var ev rawEvent
	if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
		t.Fatalf("event %q: %v", sc.Text(), err)
	}
	return ev
}

func TestWatchSendInitialEvents(t *testing.T) {
	e := newEnv(t)
	createPods(t, e, "default", 3, nil)
	rev := e.store.Revision()
	sc, stop := rawWatch(t, e, "/api/v1/namespaces/default/pods?watch=true&sendInitialEvents=true"+
		"&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
	defer stop()
	for i := range 3 {
		ev := readEvent(t, sc)
		if ev.Type != "ADDED" || ev.Object.Kind != "Pod" {
			t.Fatalf("initial event %d: %+v", i, ev)
		}
	}
	bm := readEvent(t, sc)
	if bm.Type != "BOOKMARK" || bm.Object.Metadata.Annotations[metav1.InitialEventsAnnotationKey] != "true" ||
		bm.Object.Metadata.ResourceVersion != strconv.FormatInt(rev, 10) || bm.Object.Kind != "Pod" {
		t.Fatalf("end bookmark: %+v", bm)
	}
	if _, err := e.client.CoreV1().Pods("default").Create(ctxT(t), testPod("live", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := readEvent(t, sc); ev.Type != "ADDED" || ev.Object.Metadata.Name != "live" {
		t.Fatalf("live event: %+v", ev)
	}
	// Without resourceVersionMatch=NotOlderThan the request is invalid.
	code, body, _ := e.do(t, http.MethodGet, "/api/v1/pods?watch=1&sendInitialEvents=true", "", nil)
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("sendInitialEvents without match: %d %s", code, body)
	}
}

func TestWatchLegacyInitialStateAndTimeout(t *testing.T) {
	e := newEnv(t)
	createPods(t, e, "default", 2, nil)
	// resourceVersion "" starts with the current state; timeoutSeconds ends it.
	sc, stop := rawWatch(t, e, "/api/v1/watch/namespaces/default/pods?timeoutSeconds=1")
	defer stop()
	for range 2 {
		if ev := readEvent(t, sc); ev.Type != "ADDED" {
			t.Fatalf("initial state: %+v", ev)
		}
	}
	for sc.Scan() {
		t.Fatalf("unexpected event after the initial state: %s", sc.Text())
	}
}

func TestCloseEndsWatches(t *testing.T) {
	e := newEnv(t)
	sc, stop := rawWatch(t, e, "/api/v1/pods?watch=true&resourceVersion="+strconv.FormatInt(e.store.Revision(), 10))
	defer stop()
	done := make(chan bool)
	go func() {
		for sc.Scan() {
		}
		done <- true
	}()
	e.api.Close()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("watch survived Close")
	}
	if e.api.Ready() {
		t.Fatal("ready after Close")
	}
	code, _, _ := e.do(t, http.MethodGet, "/api/v1/pods?watch=true", "", nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("watch after Close: %d, want 503", code)
	}
}

// TestInformerSyncs runs a SharedInformerFactory: client-go v0.37 starts
// informers with a sendInitialEvents watch and waits for the end bookmark,
// so a sync proves that path; later changes must reach the handlers.
func TestInformerSyncs(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	createPods(t, e, "default", 3, nil)
	factory := informers.NewSharedInformerFactory(e.client, 0)
	inf := factory.Core().V1().Pods().Informer()
	var mu sync.Mutex
	seen := map[string][]string{}
	record := func(kind string, obj any) {
		mu.Lock()
		defer mu.Unlock()
		if p, ok := obj.(*corev1.Pod); ok {
			seen[p.Name] = append(seen[p.Name], kind)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { record("add", o) },
		UpdateFunc: func(_, o any) { record("update", o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			record("delete", o)
		},
	}); err != nil {
		t.Fatal(err)
	}
	stopCh := make(chan struct{})
	factory.Start(stopCh)
	defer func() {
		close(stopCh)
		factory.Shutdown()
	}()
	syncCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	if n := len(inf.GetStore().List()); n != 3 {
		t.Fatalf("synced %d pods, want 3", n)
	}
	if lists := counterValue(t, e, "apiserver_request_total", map[string]string{"verb": "list", "resource": "pods"}); lists != 0 {
		t.Fatalf("informer fell back to LIST (%v lists): the watch-list path failed", lists)
	}
	pods := e.client.CoreV1().Pods("default")
	p, err := pods.Create(ctx, testPod("later", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels = map[string]string{"changed": "yes"}
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "later", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := strings.Join(seen["later"], ",")
		mu.Unlock()
		if got == "add,update,delete" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler saw %q for the later pod", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// counterValue sums a counter's samples whose labels include want.
func counterValue(t testing.TB, e *env, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			n := 0
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
					n++
				}
			}
			if n == len(want) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestWatchBookmarks: the store's periodic bookmarks reach watchers that
// allow them (carrying only the revision) and no one else.
func TestWatchBookmarks(t *testing.T) {
	e := newEnv(t, func(c *envConfig) { c.store.BookmarkInterval = 50 * time.Millisecond })
	createPods(t, e, "default", 1, nil)
	rev := strconv.FormatInt(e.store.Revision(), 10)
	sc, stop := rawWatch(t, e, "/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true&resourceVersion="+rev)
	defer stop()
	ev := readEvent(t, sc)
	if ev.Type != "BOOKMARK" || ev.Object.Kind != "Pod" || ev.Object.Metadata.ResourceVersion != rev || ev.Object.Metadata.Name != "" {
		t.Fatalf("bookmark %+v", ev)
	}
	// Without allowWatchBookmarks the next event is the next change.
	sc2, stop2 := rawWatch(t, e, "/api/v1/namespaces/default/pods?watch=1&resourceVersion="+rev)
	defer stop2()
	time.Sleep(200 * time.Millisecond) // several bookmark intervals pass unseen
	if _, err := e.client.CoreV1().Pods("default").Create(ctxT(t), testPod("after", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := readEvent(t, sc2); ev.Type != "ADDED" || ev.Object.Metadata.Name != "after" {
		t.Fatalf("event %+v, want ADDED after", ev)
	}
}
