package apiserver_test

import (
	"context"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/loopback"
)

// clientsAs serves one API server and returns clients acting as each
// user.
func clientsAs(t testing.TB, users ...apiserver.User) []kubernetes.Interface {
	t.Helper()
	api, _ := apiservertest.Start(t, apiserver.Config{})
	var out []kubernetes.Interface
	for _, u := range users {
		cs, err := kubernetes.NewForConfig(loopback.Config(api.Handler(), u))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cs)
	}
	return out
}

func TestNodeAuthorization(t *testing.T) {
	ctx := context.Background()
	cs := clientsAs(t,
		apiserver.User{Name: "system:admin", Groups: []string{"system:masters"}},
		apiserver.User{Name: "system:node:a", Groups: []string{"system:nodes"}},
		// Not in system:nodes: not restricted as a node.
		apiserver.User{Name: "system:node:b", Groups: []string{"system:authenticated"}},
	)
	admin, nodeA, notNode := cs[0], cs[1], cs[2]
	for _, name := range []string{"b"} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "mine"}, Spec: corev1.PodSpec{NodeName: "a", Containers: []corev1.Container{{Name: "c", Image: "i"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, Spec: corev1.PodSpec{NodeName: "b", Containers: []corev1.Container{{Name: "c", Image: "i"}}}},
	} {
		if _, err := admin.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lease := func(name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease}}
	}
	statusUpdate := func(c kubernetes.Interface, name string) error {
		p, err := admin.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Status.Message = "seen"
		_, err = c.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	}
	for _, tc := range []struct {
		name    string
		do      func() error
		allowed bool
	}{
		{"create own node", func() error {
			_, err := nodeA.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{})
			return err
		}, true},
		{"create another node", func() error {
			_, err := nodeA.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, metav1.CreateOptions{})
			return err
		}, false},
		{"update own node status", func() error {
			n, err := nodeA.CoreV1().Nodes().Get(ctx, "a", metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = nodeA.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
			return err
		}, true},
		{"update another node", func() error {
			n, err := nodeA.CoreV1().Nodes().Get(ctx, "b", metav1.GetOptions{})
			if err != nil {
				return err
			}
			n.Labels = map[string]string{"x": "y"}
			_, err = nodeA.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			return err
		}, false},
		{"delete a node", func() error { return nodeA.CoreV1().Nodes().Delete(ctx, "a", metav1.DeleteOptions{}) }, false},
		{"create own lease", func() error {
			_, err := nodeA.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, lease("a"), metav1.CreateOptions{})
			return err
		}, true},
		{"create another lease", func() error {
			_, err := nodeA.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, lease("b"), metav1.CreateOptions{})
			return err
		}, false},
		{"status of own pod", func() error { return statusUpdate(nodeA, "mine") }, true},
		{"status of another node's pod", func() error { return statusUpdate(nodeA, "theirs") }, false},
		{"update a pod spec", func() error {
			p, err := nodeA.CoreV1().Pods("default").Get(ctx, "mine", metav1.GetOptions{})
			if err != nil {
				return err
			}
			p.Labels = map[string]string{"x": "y"}
			_, err = nodeA.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{})
			return err
		}, false},
		{"create a pod", func() error {
			_, err := nodeA.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}, metav1.CreateOptions{})
			return err
		}, false},
		{"write a configmap", func() error {
			_, err := nodeA.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}, false},
		{"read pods", func() error { _, err := nodeA.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err }, true},
		{"delete another node's pod", func() error {
			return nodeA.CoreV1().Pods("default").Delete(ctx, "theirs", metav1.DeleteOptions{})
		}, false},
		{"delete own pod", func() error { return nodeA.CoreV1().Pods("default").Delete(ctx, "mine", metav1.DeleteOptions{}) }, true},
		{"non-node user with a node-like name", func() error {
			_, err := notNode.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "y"}}, metav1.CreateOptions{})
			return err
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			switch {
			case tc.allowed && err != nil:
				t.Errorf("got %v, want allowed", err)
			case !tc.allowed && !apierrors.IsForbidden(err):
				t.Errorf("got %v, want Forbidden", err)
			}
		})
	}
}
