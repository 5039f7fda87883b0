package controller_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/controller"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// waitTimeout only guards against a hung test.
const waitTimeout = 30 * time.Second

func newAPI(t testing.TB) (*rest.Config, *kubernetes.Clientset) {
	t.Helper()
	_, cfg := apiservertest.Start(t, apiserver.Config{})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, cs
}

// recorder is a Reconciler that records the keys it gets and can fail.
type recorder struct {
	mu    sync.Mutex
	seen  map[string]int
	fail  map[string]bool
	calls chan string
}

func newRecorder() *recorder {
	return &recorder{seen: make(map[string]int), fail: make(map[string]bool), calls: make(chan string, 1024)}
}

func (r *recorder) Reconcile(_ context.Context, req hostapi.ReconcileRequest) (hostapi.ReconcileResult, error) {
	k := req.Resource + " " + req.Namespace + "/" + req.Name
	r.mu.Lock()
	r.seen[k]++
	fail := r.fail[k]
	r.mu.Unlock()
	select {
	case r.calls <- k:
	default:
	}
	if fail {
		return hostapi.ReconcileResult{Error: "failing on purpose"}, nil
	}
	return hostapi.ReconcileResult{}, nil
}

func (r *recorder) count(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[k]
}

// waitFor waits until the recorder got key k at least n times in total.
func (r *recorder) waitFor(t testing.TB, k string, n int) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for r.count(k) < n {
		select {
		case <-r.calls:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("no reconcile of %q (%d times); seen %v", k, n, r.seen)
		}
	}
}

func startDriver(t testing.TB, cfg controller.Config, regs ...controller.Registration) *controller.Driver {
	t.Helper()
	d, err := controller.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range regs {
		if err := d.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

func ownedPod(name, ownerKind, ownerName, ownerUID string, controller bool, labels map[string]string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
	if ownerName != "" {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: ownerKind, Name: ownerName, UID: typesUID(ownerUID), Controller: &controller}}
	}
	return p
}

