package apiserver_test

import (
	"log/slog"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
)

func TestDefaultNamespacesIdempotent(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	list, err := e.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"default": true, "kube-system": true, "kube-node-lease": true, "kube-public": true}
	rvs := map[string]string{}
	for _, ns := range list.Items {
		if ns.Status.Phase != corev1.NamespaceActive {
			t.Errorf("namespace %s phase %q, want Active", ns.Name, ns.Status.Phase)
		}
		rvs[ns.Name] = ns.ResourceVersion
		delete(want, ns.Name)
	}
	if len(want) > 0 || len(list.Items) != 4 {
		t.Fatalf("namespaces %v: missing %v", rvs, want)
	}
	// A second server on the same store creates nothing new.
	rev := e.store.Revision()
	again, err := apiserver.New(apiserver.Config{Store: e.store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
	if e.store.Revision() != rev {
		t.Fatalf("second New wrote: revision %d -> %d", rev, e.store.Revision())
	}
	if !e.api.Ready() {
		t.Fatal("server not ready")
	}
}

func TestCreateSetsSystemFields(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	in := testPod("web", map[string]string{"app": "web"})
	in.ResourceVersion = "999" // never trusted on create
	in.UID = "forged"
	pod, err := e.client.CoreV1().Pods("default").Create(ctx, in, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.UID == "" || pod.UID == "forged" {
		t.Errorf("uid %q not assigned by the server", pod.UID)
	}
	if pod.CreationTimestamp.IsZero() || pod.Generation != 1 {
		t.Errorf("creationTimestamp %v generation %d", pod.CreationTimestamp, pod.Generation)
	}
	if pod.ResourceVersion != strconv.FormatInt(e.store.Revision(), 10) {
		t.Errorf("resourceVersion %s, store revision %d", pod.ResourceVersion, e.store.Revision())
	}
	if pod.Status.Phase != corev1.PodPending || pod.Spec.RestartPolicy != corev1.RestartPolicyAlways ||
		pod.Spec.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent || pod.Spec.SchedulerName != "default-scheduler" {
		t.Errorf("defaults not applied: phase %q restart %q pull %q scheduler %q", pod.Status.Phase,
			pod.Spec.RestartPolicy, pod.Spec.Containers[0].ImagePullPolicy, pod.Spec.SchedulerName)
	}
	got, err := e.client.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != pod.ResourceVersion || got.UID != pod.UID || got.Namespace != "default" {
		t.Errorf("get: rv %s uid %s ns %s, created rv %s uid %s", got.ResourceVersion, got.UID, got.Namespace, pod.ResourceVersion, pod.UID)
	}
	if _, err := e.client.CoreV1().Pods("default").Create(ctx, in, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("second create: %v, want AlreadyExists", err)
	}
	if _, err := e.client.CoreV1().Pods("nope").Create(ctx, testPod("x", nil), metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("create in missing namespace: %v, want NotFound", err)
	}
	if _, err := e.client.CoreV1().Pods("default").Get(ctx, "missing", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get missing: %v, want NotFound", err)
	}
}

func TestGenerateName(t *testing.T) {
	e := newEnv(t)
	seen := map[string]bool{}
	for range 5 {
		p := testPod("", nil)
		p.GenerateName = "job-"
		got, err := e.client.CoreV1().Pods("default").Create(ctxT(t), p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Name) != len("job-")+5 || got.Name[:4] != "job-" || seen[got.Name] {
			t.Fatalf("generated name %q (seen %v)", got.Name, seen)
		}
		seen[got.Name] = true
	}
}

func TestUpdateConcurrencyAndGeneration(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	d := testDeployment("web", 2)
	created, err := e.client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deps := e.client.AppsV1().Deployments("default")

	// A label change keeps generation; a spec change bumps it.
	created.Labels = map[string]string{"tier": "front"}
	upd, err := deps.Update(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Generation != 1 || upd.ResourceVersion == created.ResourceVersion {
		t.Fatalf("label update: generation %d rv %s (was %s)", upd.Generation, upd.ResourceVersion, created.ResourceVersion)
	}
	upd.Spec.Replicas = ptr.To[int32](5)
	upd.Status.Replicas = 42 // ignored by the main resource
	upd2, err := deps.Update(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if upd2.Generation != 2 || upd2.Status.Replicas != 0 {
		t.Fatalf("spec update: generation %d status.replicas %d", upd2.Generation, upd2.Status.Replicas)
	}

	// The stale copy conflicts.
	upd.Spec.Replicas = ptr.To[int32](7)
	if _, err := deps.Update(ctx, upd, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v, want Conflict", err)
	}

	// An unchanged update is not written.
	same, err := deps.Update(ctx, upd2, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if same.ResourceVersion != upd2.ResourceVersion {
		t.Fatalf("no-op update changed rv %s -> %s", upd2.ResourceVersion, same.ResourceVersion)
	}

	// The status subresource changes only status.
	upd2.Status.Replicas = 3
	upd2.Spec.Replicas = ptr.To[int32](9)
	st, err := deps.UpdateStatus(ctx, upd2, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Replicas != 3 || *st.Spec.Replicas != 5 || st.Generation != 2 {
		t.Fatalf("status update: status %d spec %d generation %d", st.Status.Replicas, *st.Spec.Replicas, st.Generation)
	}
}

func testDeployment(name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
			},
		},
	}
}

func TestValidation(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	pods := e.client.CoreV1().Pods("default")
	deps := e.client.AppsV1().Deployments("default")
	bad := map[string]func() error{
		"pod name not DNS": func() error { _, err := pods.Create(ctx, testPod("Bad_Name", nil), metav1.CreateOptions{}); return err },
		"pod without containers": func() error {
			p := testPod("empty", nil)
			p.Spec.Containers = nil
			_, err := pods.Create(ctx, p, metav1.CreateOptions{})
			return err
		},
		"container without image": func() error {
			p := testPod("noimage", nil)
			p.Spec.Containers[0].Image = ""
			_, err := pods.Create(ctx, p, metav1.CreateOptions{})
			return err
		},
		"bad label value": func() error {
			_, err := pods.Create(ctx, testPod("lbl", map[string]string{"a": "not valid!"}), metav1.CreateOptions{})
			return err
		},
		"selector does not match template": func() error {
			d := testDeployment("mismatch", 1)
			d.Spec.Template.Labels = map[string]string{"app": "other"}
			_, err := deps.Create(ctx, d, metav1.CreateOptions{})
			return err
		},
		"deployment without selector": func() error {
			d := testDeployment("nosel", 1)
			d.Spec.Selector = nil
			_, err := deps.Create(ctx, d, metav1.CreateOptions{})
			return err
		},
	}
	for name, f := range bad {
		t.Run(name, func(t *testing.T) {
			err := f()
			if !apierrors.IsInvalid(err) {
				t.Fatalf("got %v, want Invalid (422)", err)
			}
			var se *apierrors.StatusError
			if se, _ = err.(*apierrors.StatusError); se == nil || se.ErrStatus.Details == nil || len(se.ErrStatus.Details.Causes) == 0 {
				t.Fatalf("no field causes in %v", err)
			}
		})
	}
	t.Run("immutable fields", func(t *testing.T) {
		p, err := pods.Create(ctx, testPod("imm", nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Spec.Containers[0].Image = "registry.example/app:2.0" // allowed
		if p, err = pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("image update: %v", err)
		}
		p.Spec.Containers[0].Name = "renamed"
		if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
			t.Fatalf("container rename: %v, want Invalid", err)
		}
		d, err := deps.Create(ctx, testDeployment("immdep", 1), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "immdep", "x": "y"}}
		d.Spec.Template.Labels["x"] = "y"
		if _, err := deps.Update(ctx, d, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
			t.Fatalf("selector change: %v, want Invalid", err)
		}
	})
}

// TestEveryResource creates, reads, lists and deletes one object of every
// served resource through the dynamic client.
func TestEveryResource(t *testing.T) {
	e := newEnv(t)
	dyn, err := dynamic.NewForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range everyResource() {
		t.Run(tc.gvr.Resource, func(t *testing.T) {
			ctx := ctxT(t)
			obj := &unstructured.Unstructured{Object: tc.obj}
			var ri dynamic.ResourceInterface = dyn.Resource(tc.gvr)
			if tc.namespaced {
				ri = dyn.Resource(tc.gvr).Namespace("default")
			}
			created, err := ri.Create(ctx, obj, metav1.CreateOptions{FieldValidation: "Strict"})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if created.GetUID() == "" || created.GetResourceVersion() == "" {
				t.Fatalf("created without uid/rv: %v", created.Object["metadata"])
			}
			got, err := ri.Get(ctx, created.GetName(), metav1.GetOptions{})
			if err != nil || got.GetResourceVersion() != created.GetResourceVersion() {
				t.Fatalf("get: %v rv %s", err, got.GetResourceVersion())
			}
			list, err := ri.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + created.GetName()})
			if err != nil || len(list.Items) != 1 {
				t.Fatalf("list: %v (%d items)", err, len(list.Items))
			}
			if err := ri.Delete(ctx, created.GetName(), metav1.DeleteOptions{}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if _, err := ri.Get(ctx, created.GetName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Fatalf("get after delete: %v", err)
			}
		})
	}
}

type resourceCase struct {
	gvr        schema.GroupVersionResource
	namespaced bool
	obj        map[string]any
}

func everyResource() []resourceCase {
	meta := func(name string) map[string]any { return map[string]any{"name": name} }
	podSpec := map[string]any{"containers": []any{map[string]any{"name": "c", "image": "busybox:1.36"}}}
	template := func(restart string) map[string]any {
		spec := map[string]any{"containers": podSpec["containers"], "restartPolicy": restart}
		return map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "x"}}, "spec": spec}
	}
	sel := map[string]any{"matchLabels": map[string]any{"app": "x"}}
	obj := func(apiVersion, kind, name string, extra map[string]any) map[string]any {
		o := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": meta(name)}
		for k, v := range extra {
			o[k] = v
		}
		return o
	}
	gvr := func(g, v, r string) schema.GroupVersionResource {
		return schema.GroupVersionResource{Group: g, Version: v, Resource: r}
	}
	return []resourceCase{
		{gvr("", "v1", "namespaces"), false, obj("v1", "Namespace", "team-a", nil)},
		{gvr("", "v1", "nodes"), false, obj("v1", "Node", "node-1", nil)},
		{gvr("", "v1", "pods"), true, obj("v1", "Pod", "p", map[string]any{"spec": podSpec})},
		{gvr("", "v1", "services"), true, obj("v1", "Service", "svc", map[string]any{"spec": map[string]any{
			"ports": []any{map[string]any{"port": int64(80)}}, "selector": map[string]any{"app": "x"}}})},
		{gvr("", "v1", "endpoints"), true, obj("v1", "Endpoints", "svc", nil)},
		{gvr("", "v1", "configmaps"), true, obj("v1", "ConfigMap", "cm", map[string]any{"data": map[string]any{"k": "v"}})},
		{gvr("", "v1", "secrets"), true, obj("v1", "Secret", "s", map[string]any{"stringData": map[string]any{"k": "v"}})},
		{gvr("", "v1", "events"), true, obj("v1", "Event", "ev.1", map[string]any{"reason": "Test",
			"involvedObject": map[string]any{"kind": "Pod", "name": "p", "namespace": "default"}})},
		{gvr("", "v1", "serviceaccounts"), true, obj("v1", "ServiceAccount", "sa", nil)},
		{gvr("apps", "v1", "deployments"), true, obj("apps/v1", "Deployment", "d", map[string]any{"spec": map[string]any{
			"selector": sel, "template": template("Always")}})},
		{gvr("apps", "v1", "replicasets"), true, obj("apps/v1", "ReplicaSet", "rs", map[string]any{"spec": map[string]any{
			"selector": sel, "template": template("Always")}})},
		{gvr("apps", "v1", "statefulsets"), true, obj("apps/v1", "StatefulSet", "sts", map[string]any{"spec": map[string]any{
			"selector": sel, "template": template("Always"), "serviceName": "svc"}})},
		{gvr("apps", "v1", "daemonsets"), true, obj("apps/v1", "DaemonSet", "ds", map[string]any{"spec": map[string]any{
			"selector": sel, "template": template("Always")}})},
		{gvr("batch", "v1", "jobs"), true, obj("batch/v1", "Job", "j", map[string]any{"spec": map[string]any{
			"template": map[string]any{"spec": map[string]any{"containers": podSpec["containers"], "restartPolicy": "Never"}}}})},
		{gvr("batch", "v1", "cronjobs"), true, obj("batch/v1", "CronJob", "cj", map[string]any{"spec": map[string]any{
			"schedule": "*/5 * * * *", "jobTemplate": map[string]any{"spec": map[string]any{"template": template("OnFailure")}}}})},
		{gvr("coordination.k8s.io", "v1", "leases"), true, obj("coordination.k8s.io/v1", "Lease", "l", map[string]any{
			"spec": map[string]any{"holderIdentity": "me"}})},
		{gvr("discovery.k8s.io", "v1", "endpointslices"), true, obj("discovery.k8s.io/v1", "EndpointSlice", "es", map[string]any{
			"addressType": "IPv4", "endpoints": []any{}})},
		{gvr("autoscaling", "v2", "horizontalpodautoscalers"), true, obj("autoscaling/v2", "HorizontalPodAutoscaler", "h", map[string]any{
			"spec": map[string]any{"maxReplicas": int64(3), "scaleTargetRef": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}}})},
		{gvr("networking.k8s.io", "v1", "ingresses"), true, obj("networking.k8s.io/v1", "Ingress", "ing", map[string]any{
			"spec": map[string]any{"defaultBackend": map[string]any{"service": map[string]any{"name": "svc", "port": map[string]any{"number": int64(80)}}}}})},
	}
}
