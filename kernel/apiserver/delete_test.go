package apiserver_test

import (
	"net/http"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

const holdFinalizer = "example.com/hold"

func TestFinalizersBlockDeletion(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	cms := e.client.CoreV1().ConfigMaps("default")
	cm := testConfigMap("held")
	cm.Finalizers = []string{holdFinalizer}
	if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: "1", FieldSelector: "metadata.name=held"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if ev := next(t, w); ev.Type != watch.Added {
		t.Fatalf("first event %s", ev.Type)
	}
	if err := cms.Delete(ctx, "held", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := cms.Get(ctx, "held", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("object with a finalizer vanished: %v", err)
	}
	if got.DeletionTimestamp == nil || got.DeletionGracePeriodSeconds == nil || *got.DeletionGracePeriodSeconds != 0 {
		t.Fatalf("deletionTimestamp %v grace %v", got.DeletionTimestamp, got.DeletionGracePeriodSeconds)
	}
	if ev := next(t, w); ev.Type != watch.Modified {
		t.Fatalf("delete with finalizer sent %s, want MODIFIED", ev.Type)
	}
	// No new finalizers once deleting.
	got.Finalizers = append(got.Finalizers, "example.com/more")
	if _, err := cms.Update(ctx, got, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("adding a finalizer while deleting: %v, want Invalid", err)
	}
	// Removing the last finalizer deletes the object.
	got.Finalizers = nil
	if _, err := cms.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "held", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after removing the finalizer: %v, want NotFound", err)
	}
	if ev := next(t, w); ev.Type != watch.Deleted {
		t.Fatalf("finalizer removal sent %s, want DELETED", ev.Type)
	}
}

func TestPropagationPolicies(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	deps := e.client.AppsV1().Deployments("default")
	tests := []struct {
		name      string
		opts      metav1.DeleteOptions
		wantFinal []string // nil: deleted at once
	}{
		{"background", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}, nil},
		{"default", metav1.DeleteOptions{}, nil},
		{"orphan", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)}, []string{metav1.FinalizerOrphanDependents}},
		{"foreground", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}, []string{metav1.FinalizerDeleteDependents}},
		{"legacy orphan", metav1.DeleteOptions{OrphanDependents: ptr.To(true)}, []string{metav1.FinalizerOrphanDependents}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := "d" + string(rune('a'+i))
			if _, err := deps.Create(ctx, testDeployment(name, 1), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := deps.Delete(ctx, name, tc.opts); err != nil {
				t.Fatal(err)
			}
			got, err := deps.Get(ctx, name, metav1.GetOptions{})
			if tc.wantFinal == nil {
				if !apierrors.IsNotFound(err) {
					t.Fatalf("get: %v, want NotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Finalizers, tc.wantFinal) || got.DeletionTimestamp == nil || got.Generation != 2 {
				t.Fatalf("finalizers %v deletionTimestamp %v generation %d", got.Finalizers, got.DeletionTimestamp, got.Generation)
			}
			// A background delete now drops the GC finalizer and removes it.
			if err := deps.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
				t.Fatal(err)
			}
			if _, err := deps.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Fatalf("after background delete: %v", err)
			}
		})
	}
}

func TestDeletePreconditionsAndDryRun(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	cms := e.client.CoreV1().ConfigMaps("default")
	cm, err := cms.Create(ctx, testConfigMap("c"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = cms.Delete(ctx, "c", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: ptr.To("1")}})
	if !apierrors.IsConflict(err) {
		t.Fatalf("stale rv precondition: %v, want Conflict", err)
	}
	if err := cms.Delete(ctx, "c", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "c", metav1.GetOptions{}); err != nil {
		t.Fatalf("dry-run delete deleted: %v", err)
	}
	err = cms.Delete(ctx, "c", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cm.UID, ResourceVersion: &cm.ResourceVersion}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "c", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestPodGracefulDeletion(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	pods := e.client.CoreV1().Pods("default")
	for _, name := range []string{"unbound", "bound", "done"} {
		if _, err := pods.Create(ctx, testPod(name, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bindPod(t, e, "default", "bound", "node-1")
	bindPod(t, e, "default", "done", "node-1")
	if _, err := pods.Patch(ctx, "done", types.MergePatchType, []byte(`{"status":{"phase":"Succeeded"}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"unbound", "done"} {
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := pods.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("%s pod not deleted at once: %v", name, err)
		}
	}
	if err := pods.Delete(ctx, "bound", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := pods.Get(ctx, "bound", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("bound pod deleted at once: %v", err)
	}
	if p.DeletionTimestamp == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 ||
		!p.DeletionTimestamp.After(p.CreationTimestamp.Time) {
		t.Fatalf("graceful delete: timestamp %v grace %v", p.DeletionTimestamp, p.DeletionGracePeriodSeconds)
	}
	// The node agent's status updates do not remove it...
	p.Status.Phase = corev1.PodRunning
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// ...its final delete with a zero grace period does.
	if err := pods.Delete(ctx, "bound", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "bound", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after grace 0: %v", err)
	}
}

func TestDeleteCollection(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	createPods(t, e, "default", 6, func(i int) map[string]string { return map[string]string{"odd": []string{"no", "yes"}[i%2]} })
	createPods(t, e, "kube-system", 2, func(int) map[string]string { return map[string]string{"odd": "yes"} })
	err := e.client.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "odd=yes"})
	if err != nil {
		t.Fatal(err)
	}
	left, err := e.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, p := range left.Items {
		counts[p.Namespace+"/"+p.Labels["odd"]]++
	}
	if counts["default/no"] != 3 || counts["default/yes"] != 0 || counts["kube-system/yes"] != 2 {
		t.Fatalf("left after deletecollection: %v", counts)
	}
}

func TestNamespaceDeletion(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	nss := e.client.CoreV1().Namespaces()
	if _, err := nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPods(t, e, "team", 3, nil)
	cm := testConfigMap("held")
	cm.Finalizers = []string{holdFinalizer}
	if _, err := e.client.CoreV1().ConfigMaps("team").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := nss.Delete(ctx, "team", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, err := nss.Get(ctx, "team", metav1.GetOptions{})
	if err != nil || ns.Status.Phase != corev1.NamespaceTerminating || ns.DeletionTimestamp == nil {
		t.Fatalf("namespace while a finalizer holds its content: %v %+v", err, ns.Status)
	}
	if pods, _ := e.client.CoreV1().Pods("team").List(ctx, metav1.ListOptions{}); len(pods.Items) != 0 {
		t.Fatalf("%d pods left in a terminating namespace", len(pods.Items))
	}
	_, err = e.client.CoreV1().Pods("team").Create(ctx, testPod("late", nil), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("create in terminating namespace: %v, want Forbidden", err)
	}
	code, body, _ := e.do(t, http.MethodPatch, "/api/v1/namespaces/team/configmaps/held", "application/merge-patch+json",
		[]byte(`{"metadata":{"finalizers":null}}`))
	if code != http.StatusOK {
		t.Fatalf("remove finalizer: %d %s", code, body)
	}
	if _, err := nss.Get(ctx, "team", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace after its content is gone: %v, want NotFound", err)
	}
}
