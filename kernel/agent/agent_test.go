package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/kernel/agent"
	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/apiserver/apiservertest"
	"github.com/tugboat-dev/tugboat/kernel/dataplane/exec"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

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

// node is a running agent on an exec runtime in dir.
type node struct {
	agent *agent.Agent
	rt    *exec.Runtime
	dir   string
}

func startNode(t testing.TB, cs kubernetes.Interface, dir string, cfg agent.Config) (*node, error) {
	t.Helper()
	rt, err := exec.New(exec.Options{Dir: filepath.Join(dir, "containers")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName == "" {
		cfg.NodeName = "node-a"
	}
	cfg.Runtime, cfg.Dir = rt, dir
	if cfg.RenewInterval == 0 {
		cfg.RenewInterval = 200 * time.Millisecond
	}
	a, err := agent.Start(context.Background(), cs, cfg)
	if err != nil {
		rt.Close()
		return nil, err
	}
	return &node{agent: a, rt: rt, dir: dir}, nil
}

func (n *node) stop() {
	n.agent.Stop()
	n.rt.Close()
}

// killAll ends every container the runtime knows (test cleanup: no
// processes are left behind).
func (n *node) killAll(t testing.TB) {
	t.Helper()
	rt, err := exec.New(exec.Options{Dir: filepath.Join(n.dir, "containers")})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	list, _ := rt.List()
	for _, st := range list {
		rt.Remove(context.Background(), st.ID)
	}
}

// runNode starts an agent that is stopped, and its containers killed, when
// the test ends.
func runNode(t testing.TB, cs kubernetes.Interface, cfg agent.Config) *node {
	t.Helper()
	n, err := startNode(t, cs, t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.stop()
		n.killAll(t)
	})
	return n
}

func waitFor(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}

func shPod(name, script string, policy corev1.RestartPolicy) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:      "node-a",
			RestartPolicy: policy,
			Containers:    []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"/bin/sh", "-c", script}}},
		},
	}
}

