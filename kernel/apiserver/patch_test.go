package apiserver_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestPatchTypes(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	deps := e.client.AppsV1().Deployments("default")
	d := testDeployment("web", 1)
	d.Spec.Template.Spec.Containers[0].Env = nil
	d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, d.Spec.Template.Spec.Containers[0])
	d.Spec.Template.Spec.Containers[1].Name = "sidecar"
	if _, err := deps.Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range patchCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := deps.Patch(ctx, "web", tc.pt, []byte(tc.patch), metav1.PatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.check(got); err != nil {
				t.Fatal(err)
			}
			stored, err := deps.Get(ctx, "web", metav1.GetOptions{})
			if err != nil || stored.ResourceVersion != got.ResourceVersion {
				t.Fatalf("stored rv %s, patch returned %s (%v)", stored.ResourceVersion, got.ResourceVersion, err)
			}
		})
	}
	testPatchOptions(t, e)
}

type patchCase struct {
	name  string
	pt    types.PatchType
	patch string
	check func(*appsv1.Deployment) error
}

// patchCases run in order on one deployment "web" with containers app and
// sidecar.
func patchCases() []patchCase {
	return []patchCase{
		{"json patch adds a label", types.JSONPatchType, `[{"op":"add","path":"/metadata/labels","value":{"a":"1"}}]`,
			func(d *appsv1.Deployment) error { return want(d.Labels["a"] == "1", "labels %v", d.Labels) }},
		{"json patch replaces an image", types.JSONPatchType,
			`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}]`,
			func(d *appsv1.Deployment) error {
				return want(d.Spec.Template.Spec.Containers[0].Image == "nginx:1.28" && d.Generation == 2, "image %s gen %d",
					d.Spec.Template.Spec.Containers[0].Image, d.Generation)
			}},
		{"merge patch sets and removes", types.MergePatchType, `{"metadata":{"labels":{"a":null,"b":"2"}}}`,
			func(d *appsv1.Deployment) error {
				return want(d.Labels["b"] == "2" && d.Labels["a"] == "", "labels %v", d.Labels)
			}},
		{"merge patch replaces lists", types.MergePatchType,
			`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.29"}]}}}}`,
			func(d *appsv1.Deployment) error {
				return want(len(d.Spec.Template.Spec.Containers) == 1, "containers %d", len(d.Spec.Template.Spec.Containers))
			}},
		{"strategic merge keys containers by name", types.StrategicMergePatchType,
			`{"spec":{"template":{"spec":{"containers":[{"name":"extra","image":"busybox:1"},{"name":"app","env":[{"name":"K","value":"V"}]}]}}}}`,
			func(d *appsv1.Deployment) error {
				c := d.Spec.Template.Spec.Containers
				return want(len(c) == 2 && c[0].Name == "app" && c[0].Image == "nginx:1.29" && len(c[0].Env) == 1 ||
					len(c) == 2 && c[1].Name == "app" && c[1].Image == "nginx:1.29" && len(c[1].Env) == 1, "containers %+v", c)
			}},
		{"strategic merge delete directive", types.StrategicMergePatchType,
			`{"spec":{"template":{"spec":{"containers":[{"name":"extra","$patch":"delete"}]}}}}`,
			func(d *appsv1.Deployment) error {
				return want(len(d.Spec.Template.Spec.Containers) == 1, "containers %+v", d.Spec.Template.Spec.Containers)
			}},
	}
}

func testPatchOptions(t *testing.T, e *env) {
	ctx := ctxT(t)
	deps := e.client.AppsV1().Deployments("default")
	t.Run("dry run", func(t *testing.T) {
		before, _ := deps.Get(ctx, "web", metav1.GetOptions{})
		got, err := deps.Patch(ctx, "web", types.MergePatchType, []byte(`{"metadata":{"labels":{"dry":"run"}}}`),
			metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil || got.Labels["dry"] != "run" {
			t.Fatalf("dry-run patch: %v %v", err, got.Labels)
		}
		after, _ := deps.Get(ctx, "web", metav1.GetOptions{})
		if after.ResourceVersion != before.ResourceVersion || after.Labels["dry"] != "" {
			t.Fatalf("dry run persisted: %v", after.Labels)
		}
	})
	t.Run("warn on unknown fields", func(t *testing.T) {
		code, body, hdr := e.do(t, http.MethodPatch, "/apis/apps/v1/namespaces/default/deployments/web?fieldValidation=Warn",
			string(types.MergePatchType), []byte(`{"spec":{"bogus":true}}`))
		if code != http.StatusOK || !strings.Contains(hdr.Get("Warning"), "bogus") {
			t.Fatalf("%d warning %q: %s", code, hdr.Get("Warning"), body)
		}
	})
}

func want(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// TestConcurrentPatches races merge patches on one object: each must be
// retried onto the latest version, none lost.
func TestConcurrentPatches(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	cms := e.client.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(ctx, testConfigMap("shared"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			p := fmt.Sprintf(`{"data":{"k%d":"v"}}`, i)
			if _, err := cms.Patch(ctx, "shared", types.MergePatchType, []byte(p), metav1.PatchOptions{}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cm, err := cms.Get(ctx, "shared", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cm.Data) != n+1 {
		t.Fatalf("%d keys after %d concurrent patches: %v", len(cm.Data), n, cm.Data)
	}
}

func TestApplyPatch(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	cms := e.client.CoreV1().ConfigMaps("default")
	cfg := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  labels:\n    team: a\ndata:\n  mode: one\n"
	created, err := cms.Patch(ctx, "app", types.ApplyYAMLPatchType, []byte(cfg), metav1.PatchOptions{FieldManager: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if created.Data["mode"] != "one" || created.Labels["team"] != "a" || created.UID == "" {
		t.Fatalf("apply created %+v", created)
	}
	mf := created.ManagedFields
	if len(mf) != 1 || mf[0].Manager != "me" || mf[0].Operation != metav1.ManagedFieldsOperationApply ||
		mf[0].FieldsV1 == nil || !strings.Contains(string(mf[0].FieldsV1.Raw), `"f:mode"`) {
		t.Fatalf("managed fields %+v", mf)
	}
	// Another writer adds a key; re-applying merges without losing it.
	if _, err := cms.Patch(ctx, "app", types.MergePatchType, []byte(`{"data":{"other":"x"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg2 := strings.Replace(cfg, "mode: one", "mode: two", 1)
	applied, err := cms.Patch(ctx, "app", types.ApplyYAMLPatchType, []byte(cfg2), metav1.PatchOptions{FieldManager: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if applied.Data["mode"] != "two" || applied.Data["other"] != "x" || applied.UID != created.UID {
		t.Fatalf("re-apply: %+v", applied.Data)
	}
	if len(applied.ManagedFields) != 1 {
		t.Fatalf("managed fields after re-apply: %+v", applied.ManagedFields)
	}
	// Re-applying the same configuration changes nothing.
	again, err := cms.Patch(ctx, "app", types.ApplyYAMLPatchType, []byte(cfg2), metav1.PatchOptions{FieldManager: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Data["mode"] != "two" || again.ResourceVersion != applied.ResourceVersion {
		t.Fatalf("idempotent apply: rv %s -> %s, data %+v", applied.ResourceVersion, again.ResourceVersion, again.Data)
	}
}
