package podtopologyspread

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func configured(t testing.TB, settings string) *sched.Module {
	t.Helper()
	mod := newModule(t)
	if err := mod.Configure([]byte(settings)); err != nil {
		t.Fatal(err)
	}
	return mod
}

// defaultsHost: zone a (n1, n2), zone b (n3), all with hostnames; two
// web pods of one ReplicaSet on n1, one on n3.
func defaultsHost(t testing.TB) *schedtest.Host {
	t.Helper()
	h := schedtest.New()
	for _, n := range []string{"n1:a", "n2:a", "n3:b"} {
		name, zone, _ := strings.Cut(n, ":")
		h.SetNode(t, `{metadata: {name: `+name+`, labels: {topology.kubernetes.io/zone: `+zone+`, kubernetes.io/hostname: `+name+`}}}`)
	}
	for _, p := range []string{"web-1:n1", "web-2:n1", "web-3:n3"} {
		name, node, _ := strings.Cut(p, ":")
		h.AddPod(t, `{metadata: {name: `+name+`, labels: {app: web, pod-template-hash: h1}}, spec: {nodeName: `+node+`}}`)
	}
	return h
}

const rsOwner = `ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-h1, uid: u1, controller: true}]`

// TestSystemDefaultConstraints: a pod controlled by a ReplicaSet, without
// constraints of its own, is spread by kube's system defaults (hostname
// maxSkew 3, zone maxSkew 5, ScheduleAnyway) over its siblings (selected
// by its labels) exactly as if it carried those constraints; an
// uncontrolled pod, or a List without constraints, is not spread.
func TestSystemDefaultConstraints(t *testing.T) {
	h := defaultsHost(t)
	mod := newModule(t)
	defaulted := `{metadata: {name: web-4, labels: {app: web, pod-template-hash: h1}, ` + rsOwner + `}, spec: {containers: [{name: c, image: i}]}}`
	explicit := `{metadata: {name: web-4, labels: {app: web, pod-template-hash: h1}}, spec: {containers: [{name: c, image: i}],
  topologySpreadConstraints: [
    {maxSkew: 3, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web, pod-template-hash: h1}}},
    {maxSkew: 5, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web, pod-template-hash: h1}}}]}}`
	got := h.Pod(t, defaulted).Score(t, mod)
	want := h.Pod(t, explicit).Score(t, mod)
	if !reflect.DeepEqual(got, want) || got["n2"] <= got["n1"] {
		t.Errorf("defaulted scores %v; explicit %v (n2 should beat n1)", got, want)
	}
	h.Pod(t, defaulted).CheckRelevant(t, mod, map[string][]string{}, got)
	if h.Pod(t, defaulted).SkippedFilter(t, mod) != true {
		t.Error("soft defaults: the filter should skip")
	}
	uncontrolled := `{metadata: {name: solo, labels: {app: web, pod-template-hash: h1}}, spec: {containers: [{name: c, image: i}]}}`
	if !h.Pod(t, uncontrolled).SkippedScore(t, mod) {
		t.Error("an uncontrolled pod is scored by the defaults")
	}
	off := configured(t, `{"defaultingType": "List"}`)
	if !h.Pod(t, defaulted).SkippedScore(t, off) {
		t.Error("defaultingType List without constraints still spreads")
	}
	if f, s := off.Plugin().(*Plugin).Relevance(); f != sched.WhenPodSpread || s != sched.WhenPodSpread {
		t.Errorf("relevance without defaults %v %v", f, s)
	}
	if _, s := mod.Plugin().(*Plugin).Relevance(); s&sched.WhenPodControlled == 0 {
		t.Error("relevance with defaults does not name controlled pods")
	}
}

// TestSystemDefaultsKeepNodesWithoutZone: under the system defaults a node
// without a zone label is still scored by the hostname constraint (kube's
// systemDefaulted scoring); with explicit constraints it scores 0.
func TestSystemDefaultsKeepNodesWithoutZone(t *testing.T) {
	h := defaultsHost(t)
	h.SetNode(t, `{metadata: {name: n4, labels: {kubernetes.io/hostname: n4}}}`)
	mod := newModule(t)
	got := h.Pod(t, `{metadata: {name: web-4, labels: {app: web, pod-template-hash: h1}, `+rsOwner+`}, spec: {containers: [{name: c, image: i}]}}`).Score(t, mod)
	if got["n4"] == 0 || got["n4"] < got["n1"] {
		t.Errorf("scores %v: n4 (no zone, no pods) should score, above n1", got)
	}
}

// TestListDefaultConstraints: configured defaults replace the system ones;
// a DoNotSchedule default filters, and StatefulSet pods are matched
// without their per-pod labels.
func TestListDefaultConstraints(t *testing.T) {
	h := defaultsHost(t)
	h.AddPod(t, `{metadata: {name: db-0, labels: {app: db, statefulset.kubernetes.io/pod-name: db-0}}, spec: {nodeName: n2}}`)
	mod := configured(t, `{"defaultingType": "List", "defaultConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}]}`)
	if f, _ := mod.Plugin().(*Plugin).Relevance(); f&sched.WhenPodControlled == 0 {
		t.Error("a DoNotSchedule default: the filter's relevance does not name controlled pods")
	}
	pod := `{metadata: {name: db-1, labels: {app: db, statefulset.kubernetes.io/pod-name: db-1},
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: u2, controller: true}]}, spec: {containers: [{name: c, image: i}]}}`
	got := h.Pod(t, pod).Filter(t, mod)
	want := map[string][]string{"n2": {ReasonConstraintsNotMatch}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("filter %v, want %v (db-0 on n2 is a sibling)", got, want)
	}
}

func TestDefaultsSettings(t *testing.T) {
	for _, tc := range []struct{ settings, err string }{
		{`{"defaultingType": "Sometimes"}`, `defaultingType must be "System" or "List"`},
		{`{"defaultConstraints": [{"maxSkew": 1, "topologyKey": "k", "whenUnsatisfiable": "DoNotSchedule"}]}`, "defaultConstraints must be empty with defaultingType System"},
		{`{"defaultingType": "List", "defaultConstraints": [{"maxSkew": 0, "topologyKey": "k", "whenUnsatisfiable": "DoNotSchedule"}]}`, "defaultConstraints[0]: maxSkew must be at least 1 and topologyKey set"},
		{`{"defaultingType": "List", "defaultConstraints": [{"maxSkew": 1, "topologyKey": "k", "whenUnsatisfiable": "Maybe"}]}`, "defaultConstraints[0]: whenUnsatisfiable must be DoNotSchedule or ScheduleAnyway"},
		{`{"defaultingType": "List", "defaultConstraints": [{"maxSkew": 1, "topologyKey": "k", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}}]}`, "defaultConstraints[0]: labelSelector is not allowed (it is derived from the pod)"},
	} {
		t.Run(tc.err, func(t *testing.T) {
			if err := newModule(t).Configure([]byte(tc.settings)); err == nil || err.Error() != tc.err {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}