func create(t testing.TB, cs kubernetes.Interface, p *corev1.Pod) {
	t.Helper()
	if _, err := cs.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func get(t testing.TB, cs kubernetes.Interface, name string) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitPod(t testing.TB, cs kubernetes.Interface, name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	waitFor(t, "pod "+name+" "+what, func() (bool, error) {
		var err error
		p, err = cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		return err == nil && cond(p), err
	})
	return p
}

func phase(ph corev1.PodPhase) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool { return p.Status.Phase == ph }
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// logOf returns the CRI log of a container's current attempt.
func logOf(t testing.TB, n *node, p *corev1.Pod, container string) string {
	t.Helper()
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if s.Name == container && s.ContainerID != "" {
			b, err := os.ReadFile(n.rt.LogPath(strings.TrimPrefix(s.ContainerID, "exec://")))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatalf("container %s has no ID yet", container)
	return ""
}

func TestRegistration(t *testing.T) {
	cs := newClient(t)
	ctx := context.Background()
	runNode(t, cs, agent.Config{
		Labels: map[string]string{"disktype": "ssd"},
		Taints: []corev1.Taint{{Key: "dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule}},
	})
	n, err := cs.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels["disktype"] != "ssd" || n.Labels[corev1.LabelHostname] != "node-a" || len(n.Spec.Taints) != 1 {
		t.Errorf("labels %v taints %v", n.Labels, n.Spec.Taints)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage} {
		if q, ok := n.Status.Allocatable[r]; !ok || q.IsZero() {
			t.Errorf("allocatable %s = %v", r, q.String())
		}
	}
	if n.Status.NodeInfo.ContainerRuntimeVersion == "" || len(n.Status.Addresses) == 0 {
		t.Errorf("nodeInfo %+v addresses %v", n.Status.NodeInfo, n.Status.Addresses)
	}
	l, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := l.Spec.RenewTime.Time
	waitFor(t, "lease renewal", func() (bool, error) {
		l, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "node-a", metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime.After(first), err
	})

	// Another agent (another identity: another directory) cannot take
	// the name while the lease is fresh.
	if _, err := startNode(t, cs, t.TempDir(), agent.Config{}); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("second agent with the same node name: %v, want ErrConflict", err)
	}
	if _, err := startNode(t, cs, t.TempDir(), agent.Config{NodeName: "Bad_Name"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("bad node name: %v, want ErrInvalid", err)
	}
}

func TestPodLifecycle(t *testing.T) {
	cs := newClient(t)
	ctx := context.Background()
	n := runNode(t, cs, agent.Config{})

	t.Run("long running", func(t *testing.T) {
		create(t, cs, shPod("web", "echo hello; exec sleep 60", corev1.RestartPolicyAlways))
		p := waitPod(t, cs, "web", "ready", ready)
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || p.Status.StartTime == nil {
			t.Errorf("status %+v", p.Status)
		}
		s := p.Status.ContainerStatuses[0]
		if s.State.Running == nil || !s.Ready || s.Started == nil || !*s.Started || s.RestartCount != 0 {
			t.Errorf("container status %+v", s)
		}
		waitFor(t, "log line", func() (bool, error) { return strings.Contains(logOf(t, n, p, "main"), "stdout F hello"), nil })
	})

	for _, tc := range []struct {
		name   string
		script string
		phase  corev1.PodPhase
		code   int32
	}{
		{"succeeds", "exit 0", corev1.PodSucceeded, 0},
		{"fails", "exit 3", corev1.PodFailed, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			create(t, cs, shPod("job-"+tc.name, tc.script, corev1.RestartPolicyNever))
			p := waitPod(t, cs, "job-"+tc.name, string(tc.phase), phase(tc.phase))
			term := p.Status.ContainerStatuses[0].State.Terminated
			if term == nil || term.ExitCode != tc.code {
				t.Errorf("state %+v, want terminated %d", p.Status.ContainerStatuses[0].State, tc.code)
			}
			if ready(p) {
				t.Errorf("terminated pod is Ready")
			}
		})
	}

	t.Run("onfailure restarts until success", func(t *testing.T) {
		// Fails on the first run, succeeds on the second (the working
		// dir survives restarts since it is the pod's).
		p := shPod("retry", `if [ -f done ]; then exit 0; fi; touch done; exit 1`, corev1.RestartPolicyOnFailure)
		p.Spec.Containers[0].WorkingDir = t.TempDir()
		create(t, cs, p)
		p = waitPod(t, cs, "retry", "Succeeded", phase(corev1.PodSucceeded))
		s := p.Status.ContainerStatuses[0]
		if s.RestartCount != 1 || s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ExitCode != 1 {
			t.Errorf("status %+v, want one restart after exit 1", s)
		}
	})

	t.Run("crash loop", func(t *testing.T) {
		create(t, cs, shPod("crash", "echo boom; exit 2", corev1.RestartPolicyAlways))
		p := waitPod(t, cs, "crash", "in CrashLoopBackOff", func(p *corev1.Pod) bool {
			s := p.Status.ContainerStatuses
			return len(s) == 1 && s[0].State.Waiting != nil && s[0].State.Waiting.Reason == "CrashLoopBackOff"
		})
		s := p.Status.ContainerStatuses[0]
		if s.RestartCount < 1 || s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ExitCode != 2 {
			t.Errorf("status %+v", s)
		}
		if p.Status.Phase != corev1.PodRunning || ready(p) {
			t.Errorf("phase %s ready %v, want Running and not ready", p.Status.Phase, ready(p))
		}
		waitFor(t, "Started and BackOff events", func() (bool, error) {
			evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			seen := map[string]bool{}
			for _, e := range evs.Items {
				if e.InvolvedObject.Name == "crash" && e.Source.Host == "node-a" {
					seen[e.Reason] = true
				}
			}
			return seen["Started"] && seen["BackOff"], fmt.Errorf("events %v", seen)
		})
	})

	t.Run("graceful delete", func(t *testing.T) {
		dir := t.TempDir()
		p := shPod("graceful", `trap 'echo term > got-term; exit 0' TERM; touch trapped; while :; do sleep 0.1; done`, corev1.RestartPolicyAlways)
		p.Spec.Containers[0].WorkingDir = dir
		create(t, cs, p)
		p = waitPod(t, cs, "graceful", "running", ready)
		waitFor(t, "the trap is set", func() (bool, error) {
			_, err := os.Stat(filepath.Join(dir, "trapped"))
			return err == nil, err
		})
		if err := cs.CoreV1().Pods("default").Delete(ctx, "graceful", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pod gone", func() (bool, error) {
			_, err := cs.CoreV1().Pods("default").Get(ctx, "graceful", metav1.GetOptions{})
			return apierrors.IsNotFound(err), err
		})
		if _, err := os.Stat(filepath.Join(dir, "got-term")); err != nil {
			t.Errorf("container did not get SIGTERM before removal: %v", err)
		}
		if pid := pidOf(t, n, p); pid > 0 && alive(pid) {
			t.Errorf("process %d alive after the pod was deleted", pid)
		}
	})
}

func pidOf(t testing.TB, n *node, p *corev1.Pod) int {
	t.Helper()
	list, err := n.rt.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range list {
		if st.Labels["pod-uid"] == string(p.UID) {
			return st.Pid
		}
	}
	return 0
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func TestEnvVolumesInit(t *testing.T) {
	cs := newClient(t)
	ctx := context.Background()
	n := runNode(t, cs, agent.Config{})
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"color": "blue", "app.conf": "x=1\n"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"password": []byte("s3cret")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	work := t.TempDir()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "env", Namespace: "default", Labels: map[string]string{"app": "demo"}},
		Spec: corev1.PodSpec{
			NodeName:      "node-a",
			RestartPolicy: corev1.RestartPolicyNever,
			Volumes: []corev1.Volume{
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
				{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}},
			},
			InitContainers: []corev1.Container{
				{Name: "one", Image: "busybox", Command: []string{"/bin/sh", "-c", "echo one >> " + mnt + "/scratch/order"},
					VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: mnt + "/scratch"}}},
				{Name: "two", Image: "busybox", Command: []string{"/bin/sh", "-c", "echo two >> " + mnt + "/scratch/order"},
					VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: mnt + "/scratch"}}},
			},
			Containers: []corev1.Container{{
				Name: "main", Image: "busybox", WorkingDir: work,
				Command: []string{"/bin/sh", "-c"},
				Args: []string{`echo "name=$POD_NAME ns=$POD_NS app=$APP color=$COLOR pw=$PW greet=$GREETING literal=$LITERAL"; ` +
					`echo "arg=$(COLOR)"; pwd; cat ` + mnt + `/scratch/order ` + mnt + `/conf/app.conf ` + mnt + `/secret/password; echo`},
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "POD_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
					{Name: "COLOR", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "color"}}},
					{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "password"}}},
					{Name: "GREETING", Value: "hi-$(POD_NAME)"},
					{Name: "LITERAL", Value: "$$(POD_NAME)"},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "scratch", MountPath: mnt + "/scratch"},
					{Name: "conf", MountPath: mnt + "/conf"},
					{Name: "secret", MountPath: mnt + "/secret", ReadOnly: true},
				},
			}},
		},
	}
	create(t, cs, p)
	p = waitPod(t, cs, "env", "Succeeded", phase(corev1.PodSucceeded))
	logs := logOf(t, n, p, "main")
	for _, want := range []string{
		"name=env ns=default app=demo color=blue pw=s3cret greet=hi-env literal=$(POD_NAME)",
		"arg=blue",
		"stdout F " + work,
		"stdout F one", "stdout F two", "stdout F x=1", "stdout F s3cret",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for _, s := range p.Status.InitContainerStatuses {
		if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			t.Errorf("init container %s: %+v", s.Name, s.State)
		}
	}

	t.Run("missing configmap key", func(t *testing.T) {
		bad := shPod("badref", "exit 0", corev1.RestartPolicyNever)
		bad.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "nope"}}}}
		create(t, cs, bad)
		waitPod(t, cs, "badref", "CreateContainerConfigError", func(p *corev1.Pod) bool {
			s := p.Status.ContainerStatuses
			return len(s) == 1 && s[0].State.Waiting != nil && s[0].State.Waiting.Reason == "CreateContainerConfigError" &&
				strings.Contains(s[0].State.Waiting.Message, "nope")
		})
	})
}

