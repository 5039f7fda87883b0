package podtopologyspread

import (
	"maps"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func newModule(t testing.TB) *sched.Module {
	t.Helper()
	mod, err := sched.New(New(), Manifest())
	if err != nil {
		t.Fatal(err)
	}
	return mod
}

// testHost: zone a (n1, n2), zone b (n3, n4), n5 without a zone; n4 has a
// NoSchedule taint. Two app=foo pods on n1, one on n3; one terminating and
// one in another namespace on n2 (neither counts).
func testHost(t testing.TB) *schedtest.Host {
	t.Helper()
	h := schedtest.New()
	h.SetNode(t, `{metadata: {name: n1, labels: {zone: a, kubernetes.io/hostname: n1}}}`)
	h.SetNode(t, `{metadata: {name: n2, labels: {zone: a, kubernetes.io/hostname: n2}}}`)
	h.SetNode(t, `{metadata: {name: n3, labels: {zone: b, kubernetes.io/hostname: n3}}}`)
	h.SetNode(t, `{metadata: {name: n4, labels: {zone: b, kubernetes.io/hostname: n4}}, spec: {taints: [{key: dedicated, value: x, effect: NoSchedule}]}}`)
	h.SetNode(t, `{metadata: {name: n5, labels: {kubernetes.io/hostname: n5}}}`)
	h.AddPod(t, `{metadata: {name: foo-1, labels: {app: foo}}, spec: {nodeName: n1}}`)
	h.AddPod(t, `{metadata: {name: foo-2, labels: {app: foo}}, spec: {nodeName: n1}}`)
	h.AddPod(t, `{metadata: {name: foo-3, labels: {app: foo}}, spec: {nodeName: n3}}`)
	h.AddPod(t, `{metadata: {name: foo-4, labels: {app: foo}, deletionTimestamp: "2026-01-01T00:00:00Z"}, spec: {nodeName: n2}}`)
	h.AddPod(t, `{metadata: {name: foo-5, namespace: other, labels: {app: foo}}, spec: {nodeName: n2}}`)
	return h
}

func pod(labels, spec string) string {
	return "{metadata: {name: p, namespace: default, labels: " + labels + "}, spec: " + spec + "}"
}

func spread(key, when string, skew int, extra string) string {
	s := "{topologySpreadConstraints: [{maxSkew: " + string(rune('0'+skew)) + ", topologyKey: " + key +
		", whenUnsatisfiable: " + when + ", labelSelector: {matchLabels: {app: foo}}"
	if extra != "" {
		s += ", " + extra
	}
	return s + "}]"
}

func TestFilter(t *testing.T) {
	const (
		skew  = ReasonConstraintsNotMatch
		label = ReasonNodeLabelNotMatch
	)
	tests := []struct {
		name string
		pod  string
		want map[string]string
	}{
		{"no constraints", pod(`{app: foo}`, `{}`), map[string]string{}},
		{"soft constraints do not filter", pod(`{app: foo}`, spread("zone", "ScheduleAnyway", 1, "")+"}"), map[string]string{}},
		{"zone skew 1", pod(`{app: foo}`, spread("zone", "DoNotSchedule", 1, "")+"}"),
			map[string]string{"n1": skew, "n2": skew, "n5": label}},
		{"zone skew 2", pod(`{app: foo}`, spread("zone", "DoNotSchedule", 2, "")+"}"),
			map[string]string{"n5": label}},
		{"pod not matching its own selector", pod(`{app: bar}`, spread("zone", "DoNotSchedule", 1, "")+"}"),
			map[string]string{"n5": label}},
		{"minDomains above the domain count makes the minimum 0", pod(`{app: foo}`, spread("zone", "DoNotSchedule", 1, "minDomains: 3")+"}"),
			map[string]string{"n1": skew, "n2": skew, "n3": skew, "n4": skew, "n5": label}},
		{"node affinity honoured: only zone a counts", pod(`{app: foo}`, spread("zone", "DoNotSchedule", 1, "")+", nodeSelector: {zone: a}}"),
			map[string]string{"n5": label}},
		{"node affinity ignored", pod(`{app: foo}`, spread("zone", "DoNotSchedule", 1, "nodeAffinityPolicy: Ignore")+", nodeSelector: {zone: a}}"),
			map[string]string{"n1": skew, "n2": skew, "n5": label}},
		{"hostname skew 1", pod(`{app: foo}`, spread("kubernetes.io/hostname", "DoNotSchedule", 1, "")+"}"),
			map[string]string{"n1": skew, "n3": skew}},
		{"taints honoured: tainted n4 does not count", pod(`{app: foo}`, spread("kubernetes.io/hostname", "DoNotSchedule", 1, "nodeTaintsPolicy: Honor")+"}"),
			map[string]string{"n1": skew, "n3": skew}},
		{"matchLabelKeys from the pod's labels", pod(`{app: foo, rev: "2"}`,
			"{topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: foo}}, matchLabelKeys: [rev]}]}"),
			map[string]string{"n5": label}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := flat(t, testHost(t).Pod(t, tt.pod).Filter(t, newModule(t)))
			if !maps.Equal(got, tt.want) {
				t.Fatalf("rejections %v, want %v", got, tt.want)
			}
		})
	}
}

