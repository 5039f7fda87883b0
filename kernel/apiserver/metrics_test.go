package apiserver_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func gauge(t testing.TB, e *env, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := true
			for _, lp := range m.GetLabel() {
				if v, want := labels[lp.GetName()]; want && v != lp.GetValue() {
					ok = false
				}
			}
			if ok {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	createPods(t, e, "default", 3, nil)
	if _, err := e.client.CoreV1().Pods("default").Get(ctx, "missing", metav1.GetOptions{}); err == nil {
		t.Fatal("get of a missing pod succeeded")
	}
	if got := counterValue(t, e, "apiserver_request_total", map[string]string{"verb": "create", "resource": "pods", "code": "201"}); got != 3 {
		t.Fatalf("create count %v, want 3", got)
	}
	if got := counterValue(t, e, "apiserver_request_total", map[string]string{"verb": "get", "resource": "pods", "code": "404"}); got != 1 {
		t.Fatalf("404 count %v, want 1", got)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	for _, mf := range mfs {
		if mf.GetName() == "apiserver_request_duration_seconds" {
			for _, m := range mf.GetMetric() {
				observed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if observed < 4 {
		t.Fatalf("duration histogram has %d samples", observed)
	}
	if rev, _ := gauge(t, e, "tugboat_store_revision", nil); int64(rev) != e.store.Revision() {
		t.Fatalf("revision gauge %v, store %d", rev, e.store.Revision())
	}

	// The watcher gauge counts open watches.
	_, stop := rawWatch(t, e, "/api/v1/pods?watch=1&resourceVersion="+strconv.FormatInt(e.store.Revision(), 10))
	if v, _ := gauge(t, e, "apiserver_registered_watchers", map[string]string{"resource": "pods"}); v != 1 {
		t.Fatalf("watchers %v during a watch", v)
	}
	stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, _ := gauge(t, e, "apiserver_registered_watchers", map[string]string{"resource": "pods"})
		if v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watchers %v after the client left", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _, _ := e.do(t, http.MethodGet, "/api/v1/nodes", "", nil); code != http.StatusOK {
		t.Fatal(code)
	}
	if got := counterValue(t, e, "apiserver_request_total", map[string]string{"verb": "list", "resource": "nodes", "code": "200"}); got != 1 {
		t.Fatalf("list nodes count %v", got)
	}
}
