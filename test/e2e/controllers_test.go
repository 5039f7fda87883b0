package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/internal/testenv"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

// convergeTimeout bounds the wait for controllers to converge; it only
// guards against a hung test.
const convergeTimeout = 60 * time.Second

// controllerPlugins builds the built-in controllers (and extra plugin
// directories) into one directory for --controllers-plugins-dir.
func controllerPlugins(t testing.TB, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		src := filepath.Join("..", "..", "plugins", "controllers", name)
		wasm := plugintest.BuildWasm(t, src)
		if err := os.Symlink(wasm, filepath.Join(dir, name+".wasm")); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// allControllers lists the built-in controllers: every main package
// under plugins/controllers (the server loads each <dir>.wasm it lists).
var allControllers = func() []string {
	mains, _ := filepath.Glob(filepath.Join("..", "..", "plugins", "controllers", "*", "main.go"))
	var out []string
	for _, m := range mains {
		out = append(out, filepath.Base(filepath.Dir(m)))
	}
	return out
}()

// startWithControllers starts a server running the built-in controllers.
func startWithControllers(t *testing.T, args ...string) (*testenv.Server, kubectl, *kubernetes.Clientset) {
	t.Helper()
	dir := controllerPlugins(t, allControllers...)
	s := testenv.StartServer(t, append([]string{"--controllers-plugins-dir", dir}, args...)...)
	return s, newKubectl(t, s), clientset(t, s)
}

// eventually polls cond until it returns "" (success) or the timeout,
// failing t with the last reason.
func eventually(t testing.TB, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	var why string
	for time.Now().Before(deadline) {
		if why = cond(); why == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not reached after %v: %s", what, convergeTimeout, why)
}

// podsOwnedBy lists the pods in ns controlled by uid.
func podsOwnedBy(t testing.TB, cs *kubernetes.Clientset, ns, uid string) []corev1.Pod {
	t.Helper()
	l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && string(ref.UID) == uid && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// replicaSetsOf lists the ReplicaSets controlled by deployment d.
func replicaSetsOf(t testing.TB, cs *kubernetes.Clientset, d *appsv1.Deployment) []appsv1.ReplicaSet {
	t.Helper()
	l, err := cs.AppsV1().ReplicaSets(d.Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []appsv1.ReplicaSet
	for _, rs := range l.Items {
		if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == d.UID {
			out = append(out, rs)
		}
	}
	slices.SortFunc(out, func(a, b appsv1.ReplicaSet) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// served reports whether the server serves resource in groupVersion.
func served(t testing.TB, cs *kubernetes.Clientset, groupVersion, resource string) bool {
	t.Helper()
	l, err := cs.Discovery().ServerResourcesForGroupVersion(groupVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range l.APIResources {
		if r.Name == resource {
			return true
		}
	}
	return false
}

// apply writes doc to a file and runs kubectl apply -f on it.
func (k kubectl) apply(t testing.TB, doc string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	k.run(t, "apply", "-f", path)
}

const rsManifest = `
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: In, values: [front, edge]}]
  template:
    metadata: {labels: {app: web, tier: front}}
    spec: {containers: [{name: c, image: nginx}]}
`

func TestControllersReplicaSet(t *testing.T) {
	skipShort(t)
	_, k, cs := startWithControllers(t)
	ctx := context.Background()
	k.apply(t, `
apiVersion: v1
kind: Pod
metadata: {name: orphan, labels: {app: web, tier: edge}}
spec: {containers: [{name: c, image: nginx}]}
`)
	k.apply(t, rsManifest)
	rs, err := cs.AppsV1().ReplicaSets("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uid := string(rs.UID)
	want := func(n int) func() string {
		return func() string {
			pods := podsOwnedBy(t, cs, "default", uid)
			rs, err := cs.AppsV1().ReplicaSets("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			if len(pods) != n || rs.Status.Replicas != int32(n) || rs.Status.ObservedGeneration != rs.Generation {
				return fmt.Sprintf("%d pods, status.replicas %d, observedGeneration %d/%d; want %d",
					len(pods), rs.Status.Replicas, rs.Status.ObservedGeneration, rs.Generation, n)
			}
			return ""
		}
	}
	eventually(t, "3 pods", want(3))

	t.Run("adopts a matching orphan", func(t *testing.T) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "orphan", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ref := metav1.GetControllerOf(p); ref == nil || string(ref.UID) != uid || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
			t.Errorf("orphan's controller %+v, want the ReplicaSet (uid %s) with blockOwnerDeletion", ref, uid)
		}
	})

	t.Run("releases a relabelled pod and replaces it", func(t *testing.T) {
		k.run(t, "label", "pod", "orphan", "app=other", "--overwrite")
		eventually(t, "release", func() string {
			p, err := cs.CoreV1().Pods("default").Get(ctx, "orphan", metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			if ref := metav1.GetControllerOf(p); ref != nil {
				return "relabelled pod still controlled by " + ref.Name
			}
			return want(3)()
		})
	})

	t.Run("pods come from the template", func(t *testing.T) {
		for _, p := range podsOwnedBy(t, cs, "default", uid) {
			if !strings.HasPrefix(p.Name, "web-") || p.Labels["tier"] != "front" || p.Spec.Containers[0].Image != "nginx" {
				t.Errorf("pod %s labels %v image %s; want web-*, the template's labels and image", p.Name, p.Labels, p.Spec.Containers[0].Image)
			}
		}
	})

	t.Run("scale", func(t *testing.T) {
		for _, n := range []int{5, 1} {
			k.run(t, "scale", "replicaset", "web", fmt.Sprintf("--replicas=%d", n))
			eventually(t, fmt.Sprintf("scale to %d", n), want(n))
		}
	})

	t.Run("replication controller", func(t *testing.T) {
		if !served(t, cs, "v1", "replicationcontrollers") {
			t.Skip("the API server does not serve replicationcontrollers yet")
		}
		k.apply(t, `
apiVersion: v1
kind: ReplicationController
metadata: {name: kubia}
spec:
  replicas: 2
  selector: {app: kubia}
  template:
    metadata: {labels: {app: kubia}}
    spec: {containers: [{name: c, image: luksa/kubia}]}
`)
		rc, err := cs.CoreV1().ReplicationControllers("default").Get(ctx, "kubia", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "rc pods", func() string {
			pods := podsOwnedBy(t, cs, "default", string(rc.UID))
			rc, err := cs.CoreV1().ReplicationControllers("default").Get(ctx, "kubia", metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			if len(pods) != 2 || rc.Status.Replicas != 2 {
				return fmt.Sprintf("%d pods, status.replicas %d; want 2", len(pods), rc.Status.Replicas)
			}
			return ""
		})
	})
}

// fakeKubelet marks every pod in ns Running and Ready until the test
// ends, standing in for nodes in tests that need available pods.
func fakeKubelet(t testing.TB, cs *kubernetes.Clientset, ns string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range l.Items {
					p := &l.Items[i]
					if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodRunning {
						continue
					}
					now := metav1.Now()
					p.Status.Phase = corev1.PodRunning
					p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
					_, _ = cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
}

// deploymentState describes a deployment, its ReplicaSets and pods.
func deploymentState(t testing.TB, cs *kubernetes.Clientset, ns, name string) (*appsv1.Deployment, []appsv1.ReplicaSet, int, error) {
	t.Helper()
	d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, 0, err
	}
	rss := replicaSetsOf(t, cs, d)
	pods := 0
	for _, rs := range rss {
		pods += len(podsOwnedBy(t, cs, ns, string(rs.UID)))
	}
	return d, rss, pods, nil
}

// settled reports "" once deployment name has one ReplicaSet with replicas
// running the image, every other ReplicaSet scaled to zero, and its status
// reflecting that.
func settled(t testing.TB, cs *kubernetes.Clientset, ns, name, image string, replicas int) func() string {
	return func() string {
		d, rss, pods, err := deploymentState(t, cs, ns, name)
		if err != nil {
			return err.Error()
		}
		active := 0
		for _, rs := range rss {
			if *rs.Spec.Replicas > 0 {
				active++
				if rs.Spec.Template.Spec.Containers[0].Image != image || *rs.Spec.Replicas != int32(replicas) {
					return fmt.Sprintf("active replicaset %s image %s replicas %d", rs.Name, rs.Spec.Template.Spec.Containers[0].Image, *rs.Spec.Replicas)
				}
			}
		}
		st := d.Status
		if active != 1 || pods != replicas || st.Replicas != int32(replicas) || st.UpdatedReplicas != int32(replicas) ||
			st.ObservedGeneration != d.Generation {
			return fmt.Sprintf("%d active replicasets, %d pods, status %+v (generation %d)", active, pods, st, d.Generation)
		}
		return ""
	}
}

func TestControllersDeployment(t *testing.T) {
	skipShort(t)
	_, k, cs := startWithControllers(t)
	ctx := context.Background()
	fakeKubelet(t, cs, "default")
	k.run(t, "apply", "-f", filepath.Join("..", "..", "configs", "examples", "httpbin.yaml"))
	const image = "kennethreitz/httpbin"
	eventually(t, "httpbin: 2 pods", settled(t, cs, "default", "httpbin", image, 2))
	k.run(t, "rollout", "status", "deployment/httpbin", "--timeout=60s")

	t.Run("replicaset and pods", func(t *testing.T) {
		d, rss, _, err := deploymentState(t, cs, "default", "httpbin")
		if err != nil {
			t.Fatal(err)
		}
		rs := rss[0]
		hash := rs.Labels["pod-template-hash"]
		if hash == "" || rs.Name != "httpbin-"+hash || rs.Spec.Selector.MatchLabels["pod-template-hash"] != hash ||
			rs.Annotations["deployment.kubernetes.io/revision"] != "1" || d.Annotations["deployment.kubernetes.io/revision"] != "1" {
			t.Errorf("replicaset %s labels %v selector %v annotations %v; deployment annotations %v", rs.Name, rs.Labels,
				rs.Spec.Selector, rs.Annotations, d.Annotations)
		}
		for _, p := range podsOwnedBy(t, cs, "default", string(rs.UID)) {
			if p.Labels["pod-template-hash"] != hash || p.Labels["app"] != "httpbin" {
				t.Errorf("pod %s labels %v", p.Name, p.Labels)
			}
		}
		if d.Status.AvailableReplicas != 2 || d.Status.ReadyReplicas != 2 {
			t.Errorf("status %+v, want 2 ready and available", d.Status)
		}
	})

	t.Run("scale 2 to 5 to 1", func(t *testing.T) {
		for _, n := range []int{5, 1} {
			k.run(t, "scale", "deployment", "httpbin", fmt.Sprintf("--replicas=%d", n))
			eventually(t, fmt.Sprintf("scale to %d", n), settled(t, cs, "default", "httpbin", image, n))
		}
		k.run(t, "scale", "deployment", "httpbin", "--replicas=2")
		eventually(t, "scale to 2", settled(t, cs, "default", "httpbin", image, 2))
	})

	t.Run("image change rolls out a new replicaset", func(t *testing.T) {
		k.run(t, "set", "image", "deployment/httpbin", "httpbin=kennethreitz/httpbin:v2")
		eventually(t, "rolled out", settled(t, cs, "default", "httpbin", image+":v2", 2))
		k.run(t, "rollout", "status", "deployment/httpbin", "--timeout=60s")
		d, rss, _, err := deploymentState(t, cs, "default", "httpbin")
		if err != nil {
			t.Fatal(err)
		}
		if len(rss) != 2 || d.Annotations["deployment.kubernetes.io/revision"] != "2" {
			t.Errorf("%d replicasets (want 2), revision %q (want 2)", len(rss), d.Annotations["deployment.kubernetes.io/revision"])
		}
		if out := k.run(t, "rollout", "history", "deployment/httpbin"); !strings.Contains(out, "1 ") || !strings.Contains(out, "2 ") {
			t.Errorf("rollout history:\n%s", out)
		}
	})

	t.Run("rollout undo", func(t *testing.T) {
		k.run(t, "rollout", "undo", "deployment/httpbin")
		eventually(t, "rolled back", settled(t, cs, "default", "httpbin", image, 2))
		d, rss, _, err := deploymentState(t, cs, "default", "httpbin")
		if err != nil {
			t.Fatal(err)
		}
		if len(rss) != 2 || d.Annotations["deployment.kubernetes.io/revision"] != "3" {
			t.Errorf("%d replicasets (want the 2 reused), revision %q (want 3)", len(rss), d.Annotations["deployment.kubernetes.io/revision"])
		}
		k.run(t, "rollout", "status", "deployment/httpbin", "--timeout=60s")
	})

	t.Run("recreate", func(t *testing.T) {
		k.run(t, "patch", "deployment", "httpbin", "--type=merge", "-p",
			`{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null},"template":{"spec":{"containers":[{"name":"httpbin","image":"kennethreitz/httpbin:v3"}]}}}}`)
		eventually(t, "recreated", settled(t, cs, "default", "httpbin", image+":v3", 2))
	})

	t.Run("revision history limit", func(t *testing.T) {
		k.run(t, "patch", "deployment", "httpbin", "--type=merge", "-p", `{"spec":{"revisionHistoryLimit":1}}`)
		eventually(t, "old replicasets deleted", func() string {
			_, rss, _, err := deploymentState(t, cs, "default", "httpbin")
			if err != nil {
				return err.Error()
			}
			if len(rss) != 2 {
				return fmt.Sprintf("%d replicasets, want 2 (the current and 1 old)", len(rss))
			}
			return ""
		})
	})
	_ = ctx
}

// deleteCascade creates a deployment, deletes it with --cascade=mode and
// returns its ReplicaSets' uids.
func TestControllersGarbageCollector(t *testing.T) {
	skipShort(t)
	_, k, cs := startWithControllers(t)
	ctx := context.Background()
	deploy := func(t *testing.T, name string) (*appsv1.Deployment, appsv1.ReplicaSet) {
		t.Helper()
		k.apply(t, strings.ReplaceAll(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME}
spec:
  replicas: 2
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec: {containers: [{name: c, image: nginx}]}
`, "NAME", name))
		eventually(t, name+" up", settled(t, cs, "default", name, "nginx", 2))
		d, rss, _, err := deploymentState(t, cs, "default", name)
		if err != nil {
			t.Fatal(err)
		}
		return d, rss[0]
	}
	gone := func(get func() error) func() string {
		return func() string {
			if err := get(); err == nil {
				return "still exists"
			} else if !strings.Contains(err.Error(), "not found") {
				return err.Error()
			}
			return ""
		}
	}

	t.Run("background", func(t *testing.T) {
		d, rs := deploy(t, "bg")
		k.run(t, "delete", "deployment", "bg")
		eventually(t, "replicaset collected", gone(func() error {
			_, err := cs.AppsV1().ReplicaSets("default").Get(ctx, rs.Name, metav1.GetOptions{})
			return err
		}))
		eventually(t, "pods collected", func() string {
			if n := len(podsOwnedBy(t, cs, "default", string(rs.UID))); n > 0 {
				return fmt.Sprintf("%d pods left", n)
			}
			return ""
		})
		_ = d
	})

	t.Run("orphan", func(t *testing.T) {
		_, rs := deploy(t, "orphan")
		k.run(t, "delete", "deployment", "orphan", "--cascade=orphan")
		eventually(t, "deployment gone", gone(func() error {
			_, err := cs.AppsV1().Deployments("default").Get(ctx, "orphan", metav1.GetOptions{})
			return err
		}))
		got, err := cs.AppsV1().ReplicaSets("default").Get(ctx, rs.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.OwnerReferences) != 0 || got.DeletionTimestamp != nil {
			t.Errorf("orphaned replicaset: ownerReferences %v deletionTimestamp %v", got.OwnerReferences, got.DeletionTimestamp)
		}
		if n := len(podsOwnedBy(t, cs, "default", string(rs.UID))); n != 2 {
			t.Errorf("%d pods of the orphaned replicaset, want 2", n)
		}
	})

	t.Run("foreground", func(t *testing.T) {
		_, rs := deploy(t, "fg")
		k.run(t, "delete", "deployment", "fg", "--cascade=foreground")
		// kubectl waits for the deletion: by now everything is gone.
		for what, get := range map[string]func() error{
			"deployment": func() error {
				_, err := cs.AppsV1().Deployments("default").Get(ctx, "fg", metav1.GetOptions{})
				return err
			},
			"replicaset": func() error {
				_, err := cs.AppsV1().ReplicaSets("default").Get(ctx, rs.Name, metav1.GetOptions{})
				return err
			},
		} {
			if why := gone(get)(); why != "" {
				t.Errorf("%s after a foreground delete: %s", what, why)
			}
		}
		if n := len(podsOwnedBy(t, cs, "default", string(rs.UID))); n != 0 {
			t.Errorf("%d pods left after a foreground delete", n)
		}
	})
}

func TestControllersNamespaceDeletion(t *testing.T) {
	skipShort(t)
	_, k, cs := startWithControllers(t)
	ctx := context.Background()
	k.run(t, "create", "namespace", "doomed")
	k.run(t, "-n", "doomed", "create", "deployment", "web", "--image=nginx", "--replicas=3")
	k.run(t, "-n", "doomed", "create", "configmap", "cfg", "--from-literal=a=b")
	eventually(t, "pods", func() string {
		l, err := cs.CoreV1().Pods("doomed").List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != 3 {
			return fmt.Sprintf("%v pods (%v), want 3", len(l.Items), err)
		}
		return ""
	})
	k.run(t, "delete", "namespace", "doomed", "--timeout=60s")
	eventually(t, "namespace gone", func() string {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{}); err == nil {
			return "namespace still exists"
		}
		for what, n := range map[string]func() (int, error){
			"pods": func() (int, error) {
				l, err := cs.CoreV1().Pods("doomed").List(ctx, metav1.ListOptions{})
				return len(l.Items), err
			},
			"replicasets": func() (int, error) {
				l, err := cs.AppsV1().ReplicaSets("doomed").List(ctx, metav1.ListOptions{})
				return len(l.Items), err
			},
		} {
			if c, err := n(); err != nil || c != 0 {
				return fmt.Sprintf("%d %s left (%v)", c, what, err)
			}
		}
		return ""
	})
}

func TestControllersTrappingPluginDoesNotStopOthers(t *testing.T) {
	skipShort(t)
	trap := plugintest.BuildWasm(t, filepath.Join("..", "..", "plugins", "controllers", "testdata", "trap"))
	config := filepath.Join(t.TempDir(), "tugboat.yaml")
	if err := os.WriteFile(config, []byte("controllers:\n  plugins:\n    - name: trap\n      path: "+trap+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, k, cs := startWithControllers(t, "--config", config)
	ctx := context.Background()
	for i := range 3 {
		k.run(t, "create", "configmap", fmt.Sprintf("c%d", i))
	}
	k.apply(t, rsManifest)
	rs, err := cs.AppsV1().ReplicaSets("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "replicaset pods despite the trapping controller", func() string {
		if n := len(podsOwnedBy(t, cs, "default", string(rs.UID))); n != 3 {
			return fmt.Sprintf("%d pods", n)
		}
		return ""
	})
	eventually(t, "traps logged", func() string {
		if !strings.Contains(s.Output(), "trap controller: reconcile of c0") && !strings.Contains(s.Output(), `plugin \"trap\"`) {
			return "no trap in the server log"
		}
		return ""
	})
}

// binder binds every unbound pod in ns to one of nodes, round robin,
// through pods/binding, standing in for the scheduler until the test ends.
// Servers of tests that use it run with --scheduler-enabled=false, or the
// two would race to bind the same pods.
func binder(t testing.TB, cs *kubernetes.Clientset, ns string, nodes ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	go func() {
		defer close(done)
		next := 0
		for ctx.Err() == nil {
			l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName="})
			if err == nil {
				for _, p := range l.Items {
					if p.DeletionTimestamp != nil {
						continue
					}
					b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, UID: p.UID},
						Target: corev1.ObjectReference{Kind: "Node", Name: nodes[next%len(nodes)]}}
					if cs.CoreV1().Pods(ns).Bind(ctx, b, metav1.CreateOptions{}) == nil {
						next++
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return stop
}

// TestControllersSeedWorkflowOnSimNodes is the seed's workflow on
// simulated nodes: the httpbin Deployment's pods are bound (by a stand-in
// scheduler) and go Running; scaling down deletes bound pods gracefully,
// which the sim nodes finish.
func TestControllersSeedWorkflowOnSimNodes(t *testing.T) {
	skipShort(t)
	_, k, cs := startWithControllers(t, "--sim-nodes", "2", "--disable-agent", "--scheduler-enabled=false")
	ctx := context.Background()
	binder(t, cs, "default", "sim-0", "sim-1")
	k.run(t, "apply", "-f", filepath.Join("..", "..", "configs", "examples", "httpbin.yaml"))
	running := func(n int, image string) func() string {
		return func() string {
			if why := settled(t, cs, "default", "httpbin", image, n)(); why != "" {
				return why
			}
			d, rss, _, err := deploymentState(t, cs, "default", "httpbin")
			if err != nil {
				return err.Error()
			}
			for _, rs := range rss {
				for _, p := range podsOwnedBy(t, cs, "default", string(rs.UID)) {
					if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "" {
						return fmt.Sprintf("pod %s phase %s node %q", p.Name, p.Status.Phase, p.Spec.NodeName)
					}
				}
			}
			if d.Status.ReadyReplicas != int32(n) || d.Status.AvailableReplicas != int32(n) {
				return fmt.Sprintf("deployment status %+v", d.Status)
			}
			return ""
		}
	}
	eventually(t, "2 pods Running", running(2, "kennethreitz/httpbin"))
	k.run(t, "rollout", "status", "deployment/httpbin", "--timeout=60s")
	for _, n := range []int{5, 1} {
		k.run(t, "scale", "deployment", "httpbin", fmt.Sprintf("--replicas=%d", n))
		eventually(t, fmt.Sprintf("%d pods Running", n), running(n, "kennethreitz/httpbin"))
	}
	k.run(t, "scale", "deployment", "httpbin", "--replicas=2")
	k.run(t, "set", "image", "deployment/httpbin", "httpbin=kennethreitz/httpbin:v2")
	k.run(t, "rollout", "status", "deployment/httpbin", "--timeout=60s")
	eventually(t, "v2 Running", running(2, "kennethreitz/httpbin:v2"))
	k.run(t, "rollout", "undo", "deployment/httpbin")
	k.run(t, "rollout", "status", "deployment/httpbin", "--timeout=60s")
	eventually(t, "v1 Running again", running(2, "kennethreitz/httpbin"))
	k.run(t, "delete", "deployment", "httpbin")
	eventually(t, "pods gone", func() string {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != 0 {
			return fmt.Sprintf("%d pods left (%v)", len(l.Items), err)
		}
		return ""
	})
}

func TestControllersEndpoints(t *testing.T) {
	skipShort(t)
	_, k, cs := startWithControllers(t, "--sim-nodes", "2", "--disable-agent", "--scheduler-enabled=false")
	ctx := context.Background()
	binder(t, cs, "default", "sim-0", "sim-1")
	k.run(t, "create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80")
	k.run(t, "expose", "deployment", "web", "--port=8080", "--target-port=80")
	k.apply(t, `
apiVersion: v1
kind: Service
metadata: {name: external}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: external}
subsets: [{addresses: [{ip: 11.11.11.11}], ports: [{port: 80}]}]
`)
	eventually(t, "endpoints of web", func() string {
		ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 2 || len(ep.Subsets[0].Ports) != 1 || ep.Subsets[0].Ports[0].Port != 80 {
			return fmt.Sprintf("subsets %+v", ep.Subsets)
		}
		slices, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
		if err != nil || len(slices.Items) != 1 || len(slices.Items[0].Endpoints) != 2 {
			return fmt.Sprintf("endpointslices %+v (%v)", slices, err)
		}
		return ""
	})
	k.run(t, "scale", "deployment", "web", "--replicas=1")
	eventually(t, "endpoints follow the scale-down", func() string {
		ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil || len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 {
			return fmt.Sprintf("endpoints %+v (%v)", ep, err)
		}
		return ""
	})
	ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "external", metav1.GetOptions{})
	if err != nil || len(ep.Subsets) != 1 || ep.Subsets[0].Addresses[0].IP != "11.11.11.11" {
		t.Errorf("hand-written endpoints of a selector-less service: %+v (%v)", ep, err)
	}
}

// TestControllersJob runs the seed's serial and parallel Jobs on sim nodes
// (their pods succeed after the sim's exit-after) and a failing one.
func TestControllersJob(t *testing.T) {
	skipShort(t)
	_, k, cs := startWithControllers(t, "--sim-nodes", "2", "--disable-agent", "--scheduler-enabled=false", "--sim-exit-after", "200ms")
	ctx := context.Background()
	binder(t, cs, "default", "sim-0", "sim-1")
	k.apply(t, `
apiVersion: batch/v1
kind: Job
metadata: {name: multi-completion-batch-job}
spec:
  completions: 5
  parallelism: 2
  template:
    metadata: {labels: {app: batch-job}}
    spec:
      restartPolicy: OnFailure
      containers: [{name: main, image: luksa/batch-job}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: failing}
spec:
  backoffLimit: 1
  template:
    metadata: {annotations: {sim.tugboat.dev/exit-code: "1"}}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox}]
`)
	maxActive := 0
	eventually(t, "5 completions", func() string {
		j, err := cs.BatchV1().Jobs("default").Get(ctx, "multi-completion-batch-job", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		maxActive = max(maxActive, int(j.Status.Active))
		complete := false
		for _, c := range j.Status.Conditions {
			complete = complete || (c.Type == "Complete" && c.Status == corev1.ConditionTrue)
		}
		if !complete || j.Status.Succeeded != 5 || j.Status.CompletionTime == nil {
			return fmt.Sprintf("status %+v", j.Status)
		}
		return ""
	})
	if maxActive > 2 {
		t.Errorf("%d pods active at once, parallelism 2", maxActive)
	}
	k.run(t, "wait", "--for=condition=complete", "job/multi-completion-batch-job", "--timeout=10s")
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=multi-completion-batch-job"})
	if err != nil || len(pods.Items) != 5 {
		t.Errorf("%d pods of the job (%v), want 5", len(pods.Items), err)
	}
	eventually(t, "failing job fails", func() string {
		j, err := cs.BatchV1().Jobs("default").Get(ctx, "failing", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		for _, c := range j.Status.Conditions {
			if c.Type == "Failed" && c.Status == corev1.ConditionTrue && c.Reason == "BackoffLimitExceeded" && j.Status.Failed == 2 {
				return ""
			}
		}
		return fmt.Sprintf("status %+v", j.Status)
	})
}

// TestControllersNodeFailure stops a sim node's heartbeat (shortened
// timings): the node goes Unknown and tainted, its pod is evicted and
// replaced on another node.
func TestControllersNodeFailure(t *testing.T) {
	skipShort(t)
	dir := controllerPlugins(t, allControllers...)
	config := filepath.Join(t.TempDir(), "tugboat.yaml")
	if err := os.WriteFile(config, []byte(`controllers:
  plugins:
    - name: node-lifecycle
      path: `+filepath.Join(dir, "node-lifecycle.wasm")+`
      settings: {"gracePeriod": "3s", "evictionTimeout": "1s"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// The server's scheduler places the pods (spreading them: each pod's
	// default requests make the emptier nodes score higher).
	s := testenv.StartServer(t, "--controllers-plugins-dir", dir, "--config", config, "--sim-nodes", "3",
		"--disable-agent", "--sim-renew-interval", "500ms", "--scheduler-plugins-dir", schedulerPlugins(t))
	k, cs := newKubectl(t, s), clientset(t, s)
	ctx := context.Background()
	// 12 CPUs each on 32-CPU nodes: the emptier node clearly scores
	// higher, so the three pods spread (with tiny requests every node
	// scores the same and the scheduler may stack them, as kube-scheduler
	// does without its default topology spread), and a replacement still
	// fits next to a surviving pod.
	web := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(web, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx
        resources: {requests: {cpu: "12"}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	k.run(t, "apply", "-f", web)
	onNode := func(node string) (running, terminating int) {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range l.Items {
			switch {
			case p.Spec.NodeName != node && node != "":
			case p.DeletionTimestamp != nil:
				terminating++
			case p.Status.Phase == corev1.PodRunning:
				running++
			}
		}
		return running, terminating
	}
	eventually(t, "a pod Running on each node", func() string {
		for _, n := range []string{"sim-0", "sim-1", "sim-2"} {
			if r, _ := onNode(n); r != 1 {
				return fmt.Sprintf("%d pods Running on %s", r, n)
			}
		}
		return ""
	})
	k.run(t, "annotate", "node", "sim-0", "sim.tugboat.dev/stopped=true")
	eventually(t, "sim-0 unreachable and its pod replaced", func() string {
		n, err := cs.CoreV1().Nodes().Get(ctx, "sim-0", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		ready, tainted := "", false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ready = string(c.Status)
			}
		}
		for _, taint := range n.Spec.Taints {
			tainted = tainted || (taint.Key == "node.kubernetes.io/unreachable" && taint.Effect == corev1.TaintEffectNoExecute)
		}
		if ready != "Unknown" || !tainted {
			return fmt.Sprintf("sim-0 Ready %q, taints %v", ready, n.Spec.Taints)
		}
		if _, term := onNode("sim-0"); term != 1 {
			return fmt.Sprintf("%d pods terminating on sim-0", term)
		}
		if r, _ := onNode(""); r != 3 {
			return fmt.Sprintf("%d pods Running, want 3", r)
		}
		return ""
	})
	if r, _ := onNode("sim-0"); r != 0 {
		t.Errorf("%d pods Running on the failed node", r)
	}
}

// TestControllersDeploymentProgressDeadline: a Deployment whose pods never
// become available (no scheduler binds them) times out after its
// progressDeadlineSeconds: Progressing=False/ProgressDeadlineExceeded, and
// kubectl rollout status fails with Kubernetes' message.
func TestControllersDeploymentProgressDeadline(t *testing.T) {
	skipShort(t)
	_, k, _ := startWithControllers(t, "--sim-nodes", "1", "--disable-agent", "--scheduler-enabled=false")
	k.apply(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck}
spec:
  replicas: 2
  progressDeadlineSeconds: 2
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec: {containers: [{name: c, image: never-ready}]}
`)
	r := k.try(t, "rollout", "status", "deployment/stuck", "--timeout=60s")
	if want := `deployment "stuck" exceeded its progress deadline`; r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("rollout status exited %d with\nstdout: %s\nstderr: %s\nwant a failure saying %s", r.code, r.stdout, r.stderr, want)
	}
	var d appsv1.Deployment
	k.getJSON(t, &d, "deployment", "stuck")
	var prog *appsv1.DeploymentCondition
	for i, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing {
			prog = &d.Status.Conditions[i]
		}
	}
	if prog == nil || prog.Status != corev1.ConditionFalse || prog.Reason != "ProgressDeadlineExceeded" ||
		!strings.HasSuffix(prog.Message, "has timed out progressing.") || prog.LastUpdateTime.IsZero() {
		t.Fatalf("Progressing condition %+v, want False/ProgressDeadlineExceeded", prog)
	}
}

// TestControllersNodeNotReady: a node whose agent reports Ready=False gets
// the node.kubernetes.io/not-ready NoSchedule and NoExecute taints, its
// pod without a toleration is evicted after the (shortened) eviction
// timeout, and Ready=True lifts the taints.
func TestControllersNodeNotReady(t *testing.T) {
	skipShort(t)
	dir := controllerPlugins(t, allControllers...)
	config := filepath.Join(t.TempDir(), "tugboat.yaml")
	if err := os.WriteFile(config, []byte(`controllers:
  plugins:
    - name: node-lifecycle
      path: `+filepath.Join(dir, "node-lifecycle.wasm")+`
      settings: {"evictionTimeout": "1s"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := testenv.StartServer(t, "--controllers-plugins-dir", dir, "--config", config, "--sim-nodes", "1",
		"--disable-agent", "--scheduler-enabled=false")
	k := newKubectl(t, s)
	k.apply(t, `
apiVersion: v1
kind: Pod
metadata: {name: victim}
spec:
  nodeName: sim-0
  containers: [{name: c, image: nginx}]
`)
	eventually(t, "victim Running", func() string {
		if phase := k.jsonpath(t, "pod/victim", "{.status.phase}"); phase != "Running" {
			return "phase " + phase
		}
		return ""
	})
	setReady := func(status string) {
		k.run(t, "patch", "node", "sim-0", "--subresource=status",
			"-p", `{"status":{"conditions":[{"type":"Ready","status":"`+status+`","reason":"E2E","message":"set by the test"}]}}`)
	}
	taints := func() string {
		return k.jsonpath(t, "node/sim-0", `{range .spec.taints[*]}{.key}:{.effect} {end}`)
	}
	setReady("False")
	eventually(t, "not-ready taints", func() string {
		if got := taints(); got != "node.kubernetes.io/not-ready:NoSchedule node.kubernetes.io/not-ready:NoExecute " {
			return "taints " + got
		}
		return ""
	})
	eventually(t, "victim evicted", func() string {
		if r := k.try(t, "get", "pod", "victim"); r.code == 0 {
			return "victim still there: " + r.stdout
		}
		return ""
	})
	setReady("True")
	eventually(t, "taints lifted", func() string {
		if got := taints(); got != "" {
			return "taints " + got
		}
		return ""
	})
}

// TestControllersDeploymentProportionalScaling is the example of
// Kubernetes' documentation: 10 replicas with maxSurge 3 and
// maxUnavailable 2 roll out to a template whose pods cannot be scheduled
// (the rollout stalls with 8 old and 5 new), then `kubectl scale` to 15
// adds 3 to the old ReplicaSet and 2 to the new one.
func TestControllersDeploymentProportionalScaling(t *testing.T) {
	skipShort(t)
	_, k, cs := startWithControllers(t, "--sim-nodes", "2", "--disable-agent", "--scheduler-plugins-dir", schedulerPlugins(t))
	k.apply(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 10
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 3, maxUnavailable: 2}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}
`)
	k.run(t, "rollout", "status", "deployment/web", "--timeout=60s")
	k.run(t, "patch", "deployment", "web", "-p", `{"spec":{"template":{"spec":{"nodeSelector":{"no-such-node":"true"}}}}}`)
	sizes := func(wantOld, wantNew int32) func() string {
		return func() string {
			d, rss, _, err := deploymentState(t, cs, "default", "web")
			if err != nil {
				return err.Error()
			}
			var got []string
			for _, rs := range rss {
				got = append(got, fmt.Sprintf("%s=%d", rs.Spec.Template.Spec.NodeSelector["no-such-node"], *rs.Spec.Replicas))
			}
			slices.Sort(got)
			if want := []string{fmt.Sprintf("=%d", wantOld), fmt.Sprintf("true=%d", wantNew)}; !slices.Equal(got, want) {
				return fmt.Sprintf("replicasets (new ones marked true) %v, want %v; deployment status %+v", got, want, d.Status)
			}
			return ""
		}
	}
	eventually(t, "the rollout stalls at 8 old and 5 new", sizes(8, 5))
	k.run(t, "scale", "deployment", "web", "--replicas=15")
	eventually(t, "proportional scaling to 11 old and 7 new", sizes(11, 7))
}