// TestFilterTaintsHonouredByZone: with n3 and n4 tainted and the taints
// honoured, zone b has no eligible node, so the minimum is zone a's.
func TestFilterTaintsHonouredByZone(t *testing.T) {
	h := testHost(t)
	h.SetNode(t, `{metadata: {name: n3, labels: {zone: b, kubernetes.io/hostname: n3}}, spec: {taints: [{key: k, effect: NoExecute}]}}`)
	p := pod(`{app: foo}`, spread("zone", "DoNotSchedule", 1, "nodeTaintsPolicy: Honor")+"}")
	want := map[string]string{"n5": ReasonNodeLabelNotMatch}
	if got := flat(t, h.Pod(t, p).Filter(t, newModule(t))); !maps.Equal(got, want) {
		t.Fatalf("rejections %v, want %v", got, want)
	}
	// A toleration makes zone b count again.
	p = pod(`{app: foo}`, spread("zone", "DoNotSchedule", 1, "nodeTaintsPolicy: Honor")+", tolerations: [{operator: Exists}]}")
	want = map[string]string{"n1": ReasonConstraintsNotMatch, "n2": ReasonConstraintsNotMatch, "n5": ReasonNodeLabelNotMatch}
	if got := flat(t, h.Pod(t, p).Filter(t, newModule(t))); !maps.Equal(got, want) {
		t.Fatalf("with toleration: %v, want %v", got, want)
	}
}

// TestFilterFollowsPods checks the cached counters across bindings.
func TestFilterFollowsPods(t *testing.T) {
	h := testHost(t)
	mod := newModule(t)
	p := pod(`{app: foo}`, spread("zone", "DoNotSchedule", 1, "")+"}")
	want := map[string]string{"n1": ReasonConstraintsNotMatch, "n2": ReasonConstraintsNotMatch, "n5": ReasonNodeLabelNotMatch}
	if got := flat(t, h.Pod(t, p).Filter(t, mod)); !maps.Equal(got, want) {
		t.Fatalf("before: %v, want %v", got, want)
	}
	h.AddPod(t, `{metadata: {name: foo-6, labels: {app: foo}}, spec: {nodeName: n4}}`) // zone b: 2
	want = map[string]string{"n5": ReasonNodeLabelNotMatch}
	if got := flat(t, h.Pod(t, p).Filter(t, mod)); !maps.Equal(got, want) {
		t.Fatalf("after binding: %v, want %v", got, want)
	}
	h.RemovePod("default", "foo-1") // zone a: 1
	want = map[string]string{"n3": ReasonConstraintsNotMatch, "n4": ReasonConstraintsNotMatch, "n5": ReasonNodeLabelNotMatch}
	if got := flat(t, h.Pod(t, p).Filter(t, mod)); !maps.Equal(got, want) {
		t.Fatalf("after removal: %v, want %v", got, want)
	}
}

func flat(t testing.TB, m map[string][]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for n, rs := range m {
		if len(rs) != 1 {
			t.Fatalf("node %s: reasons %v, want one", n, rs)
		}
		out[n] = rs[0]
	}
	return out
}

func TestScore(t *testing.T) {
	tests := []struct {
		name string
		pod  string
		want map[string]int64
	}{
		{"no soft constraints", pod(`{app: foo}`, spread("zone", "DoNotSchedule", 1, "")+"}"),
			map[string]int64{"n1": 0, "n2": 0, "n3": 0, "n4": 0, "n5": 0}},
		// zone: weight ln(2+2); a: 2 pods -> 3, b: 1 -> 1; n5 lacks the key.
		{"zone", pod(`{app: foo}`, spread("zone", "ScheduleAnyway", 1, "")+"}"),
			map[string]int64{"n1": 33, "n2": 33, "n3": 100, "n4": 100, "n5": 0}},
		// hostname: weight ln(5+2); n1 2 pods -> 4, n3 1 -> 2.
		{"hostname", pod(`{app: foo}`, spread("kubernetes.io/hostname", "ScheduleAnyway", 1, "")+"}"),
			map[string]int64{"n1": 0, "n2": 100, "n3": 50, "n4": 100, "n5": 100}},
		{"no matching pods anywhere", pod(`{app: bar}`,
			"{topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: none}}}]}"),
			map[string]int64{"n1": 100, "n2": 100, "n3": 100, "n4": 100, "n5": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := testHost(t).Pod(t, tt.pod).Score(t, newModule(t))
			if !maps.Equal(got, tt.want) {
				t.Fatalf("scores %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []string{
		`[{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]`,
		`[{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]`,
		`[{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Maybe"}]`,
		`[{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Sometimes"}]`,
		`{}`,
	} {
		if _, err := ParseConstraints([]byte(c), nil); err == nil {
			t.Errorf("ParseConstraints(%s) accepted", c)
		}
	}
}
