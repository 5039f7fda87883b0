// Package schedtest drives one scheduler plugin through the kernel's
// scheduling code for the built-in plugins' unit tests: a Host holds a
// kernel/scheduler.Snapshot (nodes and bound pods given as YAML or JSON)
// and runs single-plugin profiles over every node, so each test exercises
// the exact request encoding, the incremental changes by generation and
// the resync the real driver uses — natively through
// sdk/scheduler.Module or as Wasm through the runtime.
package schedtest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
	"github.com/tugboat-dev/tugboat/runtime"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

// Caller is a scheduler plugin as the driver calls it: a
// *scheduler.Module natively, a *runtime.Plugin as Wasm.
type Caller = kscheduler.Plugin

// profiles are the single-plugin profiles of one plugin.
type profiles struct {
	filter, score *kscheduler.Profile
}

// Host holds the cluster and one pair of profiles per plugin (each profile
// tracks what the plugin instance has seen). Not safe for concurrent use.
type Host struct {
	snap  *kscheduler.Snapshot
	profs map[Caller]*profiles
}

// New returns an empty host.
func New() *Host {
	return &Host{snap: kscheduler.NewSnapshot(), profs: map[Caller]*profiles{}}
}

func decode(t testing.TB, doc string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(doc), v); err != nil {
		t.Fatalf("schedtest: %v\n%s", err, doc)
	}
}

// SetNode adds or replaces a node (YAML or JSON Node).
func (h *Host) SetNode(t testing.TB, doc string) {
	t.Helper()
	var n corev1.Node
	decode(t, doc, &n)
	h.snap.SetNode(&n)
}

// RemoveNode removes a node and its pods.
func (h *Host) RemoveNode(name string) { h.snap.RemoveNode(name) }

func parsePod(t testing.TB, doc string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	decode(t, doc, &p)
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	if p.Spec.SchedulerName == "" {
		p.Spec.SchedulerName = kscheduler.DefaultSchedulerName
	}
	if p.UID == "" {
		p.UID = types.UID("uid-" + p.Namespace + "-" + p.Name)
	}
	return &p
}

// AddPod binds a pod (YAML or JSON; spec.nodeName names the node, which
// must exist).
func (h *Host) AddPod(t testing.TB, doc string) {
	t.Helper()
	p := parsePod(t, doc)
	if p.Spec.NodeName == "" || !h.snap.HasNode(p.Spec.NodeName) {
		t.Fatalf("schedtest: pod %s: node %q unknown", p.Name, p.Spec.NodeName)
	}
	h.snap.SetPod(p)
}

// RemovePod removes a bound pod.
func (h *Host) RemovePod(ns, name string) { h.snap.RemovePod(ns, name) }

// Forget makes the host send c the full table on its next call, as to a
// new instance.
func (h *Host) Forget(c Caller) { delete(h.profs, c) }

func (h *Host) profiles(t testing.TB, c Caller) *profiles {
	t.Helper()
	if p := h.profs[c]; p != nil {
		return p
	}
	f, err := kscheduler.NewProfile(kscheduler.DefaultSchedulerName, []kscheduler.PluginConfig{{Plugin: c, Filter: true}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := kscheduler.NewProfile(kscheduler.DefaultSchedulerName, []kscheduler.PluginConfig{{Plugin: c, Score: true}})
	if err != nil {
		t.Fatal(err)
	}
	p := &profiles{filter: f, score: s}
	h.profs[c] = p
	return p
}

// Attempt is a pod to filter and score.
type Attempt struct {
	h   *Host
	pod *corev1.Pod
}

// Pod prepares a pod (YAML or JSON).
func (h *Host) Pod(t testing.TB, doc string) *Attempt {
	t.Helper()
	return &Attempt{h: h, pod: parsePod(t, doc)}
}

func (a *Attempt) run(t testing.TB, prof *kscheduler.Profile) kscheduler.Result {
	t.Helper()
	res, err := prof.Schedule(context.Background(), a.h.snap, a.pod, kscheduler.Options{AllNodes: true, Trace: true})
	if err != nil {
		t.Fatalf("schedtest: %v", err)
	}
	return res
}

// Filter runs c's filter over every node and returns the reasons per
// rejected node.
func (a *Attempt) Filter(t testing.TB, c Caller) map[string][]string {
	t.Helper()
	res := a.run(t, a.h.profiles(t, c).filter)
	if res.Reasons == nil {
		return map[string][]string{}
	}
	return res.Reasons
}

// Score runs c's scorer over every node and returns its score (0..100)
// per node.
func (a *Attempt) Score(t testing.TB, c Caller) map[string]int64 {
	t.Helper()
	res := a.run(t, a.h.profiles(t, c).score)
	s, ok := res.PluginScores[c.Name()]
	if !ok {
		t.Fatalf("schedtest: no scores from %s (result %+v)", c.Name(), res)
	}
	return s
}

// LoadWasm builds the plugin main package in dir to Wasm (once per test
// binary), loads it with the Tugboat runtime with settings (JSON, "" for
// none) and closes it when the test ends.
func LoadWasm(t testing.TB, dir, settings string) *runtime.Plugin {
	t.Helper()
	path := plugintest.BuildWasm(t, dir)
	ctx := context.Background()
	cache := filepath.Join(os.TempDir(), "tugboat-schedtest-"+strconv.Itoa(os.Getuid()), "wazero-cache")
	eng, err := runtime.NewEngine(ctx, runtime.Config{CacheDir: cache})
	if err != nil {
		t.Fatalf("schedtest: new engine: %v", err)
	}
	t.Cleanup(func() { _ = eng.Close(ctx) })
	var s []byte
	if settings != "" {
		s = []byte(settings)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	plug, err := eng.Load(ctx, runtime.PluginConfig{Name: filepath.Base(abs), Path: path, Settings: s, PoolSize: 1,
		MemoryLimit: runtime.DefaultSchedulerMemoryLimit})
	if err != nil {
		t.Fatalf("schedtest: load %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = plug.Close(ctx) })
	return plug
}
