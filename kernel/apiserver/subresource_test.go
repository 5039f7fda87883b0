package apiserver_test

import (
	"net/http"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestScaleSubresource(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	deps := e.client.AppsV1().Deployments("default")
	d, err := deps.Create(ctx, testDeployment("web", 2), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := deps.GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Spec.Replicas != 2 || sc.Status.Selector != "app=web" || sc.ResourceVersion != d.ResourceVersion {
		t.Fatalf("scale %+v", sc)
	}
	sc.Spec.Replicas = 5
	upd, err := deps.UpdateScale(ctx, "web", sc, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Spec.Replicas != 5 {
		t.Fatalf("updated scale %+v", upd)
	}
	got, err := deps.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *got.Spec.Replicas != 5 || got.Generation != 2 || got.ResourceVersion != upd.ResourceVersion {
		t.Fatalf("deployment after scale: replicas %d generation %d rv %s/%s", *got.Spec.Replicas, got.Generation, got.ResourceVersion, upd.ResourceVersion)
	}
	// The stale Scale conflicts.
	if _, err := deps.UpdateScale(ctx, "web", sc, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale scale: %v, want Conflict", err)
	}
	// kubectl scale patches the scale subresource.
	var patched autoscalingv1.Scale
	err = e.client.AppsV1().RESTClient().Patch(types.MergePatchType).Namespace("default").Resource("deployments").
		Name("web").SubResource("scale").Body([]byte(`{"spec":{"replicas":1}}`)).Do(ctx).Into(&patched)
	if err != nil {
		t.Fatal(err)
	}
	if patched.Spec.Replicas != 1 {
		t.Fatalf("patched scale: %+v", patched)
	}
	if got, err := deps.Get(ctx, "web", metav1.GetOptions{}); err != nil || *got.Spec.Replicas != 1 {
		t.Fatalf("deployment after scale patch: %v %v", err, got.Spec.Replicas)
	}
	code, body, _ := e.do(t, http.MethodGet, "/apis/apps/v1/namespaces/default/statefulsets/none/scale", "", nil)
	if code != http.StatusNotFound {
		t.Fatalf("scale of missing statefulset: %d %s", code, body)
	}
	sc2 := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: autoscalingv1.ScaleSpec{Replicas: -1}}
	if _, err := deps.UpdateScale(ctx, "web", sc2, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("negative scale: %v, want Invalid", err)
	}
}

func TestStatusSubresourceOnlyStatus(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	pods := e.client.CoreV1().Pods("default")
	p, err := pods.Create(ctx, testPod("p", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = "10.1.0.5"
	p.Labels = map[string]string{"sneaky": "yes"}
	st, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Phase != corev1.PodRunning || st.Labels["sneaky"] == "yes" {
		t.Fatalf("status update: phase %s labels %v", st.Status.Phase, st.Labels)
	}
	// A main-resource update cannot change status.
	st.Status.Phase = corev1.PodFailed
	st.Labels = map[string]string{"ok": "yes"}
	main, err := pods.Update(ctx, st, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if main.Status.Phase != corev1.PodRunning || main.Labels["ok"] != "yes" {
		t.Fatalf("main update: phase %s labels %v", main.Status.Phase, main.Labels)
	}
	// Status patches work too.
	patched, err := pods.Patch(ctx, "p", types.MergePatchType, []byte(`{"status":{"phase":"Succeeded"}}`), metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatal(err)
	}
	if patched.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("status patch: %s", patched.Status.Phase)
	}
}

func TestBindingAndLog(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	pods := e.client.CoreV1().Pods("default")
	if _, err := pods.Create(ctx, testPod("p", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bindPod(t, e, "default", "p", "node-a")
	p, err := pods.Get(ctx, "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scheduled := false
	for _, c := range p.Status.Conditions {
		scheduled = scheduled || (c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue)
	}
	if p.Spec.NodeName != "node-a" || !scheduled {
		t.Fatalf("bound pod: node %q conditions %+v", p.Spec.NodeName, p.Status.Conditions)
	}
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Target: corev1.ObjectReference{Kind: "Node", Name: "node-b"}}
	if err := pods.Bind(ctx, b, metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("second bind: %v, want Conflict", err)
	}
	// nodeName cannot be changed by a plain update.
	p.Spec.NodeName = "node-b"
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("nodeName update: %v, want Invalid", err)
	}
	code, body, _ := e.do(t, http.MethodGet, "/api/v1/namespaces/default/pods/p/log", "", nil)
	if code != http.StatusNotImplemented || status(t, body).Code != http.StatusNotImplemented {
		t.Fatalf("log: %d %s", code, body)
	}
}
