package containerd_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/agent"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/containerd/containerdtest"
)

// TestAgentRunsPods runs the node agent on the containerd runtime against
// an in-process API server: the same path `tugboat server --runtime
// containerd` takes.
func TestAgentRunsPods(t *testing.T) {
	e := newEnv(t)
	_, cfg := apiservertest.Start(t, apiserver.Config{})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rt := e.fresh(t, nil)
	ag, err := agent.Start(context.Background(), cs, agent.Config{NodeName: "node-c", Runtime: rt, Dir: t.TempDir(), RenewInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ag.Stop) // before the runtime's cleanup removes the containers

	pod := func(name string, policy corev1.RestartPolicy, image string, script string) {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.PodSpec{NodeName: "node-c", RestartPolicy: policy, Containers: []corev1.Container{
				{Name: "main", Image: image, Command: []string{"sh", "-c", script}},
				{Name: "side", Image: image, Command: []string{"sleep", "60"}},
			}},
		}
		if policy != corev1.RestartPolicyAlways {
			p.Spec.Containers = p.Spec.Containers[:1]
		}
		if _, err := cs.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitPod := func(name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
			if err == nil && cond(p) {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod %s never %s: %+v", name, what, p.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The pod's second container sees the first one's processes (one PID
	// namespace per pod).
	pod("web", corev1.RestartPolicyAlways, containerdtest.BusyboxRef, "echo serving; exec sleep 60")
	pod("job", corev1.RestartPolicyNever, containerdtest.BusyboxRef, "echo done; exit 0")
	pod("noimage", corev1.RestartPolicyNever, "127.0.0.1:1/none:v1", "true")

	web := waitPod("web", "Running with both containers", func(p *corev1.Pod) bool {
		n := 0
		for _, s := range p.Status.ContainerStatuses {
			if s.State.Running != nil {
				n++
			}
		}
		return p.Status.Phase == corev1.PodRunning && n == 2
	})
	for _, s := range web.Status.ContainerStatuses {
		if !strings.HasPrefix(s.ContainerID, "containerd://") {
			t.Errorf("container ID %q, want containerd://...", s.ContainerID)
		}
		if s.Name == "main" {
			b, _ := os.ReadFile(rt.LogPath(strings.TrimPrefix(s.ContainerID, "containerd://")))
			if !strings.Contains(string(b), "stdout F serving") {
				t.Errorf("log of web/main:\n%s", b)
			}
		}
	}
	waitPod("job", "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	np := waitPod("noimage", "waiting on its image", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			strings.Contains(p.Status.ContainerStatuses[0].State.Waiting.Message, "ErrImagePull")
	})
	t.Logf("missing image: %+v", np.Status.ContainerStatuses[0].State.Waiting)

	// Deleting the pod stops and removes its containers and sandbox.
	if err := cs.CoreV1().Pods("default").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		list, _ := rt.List()
		left := 0
		for _, s := range list {
			if s.Labels["pod-name"] == "web" {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d containers of the deleted pod are left", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
