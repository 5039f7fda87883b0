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
	"reflect"
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

// profiles are the single-plugin profiles of one plugin: filter and score
// call it for every attempt (its declared relevance hidden, so tests see
// what the plugin itself answers), relevant honours the relevance like
// the real driver.
type profiles struct {
	filter, score                 *kscheduler.Profile
	relevantFilter, relevantScore *kscheduler.Profile
}

// plain hides a plugin's relevance (kscheduler.Relevancer) from profiles.
type plain struct{ kscheduler.Plugin }

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
	f, err := kscheduler.NewProfile(kscheduler.DefaultSchedulerName, []kscheduler.PluginConfig{{Plugin: plain{c}, Filter: true}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := kscheduler.NewProfile(kscheduler.DefaultSchedulerName, []kscheduler.PluginConfig{{Plugin: plain{c}, Score: true}})
	if err != nil {
		t.Fatal(err)
	}
	rf, err := kscheduler.NewProfile(kscheduler.DefaultSchedulerName, []kscheduler.PluginConfig{{Plugin: c, Filter: true}})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := kscheduler.NewProfile(kscheduler.DefaultSchedulerName, []kscheduler.PluginConfig{{Plugin: c, Score: true}})
	if err != nil {
		t.Fatal(err)
	}
	p := &profiles{filter: f, score: s, relevantFilter: rf, relevantScore: rs}
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
// per node (0 for every node when the scorer skipped the pod).
func (a *Attempt) Score(t testing.TB, c Caller) map[string]int64 {
	t.Helper()
	res := a.run(t, a.h.profiles(t, c).score)
	s, ok := res.PluginScores[c.Name()]
	if !ok {
		t.Fatalf("schedtest: no scores from %s (result %+v)", c.Name(), res)
	}
	if len(s) == 0 {
		for name := range res.Scores {
			s[name] = 0
		}
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

// SkippedFilter runs c's filter over every node (like Filter) and
// reports whether c answered "skip".
func (a *Attempt) SkippedFilter(t testing.TB, c Caller) bool {
	t.Helper()
	return a.skipped(t, a.h.profiles(t, c).filter)
}

// SkippedScore runs c's scorer over every node (like Score) and reports
// whether c answered "skip".
func (a *Attempt) SkippedScore(t testing.TB, c Caller) bool {
	t.Helper()
	return a.skipped(t, a.h.profiles(t, c).score)
}

func (a *Attempt) skipped(t testing.TB, prof *kscheduler.Profile) bool {
	t.Helper()
	before := prof.Stats()[0].Skips
	a.run(t, prof)
	return prof.Stats()[0].Skips > before
}

// CheckSkips checks a plugin's SkipFilter and SkipScore for one pod: that
// they say what want says, and that skipping changes nothing — c (the
// plugin) and ref (the same plugin without its skip methods) reject the
// same nodes with the same reasons and give the same scores.
func (a *Attempt) CheckSkips(t testing.TB, c, ref Caller, wantFilter, wantScore bool) {
	t.Helper()
	gotFilter, gotScore := a.SkippedFilter(t, c), a.SkippedScore(t, c)
	if gotFilter != wantFilter || gotScore != wantScore {
		t.Errorf("skipped filter %v, score %v; want %v, %v", gotFilter, gotScore, wantFilter, wantScore)
	}
	wantReasons, wantScores := a.Filter(t, ref), a.Score(t, ref)
	if got := a.Filter(t, c); !reflect.DeepEqual(got, wantReasons) {
		t.Errorf("filter with skip: %v; without: %v", got, wantReasons)
	}
	if got := a.Score(t, c); !reflect.DeepEqual(got, wantScores) {
		t.Errorf("scores with skip: %v; without: %v", got, wantScores)
	}
	a.CheckRelevant(t, c, wantReasons, wantScores)
}

// CheckRelevant runs c as filter and scorer honouring its declared
// relevance (kscheduler.Relevancer), as the driver does, and checks that
// the nodes it rejects and its scores are wantReasons and wantScores (what
// c gives when always called).
func (a *Attempt) CheckRelevant(t testing.TB, c Caller, wantReasons map[string][]string, wantScores map[string]int64) {
	t.Helper()
	p := a.h.profiles(t, c)
	reasons := a.run(t, p.relevantFilter).Reasons
	if reasons == nil {
		reasons = map[string][]string{}
	}
	if !reflect.DeepEqual(reasons, wantReasons) {
		t.Errorf("filter honouring relevance: %v; always called: %v", reasons, wantReasons)
	}
	scores := a.run(t, p.relevantScore).PluginScores[c.Name()]
	for name, want := range wantScores {
		if scores[name] != want {
			t.Errorf("scores honouring relevance: %v; always called: %v", scores, wantScores)
			break
		}
	}
}