func TestEnqueueModes(t *testing.T) {
	cfg, cs := newAPI(t)
	ctx := context.Background()
	rec := newRecorder()
	d := startDriver(t, controller.Config{Client: cfg}, controller.Registration{
		Name: "rec", Reconciler: rec,
		Spec: hostapi.ControllerSpec{Watches: []hostapi.Watch{
			{Resource: "configmaps", Enqueue: hostapi.EnqueueSelf},
			{Resource: "pods", Enqueue: hostapi.EnqueueOwner},
			{Resource: "secrets", Enqueue: hostapi.EnqueueNamespace},
			{Resource: "services", Enqueue: hostapi.EnqueueNone},
		}},
	})
	for _, name := range []string{"a", "b"} {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const a, b = "configmaps default/a", "configmaps default/b"
	rec.waitFor(t, a, 1)
	rec.waitFor(t, b, 1)

	t.Run("owner", func(t *testing.T) {
		before := rec.count(b)
		cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := rec.count(a)
		if _, err := cs.CoreV1().Pods("default").Create(ctx, ownedPod("owned", "ConfigMap", "a", string(cm.UID), true, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rec.waitFor(t, a, n+1)
		if rec.count(b) != before {
			t.Errorf("an owned pod enqueued a configmap that does not own it")
		}
	})

	t.Run("orphan enqueues the namespace's primaries", func(t *testing.T) {
		na, nb := rec.count(a), rec.count(b)
		if _, err := cs.CoreV1().Pods("default").Create(ctx, ownedPod("orphan", "", "", "", false, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rec.waitFor(t, a, na+1)
		rec.waitFor(t, b, nb+1)
	})

	t.Run("namespace", func(t *testing.T) {
		na, nb := rec.count(a), rec.count(b)
		if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rec.waitFor(t, a, na+1)
		rec.waitFor(t, b, nb+1)
	})

	t.Run("errors are retried", func(t *testing.T) {
		rec.mu.Lock()
		rec.fail["configmaps default/c"] = true
		rec.mu.Unlock()
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rec.waitFor(t, "configmaps default/c", 3)
	})

	t.Run("host reads its writes", func(t *testing.T) {
		out, err := d.Write(ctx, hostapi.WriteRequest{Verb: hostapi.VerbCreate, Resource: "configmaps", Namespace: "default",
			Object: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w","labels":{"k":"v"}},"data":{"x":"1"}}`)})
		if err != nil || !strings.Contains(string(out), `"x":"1"`) {
			t.Fatalf("create: %s, %v", out, err)
		}
		got, err := d.Get(ctx, hostapi.GetRequest{Resource: "configmaps", Namespace: "default", Name: "w"})
		if err != nil || !strings.Contains(string(got), `"kind":"ConfigMap"`) {
			t.Fatalf("get after create: %s, %v", got, err)
		}
		items, err := d.List(ctx, hostapi.ListRequest{Resource: "configmaps", Namespace: "default", LabelSelector: "k=v"})
		if err != nil || len(items) != 1 {
			t.Fatalf("list k=v: %d items, %v", len(items), err)
		}
		if _, err := d.Write(ctx, hostapi.WriteRequest{Verb: hostapi.VerbPatch, Resource: "configmaps", Namespace: "default", Name: "w",
			Object: []byte(`{"data":{"x":"2"}}`)}); err != nil {
			t.Fatal(err)
		}
		if got, _ := d.Get(ctx, hostapi.GetRequest{Resource: "configmaps", Namespace: "default", Name: "w"}); !strings.Contains(string(got), `"x":"2"`) {
			t.Errorf("get after patch: %s", got)
		}
		if _, err := d.Write(ctx, hostapi.WriteRequest{Verb: hostapi.VerbDelete, Resource: "configmaps", Namespace: "default", Name: "w"}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Get(ctx, hostapi.GetRequest{Resource: "configmaps", Namespace: "default", Name: "w"}); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("get after delete: %v, want ErrNotFound", err)
		}
		_, err = d.Write(ctx, hostapi.WriteRequest{Verb: hostapi.VerbCreate, Resource: "configmaps", Namespace: "default",
			Object: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}`)})
		if !errors.Is(err, errdefs.ErrAlreadyExists) {
			t.Errorf("create of an existing name: %v, want ErrAlreadyExists", err)
		}
	})

	t.Run("owner index", func(t *testing.T) {
		cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sel := hostapi.FieldOwnerUID + "=" + string(cm.UID)
		for _, res := range []string{"pods", hostapi.AllResources} {
			items, err := d.List(ctx, hostapi.ListRequest{Resource: res, Namespace: "default", FieldSelector: sel})
			if err != nil || len(items) != 1 || !strings.Contains(string(items[0]), `"name":"owned"`) {
				t.Errorf("list %s %s: %d items, %v", res, sel, len(items), err)
			}
		}
		if _, err := d.List(ctx, hostapi.ListRequest{Resource: hostapi.AllResources}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("list of all resources without an owner selector: %v, want ErrInvalid", err)
		}
	})
}

func TestEnqueueGC(t *testing.T) {
	cfg, cs := newAPI(t)
	ctx := context.Background()
	rec := newRecorder()
	startDriver(t, controller.Config{Client: cfg}, controller.Registration{
		Name: "gc", Reconciler: rec,
		Spec: hostapi.ControllerSpec{Watches: []hostapi.Watch{
			{Resource: "configmaps", Enqueue: hostapi.EnqueueGC},
			{Resource: "pods", Enqueue: hostapi.EnqueueGC},
		}},
	})
	cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, ownedPod("dep", "ConfigMap", "owner", string(cm.UID), false, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const dep, owner = "pods default/dep", "configmaps default/owner"
	rec.waitFor(t, dep, 1)
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "owner", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, dep, 2) // the owner's deletion enqueues its dependent
	if n := rec.count(owner); n != 0 {
		t.Errorf("an object without owners or finalizers was enqueued %d times", n)
	}
}

func TestLeaderElection(t *testing.T) {
	cfg, cs := newAPI(t)
	ctx := context.Background()
	spec := hostapi.ControllerSpec{Watches: []hostapi.Watch{{Resource: "configmaps", Enqueue: hostapi.EnqueueSelf}}}
	le := func(id string) controller.Config {
		return controller.Config{Client: cfg, LeaderElection: true, Identity: id,
			LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond}
	}
	first, second := newRecorder(), newRecorder()
	d1, err := controller.New(le("first"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d1.Add(controller.Registration{Name: "c", Spec: spec, Reconciler: first}); err != nil {
		t.Fatal(err)
	}
	ctx1, stop1 := context.WithCancel(ctx)
	done1 := make(chan struct{})
	go func() { defer close(done1); _ = d1.Run(ctx1) }()
	defer func() { stop1(); <-done1 }()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first.waitFor(t, "configmaps default/x", 1)
	startDriver(t, le("second"), controller.Registration{Name: "c", Spec: spec, Reconciler: second})
	lease, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, "tugboat-controllers", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "first" {
		t.Fatalf("lease %+v, %v; want held by first", lease, err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "y"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first.waitFor(t, "configmaps default/y", 1)
	if n := second.count("configmaps default/y"); n != 0 {
		t.Errorf("the follower reconciled %d times", n)
	}
	stop1() // releases the lease
	<-done1
	second.waitFor(t, "configmaps default/y", 1)
}

func TestAddRejectsBadSpecs(t *testing.T) {
	cfg, _ := newAPI(t)
	d, err := controller.New(controller.Config{Client: cfg})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec hostapi.ControllerSpec
	}{
		{"no primary", hostapi.ControllerSpec{Watches: []hostapi.Watch{{Resource: "pods", Enqueue: hostapi.EnqueueOwner}}}},
		{"unknown mode", hostapi.ControllerSpec{Watches: []hostapi.Watch{{Resource: "pods", Enqueue: "sometimes"}}}},
		{"all resources", hostapi.ControllerSpec{Watches: []hostapi.Watch{{Resource: "*", Enqueue: hostapi.EnqueueSelf}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Add(controller.Registration{Name: "x", Spec: tc.spec, Reconciler: newRecorder()})
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("Add: %v, want ErrInvalid", err)
			}
		})
	}
}

func typesUID(s string) types.UID { return types.UID(s) }
