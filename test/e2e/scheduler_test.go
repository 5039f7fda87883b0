package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tugboat-dev/tugboat/internal/testenv"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

// schedulerPlugins builds the built-in scheduler plugins into one
// directory for --scheduler-plugins-dir.
func schedulerPlugins(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{
		"nodeunschedulable", "nodename", "tainttoleration", "nodeaffinity", "noderesources",
		"podtopologyspread", "interpodaffinity", "balancedallocation", "imagelocality",
	} {
		wasm := plugintest.BuildWasm(t, filepath.Join("..", "..", "plugins", "scheduler", name))
		if err := os.Symlink(wasm, filepath.Join(dir, name+".wasm")); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// schedNode is a Node with 4 CPUs, 8Gi and extra allocatable resources.
func schedNode(name, extra string) string {
	return `apiVersion: v1
kind: Node
metadata: {name: ` + name + `, labels: {kubernetes.io/hostname: ` + name + `}}
status:
  allocatable: {cpu: "4", memory: 8Gi, pods: "110"` + extra + `}
  capacity: {cpu: "4", memory: 8Gi, pods: "110"` + extra + `}
`
}

// TestScheduler runs the scheduler with its Wasm plugins through kubectl:
// nodes labelled disktype=ssd (one cordoned) take the pod selecting them,
// the GPU-requesting video pod goes to the GPU node, and a pod nothing can
// hold gets the FailedScheduling message.
func TestScheduler(t *testing.T) {
	skipShort(t)
	s := testenv.StartServer(t, "--disable-agent", "--controllers-enabled=false",
		"--scheduler-plugins-dir", schedulerPlugins(t))
	k := newKubectl(t, s)
	for _, n := range []string{schedNode("ssd-1", ""), schedNode("ssd-2", ""), schedNode("gpu-1", `, nvidia.com/gpu: "2"`), schedNode("plain-1", "")} {
		k.apply(t, n)
	}
	// A server may drop status on create, as for most resources: set it
	// through the status subresource too.
	for _, n := range []string{"ssd-1", "ssd-2", "gpu-1", "plain-1"} {
		extra := ""
		if n == "gpu-1" {
			extra = `,"nvidia.com/gpu":"2"`
		}
		k.run(t, "patch", "node", n, "--subresource=status", "--type=merge", "-p",
			`{"status":{"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"`+extra+`},"capacity":{"cpu":"4","memory":"8Gi","pods":"110"`+extra+`}}}`)
	}
	k.run(t, "label", "node", "ssd-1", "ssd-2", "disktype=ssd")
	k.run(t, "cordon", "ssd-2")

	k.apply(t, `apiVersion: v1
kind: Pod
metadata: {name: db}
spec:
  nodeSelector: {disktype: ssd}
  containers: [{name: db, image: postgres:16, resources: {requests: {cpu: 500m, memory: 1Gi}}}]
`)
	k.apply(t, `apiVersion: v1
kind: Pod
metadata: {name: video-encode}
spec:
  containers:
  - name: ffmpeg
    image: jrottenberg/ffmpeg:6-nvidia
    resources: {requests: {cpu: "1", nvidia.com/gpu: "1"}, limits: {nvidia.com/gpu: "1"}}
`)
	k.apply(t, `apiVersion: v1
kind: Pod
metadata: {name: video-render-farm}
spec:
  containers:
  - name: blender
    image: blender:4
    resources: {requests: {nvidia.com/gpu: "4"}, limits: {nvidia.com/gpu: "4"}}
`)
	nodeOf := func(pod string) string {
		var p corev1.Pod
		k.getJSON(t, &p, "pod", pod)
		return p.Spec.NodeName
	}
	eventually(t, "db on the uncordoned ssd node", func() string {
		if n := nodeOf("db"); n != "ssd-1" {
			return "db is on " + quote(n)
		}
		return ""
	})
	eventually(t, "video-encode on the GPU node", func() string {
		if n := nodeOf("video-encode"); n != "gpu-1" {
			return "video-encode is on " + quote(n)
		}
		return ""
	})
	const want = "0/4 nodes are available: 1 node(s) were unschedulable, 3 Insufficient nvidia.com/gpu."
	eventually(t, "video-render-farm unschedulable with kube-scheduler's message", func() string {
		var p corev1.Pod
		k.getJSON(t, &p, "pod", "video-render-farm")
		if p.Spec.NodeName != "" {
			return "bound to " + p.Spec.NodeName
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				if c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable || c.Message != want {
					return "condition " + string(c.Status) + " " + c.Reason + ": " + c.Message
				}
				return ""
			}
		}
		return "no PodScheduled condition"
	})
	eventually(t, "FailedScheduling and Scheduled events", func() string {
		out := k.run(t, "get", "events", "-o", "custom-columns=REASON:.reason,OBJ:.involvedObject.name,MSG:.message", "--no-headers")
		if !containsFields(out, "FailedScheduling", "video-render-farm", want) {
			return "no FailedScheduling event for video-render-farm in:\n" + out
		}
		if !containsFields(out, "Scheduled", "db", "Successfully assigned default/db to ssd-1") {
			return "no Scheduled event for db in:\n" + out
		}
		return ""
	})
	// Uncordoned, ssd-2 takes pods again; the GPU node still has one GPU.
	k.run(t, "uncordon", "ssd-2")
	k.apply(t, `apiVersion: v1
kind: Pod
metadata: {name: db-replica}
spec:
  nodeSelector: {disktype: ssd}
  containers: [{name: db, image: postgres:16, resources: {requests: {cpu: "3"}}}]
`)
	eventually(t, "db-replica on ssd-2 (ssd-1 lacks cpu)", func() string {
		if n := nodeOf("db-replica"); n != "ssd-2" {
			return "db-replica is on " + quote(n)
		}
		return ""
	})
	if n := nodeOf("video-render-farm"); n != "" {
		t.Fatalf("video-render-farm bound to %s although no node has 4 GPUs", n)
	}
}

func quote(s string) string { return `"` + s + `"` }

// containsFields reports whether a line of out has the given
// whitespace-separated leading fields followed by the rest.
func containsFields(out, reason, object, msg string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == reason && f[1] == object && strings.Join(f[2:], " ") == msg {
			return true
		}
	}
	return false
}

