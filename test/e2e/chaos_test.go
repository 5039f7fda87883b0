package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/tugboat-dev/tugboat/internal/testenv"
)

// TestChaosKillDuringRollout creates 100 Deployments on simulated nodes,
// with the real scheduler and controllers, and kills the server with
// SIGKILL at random moments while they roll out and while they roll out a
// new image. After the last restart everything must converge: each
// Deployment has exactly its replicas, all Running on a node, all from one
// ReplicaSet with the new image, and no pod anywhere is left over or
// duplicated.
func TestChaosKillDuringRollout(t *testing.T) {
	skipShort(t)
	const (
		deployments = 100
		replicas    = 3
		kills       = 4
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	addr := freeAddr(t)
	args := []string{"--listen", addr,
		"--controllers-plugins-dir", controllerPlugins(t, allControllers...),
		"--scheduler-plugins-dir", schedulerPlugins(t),
		"--sim-nodes", "20", "--disable-agent"}
	s := testenv.StartServer(t, args...)
	args = append(args, "--data-dir", s.DataDir)
	cs := clientset(t, s)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "chaos"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// write retries a write across kills: a request cut by the kill may or
	// may not have happened, so AlreadyExists after a retry is success.
	write := func(what string, f func(cs *kubernetes.Clientset) error) {
		t.Helper()
		deadline := time.Now().Add(convergeTimeout)
		for {
			err := f(cs)
			if err == nil || apierrors.IsAlreadyExists(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	restart := func(i int) {
		t.Helper()
		s.Kill()
		if err := s.Wait(t); err == nil {
			t.Fatal("server exited with status 0 after SIGKILL")
		}
		s = testenv.StartServer(t, args...)
		cs = clientset(t, s)
		t.Logf("kill %d: restarted", i+1)
	}

	// Kills happen in the background at random moments (0.3-2 s apart)
	// while the test keeps writing; writes cut by a kill are retried.
	killAt := make([]time.Duration, kills)
	for i := range killAt {
		killAt[i] = time.Duration(300+rng.IntN(1700)) * time.Millisecond
	}
	nextKill := 0
	lastKill := time.Now()
	maybeKill := func() {
		if nextKill < kills && time.Since(lastKill) > killAt[nextKill] {
			restart(nextKill)
			nextKill++
			lastKill = time.Now()
		}
	}

	for i := range deployments {
		d := chaosDeployment(fmt.Sprintf("app-%03d", i), replicas, "busybox:1")
		write("create "+d.Name, func(cs *kubernetes.Clientset) error {
			_, err := cs.AppsV1().Deployments("chaos").Create(ctx, d, metav1.CreateOptions{})
			return err
		})
		maybeKill()
	}
	// Roll out a new image while the first rollout may still be running.
	for i := range deployments {
		name := fmt.Sprintf("app-%03d", i)
		patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"busybox:2"}]}}}}`)
		write("set image "+name, func(cs *kubernetes.Clientset) error {
			_, err := cs.AppsV1().Deployments("chaos").Patch(ctx, name, "application/strategic-merge-patch+json", patch, metav1.PatchOptions{})
			return err
		})
		maybeKill()
	}
	for nextKill < kills {
		time.Sleep(killAt[nextKill])
		restart(nextKill)
		nextKill++
	}

	deadline := time.Now().Add(3 * convergeTimeout)
	var why string
	for time.Now().Before(deadline) {
		if why = chaosConverged(ctx, cs, deployments, replicas); why == "" {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("not converged after the kills: %s", why)
}

func chaosDeployment(name string, replicas int32, image string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "chaos"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: image,
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("100m"),
					}},
				}}},
			},
		},
	}
}

// chaosConverged returns "" when every Deployment has exactly replicas
// Running pods with the new image from one ReplicaSet, and no other pods
// exist in the namespace.
func chaosConverged(ctx context.Context, cs *kubernetes.Clientset, deployments, replicas int) string {
	pods, err := cs.CoreV1().Pods("chaos").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	rss, err := cs.AppsV1().ReplicaSets("chaos").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	active := map[string]string{} // deployment -> its ReplicaSet with replicas
	rsOwner := map[string]string{}
	for _, rs := range rss.Items {
		owner := metav1.GetControllerOf(&rs)
		if owner == nil {
			return fmt.Sprintf("replicaset %s has no owner", rs.Name)
		}
		rsOwner[string(rs.UID)] = owner.Name
		if *rs.Spec.Replicas == 0 {
			continue
		}
		if prev, dup := active[owner.Name]; dup {
			return fmt.Sprintf("deployment %s has two active replicasets %s and %s", owner.Name, prev, rs.Name)
		}
		if img := rs.Spec.Template.Spec.Containers[0].Image; img != "busybox:2" {
			return fmt.Sprintf("replicaset %s still runs %s", rs.Name, img)
		}
		active[owner.Name] = string(rs.UID)
	}
	if len(active) != deployments {
		return fmt.Sprintf("%d deployments with an active replicaset, want %d", len(active), deployments)
	}
	perDeployment := map[string]int{}
	for _, p := range pods.Items {
		owner := metav1.GetControllerOf(&p)
		if owner == nil {
			return fmt.Sprintf("pod %s has no owner", p.Name)
		}
		d := rsOwner[string(owner.UID)]
		if active[d] != string(owner.UID) {
			return fmt.Sprintf("pod %s belongs to an old replicaset of %q", p.Name, d)
		}
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "" {
			return fmt.Sprintf("pod %s: phase %s, node %q, deleting %v", p.Name, p.Status.Phase, p.Spec.NodeName, p.DeletionTimestamp != nil)
		}
		perDeployment[d]++
	}
	for d := range active {
		if n := perDeployment[d]; n != replicas {
			return fmt.Sprintf("deployment %s has %d pods, want %d", d, n, replicas)
		}
	}
	if len(pods.Items) != deployments*replicas {
		return fmt.Sprintf("%d pods in all, want %d", len(pods.Items), deployments*replicas)
	}
	return ""
}