func TestProbes(t *testing.T) {
	cs := newClient(t)
	runNode(t, cs, agent.Config{})

	t.Run("readiness", func(t *testing.T) {
		work := t.TempDir()
		p := shPod("ready", "exec sleep 60", corev1.RestartPolicyAlways)
		p.Spec.Containers[0].WorkingDir = work
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "ready-now"}}},
			PeriodSeconds: 1, FailureThreshold: 1,
		}
		create(t, cs, p)
		p = waitPod(t, cs, "ready", "running", phase(corev1.PodRunning))
		if ready(p) {
			t.Fatalf("ready before the readiness probe passed")
		}
		if err := os.WriteFile(filepath.Join(work, "ready-now"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		waitPod(t, cs, "ready", "ready", ready)
		os.Remove(filepath.Join(work, "ready-now"))
		waitPod(t, cs, "ready", "unready again", func(p *corev1.Pod) bool { return !ready(p) })
	})

	t.Run("liveness restarts", func(t *testing.T) {
		p := shPod("live", "exec sleep 60", corev1.RestartPolicyAlways)
		p.Spec.Containers[0].LivenessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}},
			PeriodSeconds: 1, FailureThreshold: 2,
		}
		grace := int64(1)
		p.Spec.TerminationGracePeriodSeconds = &grace
		create(t, cs, p)
		p = waitPod(t, cs, "live", "restarted", func(p *corev1.Pod) bool {
			s := p.Status.ContainerStatuses
			return len(s) == 1 && s[0].RestartCount >= 1
		})
		if last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated; last == nil || last.ExitCode != 143 {
			t.Errorf("last state %+v, want terminated by SIGTERM (143)", p.Status.ContainerStatuses[0].LastTerminationState)
		}
	})

	t.Run("http and tcp", func(t *testing.T) {
		port := freePort(t)
		p := shPod("http", fmt.Sprintf("exec python3 -m http.server %d --bind 127.0.0.1", port), corev1.RestartPolicyAlways)
		p.Spec.Containers[0].WorkingDir = t.TempDir()
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "web", ContainerPort: int32(port)}}
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "127.0.0.1", Path: "/", Port: intOrName("web")}},
			PeriodSeconds: 1,
		}
		p.Spec.Containers[0].LivenessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Host: "127.0.0.1", Port: intOrName("web")}},
			PeriodSeconds: 1, InitialDelaySeconds: 1,
		}
		create(t, cs, p)
		waitPod(t, cs, "http", "ready", ready)
		if s := get(t, cs, "http").Status.ContainerStatuses[0]; s.RestartCount != 0 {
			t.Errorf("restarted %d times with a passing liveness probe", s.RestartCount)
		}
	})
}

