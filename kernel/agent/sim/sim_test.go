package sim_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/agent/sim"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// newClient serves a real API server over a real Badger store in-process.
func newClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	_, cfg := apiservertest.Start(t, apiserver.Config{})
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// start runs a simulated cluster until the test ends.
func start(t testing.TB, cs kubernetes.Interface, cfg sim.Config) *sim.Cluster {
	t.Helper()
	c, err := sim.Start(context.Background(), cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// waitFor polls cond until it holds; the deadline only guards against a
// hung test.
func waitFor(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}

func pod(name, node string, policy corev1.RestartPolicy, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: annotations},
		Spec: corev1.PodSpec{
			NodeName:       node,
			RestartPolicy:  policy,
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
			Containers:     []corev1.Container{{Name: "c", Image: "nginx"}, {Name: "d", Image: "redis"}},
		},
	}
}

func getPod(t testing.TB, cs kubernetes.Interface, name string) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitPhase(t testing.TB, cs kubernetes.Interface, name string, phase corev1.PodPhase) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	waitFor(t, fmt.Sprintf("pod %s %s", name, phase), func() (bool, error) {
		var err error
		p, err = cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == phase, err
	})
	return p
}

func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func TestRegistersNodesAndLeases(t *testing.T) {
	cs := newClient(t)
	ctx := context.Background()
	c := start(t, cs, sim.Config{
		Nodes:  3,
		Labels: map[string]string{"tier": "sim"},
		Taints: []corev1.Taint{{Key: "dedicated", Value: "sim", Effect: corev1.TaintEffectNoSchedule}},
		Customize: func(i int, n *corev1.Node) {
			n.Labels["topology.kubernetes.io/zone"] = fmt.Sprintf("zone-%d", i%2)
		},
	})
	if got := c.Names(); len(got) != 3 || got[0] != "sim-0" || got[2] != "sim-2" {
		t.Fatalf("names %v", got)
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes.Items))
	}
	for i, n := range nodes.Items {
		t.Run(n.Name, func(t *testing.T) {
			if n.Labels["tier"] != "sim" || n.Labels[sim.LabelSim] != "true" || n.Labels[corev1.LabelHostname] != n.Name {
				t.Errorf("labels %v", n.Labels)
			}
			if want := fmt.Sprintf("zone-%d", i%2); n.Labels["topology.kubernetes.io/zone"] != want {
				t.Errorf("zone %q, want %q", n.Labels["topology.kubernetes.io/zone"], want)
			}
			if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "dedicated" {
				t.Errorf("taints %v", n.Spec.Taints)
			}
			ready := false
			for _, cond := range n.Status.Conditions {
				ready = ready || (cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue)
			}
			if !ready {
				t.Errorf("not Ready: %v", n.Status.Conditions)
			}
			if q := n.Status.Allocatable[corev1.ResourcePods]; q.Value() != 110 {
				t.Errorf("allocatable pods %v", q.String())
			}
			if q := n.Status.Capacity[corev1.ResourceCPU]; q.Value() != 32 {
				t.Errorf("capacity cpu %v", q.String())
			}
			if len(n.Status.Addresses) == 0 || n.Spec.PodCIDR == "" {
				t.Errorf("addresses %v podCIDR %q", n.Status.Addresses, n.Spec.PodCIDR)
			}
			l, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != n.Name || l.Spec.RenewTime == nil {
				t.Errorf("lease spec %+v", l.Spec)
			}
		})
	}
}

