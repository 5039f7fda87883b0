// Package schedtest helps test scheduler plugins through the kernel's
// driver code without a server: build a cluster snapshot from Node and Pod
// objects written as YAML or JSON, and run a profile's full filter and
// score pass over it (every node evaluated, deterministic ties).
package schedtest

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/tugboat-dev/tugboat/kernel/scheduler"
)

// Cluster is a snapshot under construction.
type Cluster struct {
	Snap *scheduler.Snapshot
}

// New returns an empty cluster.
func New() *Cluster { return &Cluster{Snap: scheduler.NewSnapshot()} }

// ParseNode decodes a Node from YAML or JSON.
func ParseNode(t testing.TB, doc string) *corev1.Node {
	t.Helper()
	var n corev1.Node
	if err := yaml.UnmarshalStrict([]byte(doc), &n); err != nil {
		t.Fatalf("node: %v\n%s", err, doc)
	}
	return &n
}

// ParsePod decodes a Pod from YAML or JSON; namespace defaults to
// "default" and schedulerName to "default-scheduler".
func ParsePod(t testing.TB, doc string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := yaml.UnmarshalStrict([]byte(doc), &p); err != nil {
		t.Fatalf("pod: %v\n%s", err, doc)
	}
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	if p.Spec.SchedulerName == "" {
		p.Spec.SchedulerName = scheduler.DefaultSchedulerName
	}
	if p.UID == "" {
		p.UID = types.UID("uid-" + p.Namespace + "-" + p.Name)
	}
	return &p
}

// AddNodes adds nodes given as YAML or JSON documents.
func (c *Cluster) AddNodes(t testing.TB, docs ...string) *Cluster {
	t.Helper()
	for _, d := range docs {
		c.Snap.SetNode(ParseNode(t, d))
	}
	return c
}

// AddPods adds bound pods (spec.nodeName set) given as YAML or JSON.
func (c *Cluster) AddPods(t testing.TB, docs ...string) *Cluster {
	t.Helper()
	for _, d := range docs {
		p := ParsePod(t, d)
		if p.Spec.NodeName == "" {
			t.Fatalf("pod %s has no spec.nodeName; only bound pods belong in a cluster", p.Name)
		}
		c.Snap.SetPod(p)
	}
	return c
}

// Schedule runs prof over every node for the pod given as YAML or JSON,
// with Options.Trace and Options.AllNodes.
func (c *Cluster) Schedule(t testing.TB, prof *scheduler.Profile, pod string) scheduler.Result {
	t.Helper()
	res, err := prof.Schedule(context.Background(), c.Snap, ParsePod(t, pod), scheduler.Options{AllNodes: true, Trace: true})
	if err != nil {
		t.Fatalf("schedule: %v", err)
	}
	return res
}

// Profile builds a profile from plugin configs, failing the test on error.
func Profile(t testing.TB, plugins ...scheduler.PluginConfig) *scheduler.Profile {
	t.Helper()
	p, err := scheduler.NewProfile(scheduler.DefaultSchedulerName, plugins)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Node returns a Node with the given allocatable cpu, memory and pods
// (110 when 0) and labels, for tests that build clusters in Go.
func Node(name, cpu, memory string, pods int64, labels map[string]string) *corev1.Node {
	if pods == 0 {
		pods = 110
	}
	if labels == nil {
		labels = map[string]string{}
	}
	if _, ok := labels[corev1.LabelHostname]; !ok {
		labels[corev1.LabelHostname] = name
	}
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(cpu),
		corev1.ResourceMemory: resource.MustParse(memory),
		corev1.ResourcePods:   *resource.NewQuantity(pods, resource.DecimalSI),
	}
	return &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status:     corev1.NodeStatus{Allocatable: alloc, Capacity: alloc},
	}
}
