package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/kernel/store"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

// TestCacheSelectorsMatchStore is a property test: for random pods
// (written, updated and deleted through the store, so the cache learns
// them from its fill and its watch) and random label and field selectors,
// a list served by the watch cache equals the same list read from the
// store and decoded, item by item, in order and in its JSON rendering.
func TestCacheSelectorsMatchStore(t *testing.T) {
	st, err := tbadger.Open(tbadger.Options{Dir: t.TempDir(), CompactionWindow: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.cache.freshWait = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rng := rand.New(rand.NewPCG(3, 14))
	res := s.reg.lookup("", "v1", "pods")
	writeRandomPods(ctx, t, s, rng)

	for i := range 300 {
		q := url.Values{}
		if ls := randomLabelSelector(rng); ls != "" {
			q.Set("labelSelector", ls)
		}
		if fs := randomFieldSelector(rng); fs != "" {
			q.Set("fieldSelector", fs)
		}
		ns := []string{"", "a", "b"}[rng.IntN(3)]
		req := &request{verb: verbList, res: res, namespace: ns, query: q}
		o, err := s.parseListOptions(req)
		if err != nil {
			t.Fatalf("case %d %v: %v", i, q, err)
		}
		cached, reason := s.listCached(ctx, req, o, outProto)
		if cached == nil {
			t.Fatalf("case %d %v: not served by the cache: %s", i, q, reason)
		}
		stored, err := s.listObjects(ctx, res, ns, o)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]*corev1.Pod, len(stored.kvs))
		for j, kv := range stored.kvs {
			obj, err := decodeStored(res, kv.Value, kv.ModRevision)
			if err != nil {
				t.Fatal(err)
			}
			want[j] = obj.(*corev1.Pod)
		}
		if len(cached.objs) != len(want) || cached.rev != stored.rev {
			t.Fatalf("case %d ns %q %v: cache has %d pods at %d, store %d at %d", i, ns, q, len(cached.objs), cached.rev, len(want), stored.rev)
		}
		for j, obj := range cached.objs {
			if !apiequality.Semantic.DeepEqual(obj, want[j]) {
				t.Fatalf("case %d ns %q %v: item %d differs:\ncache %+v\nstore %+v", i, ns, q, j, obj, want[j])
			}
		}
		var fromCache, fromStore corev1.PodList
		for _, l := range []struct {
			page *listPage
			into *corev1.PodList
		}{{cached, &fromCache}, {stored, &fromStore}} {
			data, err := listJSON(res, l.page)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, l.into); err != nil {
				t.Fatal(err)
			}
		}
		if !apiequality.Semantic.DeepEqual(fromCache, fromStore) {
			t.Fatalf("case %d ns %q %v: JSON lists differ", i, ns, q)
		}
	}
}

// writeRandomPods writes 60 pods in namespaces a and b (racing the cache's
// fill), then creates, updates and deletes some more, and waits until the
// cache has applied them all.
func writeRandomPods(ctx context.Context, t *testing.T, s *Server, rng *rand.Rand) {
	t.Helper()
	res := s.reg.lookup("", "v1", "pods")
	put := func(p *corev1.Pod, update bool) {
		t.Helper()
		data, err := encodeStored(res, p)
		if err != nil {
			t.Fatal(err)
		}
		key := objectKey(res, p.Namespace, p.Name)
		if update {
			_, err = s.store.Update(ctx, key, data, 0, store.WriteOptions{})
		} else {
			_, err = s.store.Create(ctx, key, data, store.WriteOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	alive := map[int]bool{}
	for i := range 60 {
		put(randomPod(rng, i), false)
		alive[i] = true
	}
	for range 30 {
		n := rng.IntN(60)
		switch {
		case !alive[n]:
			put(randomPod(rng, n), false)
			alive[n] = true
		case rng.IntN(2) == 0:
			put(randomPod(rng, n), true)
		default:
			p := randomPod(rng, n)
			if _, _, err := s.store.Delete(ctx, objectKey(res, p.Namespace, p.Name), 0); err != nil {
				t.Fatal(err)
			}
			alive[n] = false
		}
	}
	for {
		if _, reason := s.cache.waitFresh(ctx, s.store.Revision()); reason == "" {
			return
		}
		if ctx.Err() != nil {
			t.Fatal("the watch cache did not catch up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	selKeys   = []string{"app", "tier", "env"}
	selValues = []string{"x", "y", "z"}
	phases    = []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded}
	nodes     = []string{"", "n1", "n2"}
)

// randomPod is pod n (its namespace and name follow from n) with random
// labels, node and phase.
func randomPod(rng *rand.Rand, n int) *corev1.Pod {
	labels := map[string]string{}
	for _, k := range selKeys {
		if rng.IntN(3) > 0 {
			labels[k] = selValues[rng.IntN(len(selValues))]
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%02d", n), Namespace: []string{"a", "b"}[n%2], Labels: labels,
			UID: "uid", CreationTimestamp: metav1.Unix(1700000000, 0)},
		Spec: corev1.PodSpec{NodeName: nodes[rng.IntN(len(nodes))], RestartPolicy: corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		Status: corev1.PodStatus{Phase: phases[rng.IntN(len(phases))]},
	}
}

// randomLabelSelector returns 0 to 3 requirements of every operator.
func randomLabelSelector(rng *rand.Rand) string {
	var reqs []string
	for range rng.IntN(4) {
		k, v, w := selKeys[rng.IntN(3)], selValues[rng.IntN(3)], selValues[rng.IntN(3)]
		reqs = append(reqs, []string{
			k + "=" + v, k + "==" + v, k + "!=" + v, k + " in (" + v + "," + w + ")", k + " notin (" + v + ")", k, "!" + k,
		}[rng.IntN(7)])
	}
	return strings.Join(reqs, ",")
}

// randomFieldSelector returns 0 to 2 requirements on pod fields.
func randomFieldSelector(rng *rand.Rand) string {
	var reqs []string
	for range rng.IntN(3) {
		op := []string{"=", "!="}[rng.IntN(2)]
		reqs = append(reqs, []string{
			"metadata.name" + op + fmt.Sprintf("pod-%02d", rng.IntN(60)),
			"metadata.namespace" + op + []string{"a", "b"}[rng.IntN(2)],
			"spec.nodeName" + op + nodes[rng.IntN(len(nodes))],
			"status.phase" + op + string(phases[rng.IntN(len(phases))]),
			"spec.restartPolicy" + op + "Always",
		}[rng.IntN(5)])
	}
	return strings.Join(reqs, ",")
}