func TestPodLifecycle(t *testing.T) {
	cs := newClient(t)
	ctx := context.Background()
	start(t, cs, sim.Config{Nodes: 2, ExitAfter: 100 * time.Millisecond})

	t.Run("always runs", func(t *testing.T) {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("web", "sim-1", corev1.RestartPolicyAlways, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := waitPhase(t, cs, "web", corev1.PodRunning)
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !netip.MustParsePrefix("10.128.1.0/24").Contains(ip) {
			t.Errorf("pod IP %q, want one in sim-1's 10.128.1.0/24", p.Status.PodIP)
		}
		if p.Status.StartTime == nil || p.Status.HostIP == "" {
			t.Errorf("startTime %v hostIP %q", p.Status.StartTime, p.Status.HostIP)
		}
		for _, ct := range []corev1.PodConditionType{corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			if got := condition(p, ct); got != corev1.ConditionTrue {
				t.Errorf("condition %s = %q", ct, got)
			}
		}
		if len(p.Status.ContainerStatuses) != 2 || p.Status.ContainerStatuses[1].State.Running == nil || !p.Status.ContainerStatuses[1].Ready {
			t.Errorf("container statuses %+v", p.Status.ContainerStatuses)
		}
		if len(p.Status.InitContainerStatuses) != 1 || p.Status.InitContainerStatuses[0].State.Terminated == nil {
			t.Errorf("init container statuses %+v", p.Status.InitContainerStatuses)
		}
	})

	cases := []struct {
		name        string
		policy      corev1.RestartPolicy
		annotations map[string]string
		phase       corev1.PodPhase
		code        int32
	}{
		{"default delay succeeds", corev1.RestartPolicyNever, nil, corev1.PodSucceeded, 0},
		{"annotated delay succeeds", corev1.RestartPolicyOnFailure, map[string]string{sim.AnnotationExitAfter: "50ms"}, corev1.PodSucceeded, 0},
		{"exit code fails", corev1.RestartPolicyNever, map[string]string{sim.AnnotationExitCode: "3"}, corev1.PodFailed, 3},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("job-%d", i)
			if _, err := cs.CoreV1().Pods("default").Create(ctx, pod(name, "sim-0", tc.policy, tc.annotations), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			p := waitPhase(t, cs, name, tc.phase)
			for _, st := range p.Status.ContainerStatuses {
				if st.State.Terminated == nil || st.State.Terminated.ExitCode != tc.code {
					t.Errorf("container %s state %+v, want terminated with %d", st.Name, st.State, tc.code)
				}
			}
			if got := condition(p, corev1.PodReady); got != corev1.ConditionFalse {
				t.Errorf("Ready = %q after exit", got)
			}
		})
	}

	t.Run("onfailure restarts", func(t *testing.T) {
		a := map[string]string{sim.AnnotationExitCode: "1", sim.AnnotationExitAfter: "30ms"}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("crash", "sim-0", corev1.RestartPolicyOnFailure, a), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "restartCount >= 2", func() (bool, error) {
			p := getPod(t, cs, "crash")
			return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].RestartCount >= 2, nil
		})
		p := getPod(t, cs, "crash")
		if p.Status.Phase != corev1.PodRunning {
			t.Errorf("phase %s, want Running while restarting", p.Status.Phase)
		}
		if last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated; last == nil || last.ExitCode != 1 {
			t.Errorf("lastState %+v", p.Status.ContainerStatuses[0].LastTerminationState)
		}
	})

	t.Run("graceful delete finalized", func(t *testing.T) {
		if err := cs.CoreV1().Pods("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pod web gone", func() (bool, error) {
			_, err := cs.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
			return apierrors.IsNotFound(err), err
		})
	})

	t.Run("other nodes ignored", func(t *testing.T) {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("elsewhere", "real-node", corev1.RestartPolicyAlways, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// A pod on a simulated node created after it is handled first
		// (the queue is FIFO per worker pool), so once it runs the
		// other has been seen.
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("marker", "sim-1", corev1.RestartPolicyAlways, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPhase(t, cs, "marker", corev1.PodRunning)
		if p := getPod(t, cs, "elsewhere"); p.Status.Phase != corev1.PodPending {
			t.Errorf("pod on a foreign node is %s", p.Status.Phase)
		}
	})
}

func TestStoppedNode(t *testing.T) {
	cs := newClient(t)
	ctx := context.Background()
	c := start(t, cs, sim.Config{Nodes: 2, RenewInterval: 100 * time.Millisecond})
	leaseTime := func(name string) time.Time {
		l, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Spec.RenewTime.Time
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, "sim-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Annotations = map[string]string{sim.AnnotationStopped: "true"}
	if _, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Once sim-1's lease has been renewed twice after the stop, sim-0's
	// would have been too had it not stopped.
	frozen := leaseTime("sim-0")
	for range 2 {
		before := leaseTime("sim-1")
		waitFor(t, "sim-1 renewal", func() (bool, error) { return leaseTime("sim-1").After(before), nil })
	}
	// The renewal in flight when the annotation arrived may land.
	frozen2 := leaseTime("sim-0")
	before := leaseTime("sim-1")
	waitFor(t, "sim-1 renewal", func() (bool, error) { return leaseTime("sim-1").After(before), nil })
	if got := leaseTime("sim-0"); !got.Equal(frozen2) {
		t.Fatalf("stopped node's lease renewed: %v -> %v (at stop %v)", frozen2, got, frozen)
	}

	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("held", "sim-0", corev1.RestartPolicyAlways, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("marker", "sim-1", corev1.RestartPolicyAlways, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, cs, "marker", corev1.PodRunning)
	if p := getPod(t, cs, "held"); p.Status.Phase != corev1.PodPending {
		t.Fatalf("pod on a stopped node is %s", p.Status.Phase)
	}

	// The Go API resumes it as well as removing the annotation would.
	if err := c.SetStopped("sim-0", false); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, cs, "held", corev1.PodRunning)
	waitFor(t, "sim-0 renewal", func() (bool, error) { return leaseTime("sim-0").After(frozen2), nil })
	if err := c.SetStopped("nope", true); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("SetStopped(unknown) = %v, want ErrNotFound", err)
	}
}

func TestRestartKeepsState(t *testing.T) {
	cs := newClient(t)
	ctx := context.Background()
	c, err := sim.Start(ctx, cs, sim.Config{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("web", "sim-1", corev1.RestartPolicyAlways, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first := waitPhase(t, cs, "web", corev1.PodRunning)
	c.Stop()

	start(t, cs, sim.Config{Nodes: 2})
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 2 {
		t.Fatalf("%d nodes after restart, want 2", len(nodes.Items))
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("second", "sim-1", corev1.RestartPolicyAlways, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	second := waitPhase(t, cs, "second", corev1.PodRunning)
	if second.Status.PodIP == first.Status.PodIP {
		t.Errorf("restarted simulator reused pod IP %s", first.Status.PodIP)
	}
	if got := getPod(t, cs, "web"); got.Status.PodIP != first.Status.PodIP || got.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("running pod changed across restart: %+v", got.Status)
	}
}

func TestConfigValidation(t *testing.T) {
	cs := newClient(t)
	for _, tc := range []struct {
		name string
		cfg  sim.Config
	}{
		{"negative nodes", sim.Config{Nodes: -1}},
		{"bad name", sim.Config{Names: []string{"Not_A_Name"}}},
		{"duplicate name", sim.Config{Names: []string{"a", "a"}}},
		{"too many", sim.Config{Nodes: 1 << 16}},
		{"short lease", sim.Config{Nodes: 1, LeaseDuration: time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sim.Start(context.Background(), cs, tc.cfg); !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("Start = %v, want ErrInvalid", err)
			}
		})
	}
}
