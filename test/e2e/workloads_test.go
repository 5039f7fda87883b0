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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/internal/testenv"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

// startWorkloads starts a server with the built-in controllers, the
// scheduler and the workload controllers named (loaded through the
// controllers.plugins config key, so the test does not depend on them
// being built-ins yet).
func startWorkloads(t *testing.T, controllers []string, args ...string) (*testenv.Server, kubectl, *kubernetes.Clientset) {
	t.Helper()
	var cfg strings.Builder
	cfg.WriteString("controllers:\n  plugins:\n")
	for _, name := range controllers {
		wasm := plugintest.BuildWasm(t, filepath.Join("..", "..", "plugins", "controllers", name))
		fmt.Fprintf(&cfg, "    - name: %s\n      path: %s\n", name, wasm)
	}
	config := filepath.Join(t.TempDir(), "tugboat.yaml")
	if err := os.WriteFile(config, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := controllerPlugins(t, allControllers...)
	s := testenv.StartServer(t, append([]string{"--controllers-plugins-dir", dir, "--config", config,
		"--scheduler-plugins-dir", schedulerPlugins(t), "--disable-agent"}, args...)...)
	return s, newKubectl(t, s), clientset(t, s)
}

// daemonPods returns the nodes of the live, Running pods labelled
// app=<app>, sorted, and the number of pods in total.
func daemonPods(t testing.TB, cs *kubernetes.Clientset, app string) (running []string, total int) {
	t.Helper()
	l, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		total++
		if p.Status.Phase == corev1.PodRunning {
			running = append(running, p.Spec.NodeName)
		}
	}
	slices.Sort(running)
	return running, total
}

// TestWorkloadsDaemonSet: a DaemonSet with a nodeSelector runs one pod on
// each matching sim node (bound by the scheduler through the pods' node
// affinity), follows node relabelling both ways, places a pod on a
// cordoned node (daemon pods tolerate node.kubernetes.io/unschedulable),
// and rolls out a template change. On failure it logs the DaemonSet, pods
// and nodes.
func TestWorkloadsDaemonSet(t *testing.T) {
	skipShort(t)
	_, k, cs := startWorkloads(t, []string{"daemonset"}, "--sim-nodes", "3")
	ctx := context.Background()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("state:\n%s", k.run(t, "get", "daemonsets,pods,nodes", "-o", "yaml"))
		}
	})
	k.run(t, "label", "node", "sim-0", "sim-1", "disk=ssd")
	k.run(t, "label", "node", "sim-2", "disk=hdd")
	k.apply(t, `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ssd-monitor}
spec:
  selector: {matchLabels: {app: ssd-monitor}}
  template:
    metadata: {labels: {app: ssd-monitor}}
    spec:
      nodeSelector: {disk: ssd}
      containers: [{name: main, image: luksa/ssd-monitor}]
`)
	on := func(want ...string) func() string {
		return func() string {
			running, total := daemonPods(t, cs, "ssd-monitor")
			if !slices.Equal(running, want) || total != len(want) {
				return fmt.Sprintf("%d pods, Running on %v; want on %v", total, running, want)
			}
			ds, err := cs.AppsV1().DaemonSets("default").Get(ctx, "ssd-monitor", metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			st := ds.Status
			n := int32(len(want))
			if st.DesiredNumberScheduled != n || st.CurrentNumberScheduled != n || st.NumberReady != n ||
				st.NumberAvailable != n || st.UpdatedNumberScheduled != n || st.ObservedGeneration != ds.Generation {
				return fmt.Sprintf("status %+v (generation %d), want %d everywhere", st, ds.Generation, n)
			}
			return ""
		}
	}
	eventually(t, "pods on the ssd nodes", on("sim-0", "sim-1"))
	k.run(t, "rollout", "status", "daemonset/ssd-monitor", "--timeout=60s")

	k.run(t, "label", "node", "sim-0", "disk=hdd", "--overwrite")
	eventually(t, "sim-0 relabelled ssd -> hdd loses its pod", on("sim-1"))
	k.run(t, "label", "node", "sim-2", "disk=ssd", "--overwrite")
	eventually(t, "sim-2 relabelled hdd -> ssd gets a pod", on("sim-1", "sim-2"))

	k.run(t, "cordon", "sim-0")
	k.run(t, "label", "node", "sim-0", "disk=ssd", "--overwrite")
	eventually(t, "a pod on the cordoned sim-0 too", on("sim-0", "sim-1", "sim-2"))
	k.run(t, "uncordon", "sim-0")

	k.run(t, "set", "image", "daemonset/ssd-monitor", "main=luksa/ssd-monitor:v2")
	k.run(t, "rollout", "status", "daemonset/ssd-monitor", "--timeout=60s")
	eventually(t, "rolled out", func() string {
		if why := on("sim-0", "sim-1", "sim-2")(); why != "" {
			return why
		}
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=ssd-monitor"})
		if err != nil {
			return err.Error()
		}
		for _, p := range l.Items {
			if p.Spec.Containers[0].Image != "luksa/ssd-monitor:v2" {
				return fmt.Sprintf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
			}
		}
		return ""
	})
}