func TestRestartRecovery(t *testing.T) {
	cs := newClient(t)
	ctx := context.Background()
	dir := t.TempDir()
	n, err := startNode(t, cs, dir, agent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.killAll(t) })
	create(t, cs, shPod("keep", "exec sleep 60", corev1.RestartPolicyAlways))
	create(t, cs, shPod("drop", "exec sleep 60", corev1.RestartPolicyAlways))
	keep := waitPod(t, cs, "keep", "ready", ready)
	drop := waitPod(t, cs, "drop", "ready", ready)
	keepPid, dropPid := pidOf(t, n, keep), pidOf(t, n, drop)
	n.stop()

	// While the agent is down, "drop" is deleted for good.
	zero := int64(0)
	if err := cs.CoreV1().Pods("default").Delete(ctx, "drop", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	n2, err := startNode(t, cs, dir, agent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n2.stop)
	waitFor(t, "deleted pod's process gone", func() (bool, error) { return !alive(dropPid), nil })
	create(t, cs, shPod("marker", "exec sleep 60", corev1.RestartPolicyAlways))
	waitPod(t, cs, "marker", "ready", ready)
	got := get(t, cs, "keep")
	if pid := pidOf(t, n2, got); pid != keepPid || !alive(keepPid) {
		t.Errorf("kept pod's process %d -> %d (alive %v), want the same process adopted", keepPid, pid, alive(keepPid))
	}
	if s := got.Status.ContainerStatuses[0]; s.RestartCount != 0 || !ready(got) {
		t.Errorf("kept pod after agent restart: restarts %d ready %v", s.RestartCount, ready(got))
	}
	list, _ := n2.rt.List()
	if len(list) != 2 {
		t.Errorf("%d containers after restart, want 2 (keep, marker): %+v", len(list), list)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func intOrName(s string) intstr.IntOrString { return intstr.FromString(s) }

func TestStatsSummary(t *testing.T) {
	cs := newClient(t)
	n := runNode(t, cs, agent.Config{})
	create(t, cs, shPod("busy", "while :; do :; done", corev1.RestartPolicyAlways))
	waitPod(t, cs, "busy", "ready", ready)
	type usage struct {
		Pods []struct {
			PodRef struct{ Name string } `json:"podRef"`
			CPU    struct {
				UsageNanoCores       uint64 `json:"usageNanoCores"`
				UsageCoreNanoSeconds uint64 `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
			Memory struct {
				WorkingSetBytes uint64 `json:"workingSetBytes"`
			} `json:"memory"`
			Containers []struct{ Name string } `json:"containers"`
		} `json:"pods"`
	}
	waitFor(t, "cpu and memory of pod busy", func() (bool, error) {
		rec := httptest.NewRecorder()
		n.agent.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats/summary", nil))
		if rec.Code != http.StatusOK {
			return false, fmt.Errorf("%d %s", rec.Code, rec.Body)
		}
		var u usage
		if err := json.Unmarshal(rec.Body.Bytes(), &u); err != nil {
			return false, err
		}
		for _, p := range u.Pods {
			if p.PodRef.Name == "busy" && p.CPU.UsageCoreNanoSeconds > 0 && p.CPU.UsageNanoCores > 0 &&
				p.Memory.WorkingSetBytes > 0 && len(p.Containers) == 1 && p.Containers[0].Name == "main" {
				return true, nil
			}
		}
		return false, fmt.Errorf("summary %s", rec.Body)
	})
}