// prioPod is a pod of the given PriorityClass requesting 1500m CPU (one
// fits on a 2-CPU node).
func prioPod(name, class string) string {
	return `apiVersion: v1
kind: Pod
metadata: {name: ` + name + `}
spec:
  priorityClassName: ` + class + `
  terminationGracePeriodSeconds: 1
  containers: [{name: app, image: nginx:1.27, resources: {requests: {cpu: 1500m}}}]
`
}

// TestSchedulerPreemption runs preemption on a cluster of two simulated
// 2-CPU nodes through kubectl: two low-priority pods fill it; a pod whose
// class says preemptionPolicy: Never stays Pending and evicts nothing; a
// high-priority pod evicts exactly one low-priority pod (a Preempted event
// names it) and runs on its node.
func TestSchedulerPreemption(t *testing.T) {
	skipShort(t)
	s := testenv.StartServer(t, "--disable-agent", "--controllers-enabled=false",
		"--sim-nodes", "2", "--sim-capacity", "cpu=2,memory=8Gi,pods=110",
		"--scheduler-plugins-dir", schedulerPlugins(t))
	k := newKubectl(t, s)
	k.apply(t, `apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: low}
value: 10
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: polite}
value: 500
preemptionPolicy: Never
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
`)
	pod := func(name string) (corev1.Pod, bool) {
		var list corev1.PodList
		k.getJSON(t, &list, "pods")
		for _, p := range list.Items {
			if p.Name == name {
				return p, true
			}
		}
		return corev1.Pod{}, false
	}
	running := func(name string) string {
		p, ok := pod(name)
		switch {
		case !ok:
			return name + " is gone"
		case p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "":
			return name + " is " + string(p.Status.Phase) + " on " + quote(p.Spec.NodeName)
		}
		return ""
	}
	k.apply(t, prioPod("low-1", "low"))
	k.apply(t, prioPod("low-2", "low"))
	eventually(t, "both low-priority pods running", func() string {
		if r := running("low-1"); r != "" {
			return r
		}
		return running("low-2")
	})
	if p, _ := pod("low-1"); p.Spec.Priority == nil || *p.Spec.Priority != 10 {
		t.Fatalf("low-1 priority %v, want 10 from its PriorityClass", p.Spec.Priority)
	}

	// preemptionPolicy: Never: unschedulable, and nobody is evicted.
	k.apply(t, prioPod("polite", "polite"))
	eventually(t, "polite unschedulable", func() string {
		p, _ := pod("polite")
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, "Insufficient cpu") {
				return ""
			}
		}
		return "polite: " + string(p.Status.Phase) + " on " + quote(p.Spec.NodeName)
	})
	for _, name := range []string{"low-1", "low-2"} {
		if r := running(name); r != "" {
			t.Fatalf("after the preemptionPolicy: Never pod: %s", r)
		}
	}
	k.run(t, "delete", "pod", "polite", "--wait=false")

	k.apply(t, prioPod("high", "high"))
	var node string
	eventually(t, "high running after preempting one low-priority pod", func() string {
		if r := running("high"); r != "" {
			return r
		}
		p, _ := pod("high")
		node = p.Spec.NodeName
		return ""
	})
	_, have1 := pod("low-1")
	_, have2 := pod("low-2")
	eventually(t, "exactly one victim gone", func() string {
		_, have1 = pod("low-1")
		_, have2 = pod("low-2")
		if have1 == have2 {
			return "low-1 present " + strconv.FormatBool(have1) + ", low-2 present " + strconv.FormatBool(have2)
		}
		return ""
	})
	victim, survivor := "low-1", "low-2"
	if have1 {
		victim, survivor = survivor, victim
	}
	if r := running(survivor); r != "" {
		t.Fatalf("the other low-priority pod: %s", r)
	}
	if p, _ := pod(survivor); p.Spec.NodeName == node {
		t.Fatalf("%s runs on %s with high", survivor, node)
	}
	out := k.run(t, "get", "pods", "-o", "wide")
	if !strings.Contains(out, "high") || strings.Contains(out, victim) {
		t.Fatalf("kubectl get pods -o wide:\n%s", out)
	}
	eventually(t, "Preempted event for the victim", func() string {
		out := k.run(t, "get", "events", "-o", "custom-columns=REASON:.reason,OBJ:.involvedObject.name,MSG:.message", "--no-headers")
		if !containsFields(out, "Preempted", victim, "Preempted by default/high on node "+node) {
			return "no Preempted event for " + victim + " in:\n" + out
		}
		return ""
	})
}