// waitFor polls cond until it returns "" or timeout passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		if why = cond(); why == "" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not reached after %v: %s", what, timeout, why)
}

// TestWorkloadsCronJob runs a CronJob every minute on sim nodes (the real
// clock: it waits for the next minute boundary, up to ~65 s): a Job named
// after its scheduled minute is created, its pod runs and succeeds, and the
// CronJob's status records the schedule and the success.
func TestWorkloadsCronJob(t *testing.T) {
	skipShort(t)
	_, k, cs := startWorkloads(t, []string{"cronjob"}, "--sim-nodes", "2", "--sim-exit-after", "200ms")
	ctx := context.Background()
	k.apply(t, `
apiVersion: batch/v1
kind: CronJob
metadata: {name: every-minute}
spec:
  schedule: "* * * * *"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 1
  jobTemplate:
    metadata: {labels: {app: every-minute}}
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: main, image: busybox}]
`)
	cj, err := cs.BatchV1().CronJobs("default").Get(ctx, "every-minute", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a job of the cronjob succeeds", 90*time.Second, func() string {
		l, err := cs.BatchV1().Jobs("default").List(ctx, metav1.ListOptions{LabelSelector: "app=every-minute"})
		if err != nil {
			return err.Error()
		}
		cur, err := cs.BatchV1().CronJobs("default").Get(ctx, "every-minute", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		st := cur.Status
		for _, j := range l.Items {
			ref := metav1.GetControllerOf(&j)
			if ref == nil || ref.UID != cj.UID {
				return fmt.Sprintf("job %s not controlled by the cronjob: %+v", j.Name, ref)
			}
			sched, err := time.Parse(time.RFC3339, j.Annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"])
			if err != nil || j.Name != fmt.Sprintf("every-minute-%d", sched.Unix()/60) || sched.Second() != 0 {
				return fmt.Sprintf("job %s scheduled at %q", j.Name, j.Annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"])
			}
			if j.Status.Succeeded == 1 && st.LastScheduleTime != nil && st.LastSuccessfulTime != nil &&
				st.LastScheduleTime.Time.Equal(sched) {
				return ""
			}
		}
		return fmt.Sprintf("%d jobs, cronjob status %+v", len(l.Items), st)
	})
}

// podEvents records the names of pods labelled app=<app> as they are
// added and deleted, in order, until the test ends.
type podEvents struct {
	mu             sync.Mutex
	added, deleted []string
}

func watchPods(t testing.TB, cs *kubernetes.Clientset, app string) *podEvents {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	ev := &podEvents{}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	go func() {
		defer close(done)
		for e := range w.ResultChan() {
			p, ok := e.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			ev.mu.Lock()
			switch e.Type {
			case watch.Added:
				ev.added = append(ev.added, p.Name)
			case watch.Deleted:
				ev.deleted = append(ev.deleted, p.Name)
			}
			ev.mu.Unlock()
		}
	}()
	return ev
}

func (e *podEvents) get() (added, deleted []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.added), slices.Clone(e.deleted)
}

// TestWorkloadsStatefulSet: an OrderedReady StatefulSet on sim nodes
// creates web-0, web-1, web-2 in order with stable hostnames, scales down
// from the highest ordinal, and rolls out a template change.
func TestWorkloadsStatefulSet(t *testing.T) {
	skipShort(t)
	_, k, cs := startWorkloads(t, []string{"statefulset"}, "--sim-nodes", "2")
	ctx := context.Background()
	events := watchPods(t, cs, "web")
	k.apply(t, `
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec: {clusterIP: None, selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 3
  serviceName: nginx
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: nginx, image: nginx:1.27}]}
`)
	settledSet := func(n int, image string) func() string {
		return func() string {
			s, err := cs.AppsV1().StatefulSets("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err.Error()
			}
			var names []string
			for _, p := range l.Items {
				if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || p.Spec.Containers[0].Image != image {
					return fmt.Sprintf("pod %s phase %s image %s", p.Name, p.Status.Phase, p.Spec.Containers[0].Image)
				}
				if p.Spec.Hostname != p.Name || p.Spec.Subdomain != "nginx" {
					return fmt.Sprintf("pod %s hostname %q subdomain %q", p.Name, p.Spec.Hostname, p.Spec.Subdomain)
				}
				names = append(names, p.Name)
			}
			slices.Sort(names)
			var want []string
			for i := range n {
				want = append(want, fmt.Sprintf("web-%d", i))
			}
			st := s.Status
			if !slices.Equal(names, want) || st.Replicas != int32(n) || st.ReadyReplicas != int32(n) || st.UpdatedReplicas != int32(n) ||
				st.CurrentRevision != st.UpdateRevision || st.ObservedGeneration != s.Generation {
				return fmt.Sprintf("pods %v, status %+v", names, st)
			}
			return ""
		}
	}
	eventually(t, "3 ordered pods Running", settledSet(3, "nginx:1.27"))
	if added, _ := events.get(); !slices.Equal(added, []string{"web-0", "web-1", "web-2"}) {
		t.Errorf("pods created in the order %v, want web-0, web-1, web-2", added)
	}
	k.run(t, "rollout", "status", "statefulset/web", "--timeout=60s")

	k.run(t, "scale", "statefulset", "web", "--replicas=1")
	eventually(t, "scaled down to web-0", settledSet(1, "nginx:1.27"))
	if _, deleted := events.get(); !slices.Equal(deleted, []string{"web-2", "web-1"}) {
		t.Errorf("pods deleted in the order %v, want web-2, web-1", deleted)
	}

	k.run(t, "scale", "statefulset", "web", "--replicas=3")
	eventually(t, "scaled up again", settledSet(3, "nginx:1.27"))
	k.run(t, "set", "image", "statefulset/web", "nginx=nginx:1.28")
	k.run(t, "rollout", "status", "statefulset/web", "--timeout=60s")
	eventually(t, "rolled out", settledSet(3, "nginx:1.28"))
	if _, deleted := events.get(); len(deleted) < 2 || !slices.Equal(deleted[2:], []string{"web-2", "web-1", "web-0"}) {
		t.Errorf("pods deleted in the order %v, want web-2, web-1 (scale down), then web-2, web-1, web-0 (rolling update)", deleted)
	}
}

// TestWorkloadsHPA scales a Deployment on CPU utilisation reported through
// the HPA's test metrics source (the pod annotation
// metrics.tugboat.dev/cpu-usage), with a short sync period and scale-down
// stabilisation window set in the plugin's settings.
func TestWorkloadsHPA(t *testing.T) {
	skipShort(t)
	wasm := plugintest.BuildWasm(t, filepath.Join("..", "..", "plugins", "controllers", "hpa"))
	config := filepath.Join(t.TempDir(), "tugboat.yaml")
	if err := os.WriteFile(config, []byte(`controllers:
  plugins:
    - name: hpa
      path: `+wasm+`
      settings: {"syncPeriod": "500ms", "downscaleStabilization": "3s"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := testenv.StartServer(t, "--controllers-plugins-dir", controllerPlugins(t, allControllers...), "--config", config,
		"--scheduler-plugins-dir", schedulerPlugins(t), "--disable-agent", "--sim-nodes", "2")
	k, cs := newKubectl(t, s), clientset(t, s)
	ctx := context.Background()
	k.apply(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx, resources: {requests: {cpu: 100m}}}]}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 4
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
`)
	scaled := func(n int32, utilization int32) func() string {
		return func() string {
			d, err := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			h, err := cs.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			st := h.Status
			if *d.Spec.Replicas != n || st.DesiredReplicas != n || st.CurrentReplicas != n || d.Status.ReadyReplicas != n {
				return fmt.Sprintf("deployment replicas %d (ready %d), hpa status %+v; want %d", *d.Spec.Replicas, d.Status.ReadyReplicas, st, n)
			}
			if len(st.CurrentMetrics) != 1 || st.CurrentMetrics[0].Resource == nil ||
				*st.CurrentMetrics[0].Resource.Current.AverageUtilization != utilization {
				return fmt.Sprintf("currentMetrics %+v, want %d%%", st.CurrentMetrics, utilization)
			}
			return ""
		}
	}
	k.run(t, "rollout", "status", "deployment/web", "--timeout=60s")
	// 150% of the request against a 50% target: 3 replicas.
	k.run(t, "annotate", "pods", "-l", "app=web", "metrics.tugboat.dev/cpu-usage=150m")
	eventually(t, "scaled up to 3", scaled(3, 150))
	events, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web,reason=SuccessfulRescale"})
	if err != nil || len(events.Items) == 0 {
		t.Errorf("no SuccessfulRescale event (%v)", err)
	}
	// 10% everywhere: back to 1 after the 3 s stabilisation window.
	k.run(t, "annotate", "pods", "-l", "app=web", "metrics.tugboat.dev/cpu-usage=10m", "--overwrite")
	eventually(t, "scaled down to 1", scaled(1, 10))
}

// TestWorkloadsDaemonSetSurge: a RollingUpdate with maxSurge 1 and
// maxUnavailable 0 starts each new pod beside the old one and deletes the
// old one only once the new one runs, one node at a time: watched pod by
// pod, every node keeps a running daemon pod and at most one node has
// two.
func TestWorkloadsDaemonSetSurge(t *testing.T) {
	skipShort(t)
	_, k, cs := startWorkloads(t, []string{"daemonset"}, "--sim-nodes", "3")
	ctx := context.Background()
	k.apply(t, `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: surge}
spec:
  selector: {matchLabels: {app: surge}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: surge}}
    spec: {containers: [{name: main, image: agent:v1}]}
`)
	k.run(t, "rollout", "status", "daemonset/surge", "--timeout=60s")
	l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=surge"})
	if err != nil {
		t.Fatal(err)
	}
	type podState struct {
		node, image string
		running     bool
	}
	pods := map[string]podState{}
	track := func(p *corev1.Pod) {
		if p.DeletionTimestamp != nil {
			delete(pods, p.Name)
			return
		}
		pods[p.Name] = podState{p.Spec.NodeName, p.Spec.Containers[0].Image, p.Status.Phase == corev1.PodRunning}
	}
	for i := range l.Items {
		track(&l.Items[i])
	}
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=surge", ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	k.run(t, "set", "image", "daemonset/surge", "main=agent:v2")
	deadline := time.After(convergeTimeout)
	for {
		var ev watch.Event
		select {
		case ev = <-w.ResultChan():
		case <-deadline:
			t.Fatalf("rollout not done after %v: pods %v", convergeTimeout, pods)
		}
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			t.Fatalf("watch event %v", ev)
		}
		if ev.Type == watch.Deleted {
			delete(pods, p.Name)
		} else {
			track(p)
		}
		running, live := map[string]bool{}, map[string]int{}
		updated := 0
		for _, st := range pods {
			if st.node == "" {
				continue // not bound yet
			}
			live[st.node]++
			running[st.node] = running[st.node] || st.running
			if st.image == "agent:v2" && st.running {
				updated++
			}
		}
		surging := 0
		for _, node := range []string{"sim-0", "sim-1", "sim-2"} {
			if !running[node] {
				t.Fatalf("after %s of %s: no running daemon pod on %s: %v", ev.Type, p.Name, node, pods)
			}
			if live[node] > 1 {
				surging++
			}
		}
		if surging > 1 {
			t.Fatalf("after %s of %s: %d nodes surging, maxSurge is 1: %v", ev.Type, p.Name, surging, pods)
		}
		if updated == 3 && len(pods) == 3 {
			break
		}
	}
	k.run(t, "rollout", "status", "daemonset/surge", "--timeout=60s")
}
