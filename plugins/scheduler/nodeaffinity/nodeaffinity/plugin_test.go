package nodeaffinity

import (
	"maps"
	"slices"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// newModule returns the plugin as the host sees it (the bytes path of the
// Wasm exports), configured with settings.
func newModule(t testing.TB, settings string) *sched.Module {
	t.Helper()
	mod, err := sched.New(New(), Manifest())
	if err != nil {
		t.Fatal(err)
	}
	if err := mod.Configure([]byte(settings)); err != nil {
		t.Fatal(err)
	}
	return mod
}

// testHost has six nodes n0..n5 like testNodes.
func testHost(t testing.TB) *schedtest.Host {
	t.Helper()
	h := schedtest.New()
	for _, n := range []string{
		`{metadata: {name: n0, labels: {zone: a, disktype: ssd, cores: "8"}}}`,
		`{metadata: {name: n1, labels: {zone: b, disktype: hdd, cores: "4"}}}`,
		`{metadata: {name: n2, labels: {zone: c, cores: "16", gpu: "true"}}}`,
		`{metadata: {name: n3, labels: {zone: a, gpu: "true", cores: x}}}`,
		`{metadata: {name: n4}}`,
		`{metadata: {name: n5, labels: {zone: b, disktype: ssd, cores: "32"}}}`,
	} {
		h.SetNode(t, n)
	}
	return h
}

func rejected(reasons map[string][]string, reason string) []string {
	var out []string
	for n, rs := range reasons {
		if len(rs) != 1 || rs[0] != reason {
			return []string{"unexpected reasons on " + n}
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		pod      string
		want     map[string][]string
	}{
		{"no constraint", `{}`, `{metadata: {name: p}, spec: {}}`, map[string][]string{}},
		{"node selector", `{}`, `{metadata: {name: p}, spec: {nodeSelector: {disktype: ssd}}}`, map[string][]string{
			"n1": {ReasonPod}, "n2": {ReasonPod}, "n3": {ReasonPod}, "n4": {ReasonPod}}},
		{"required affinity Gt", `{}`, `
metadata: {name: p}
spec:
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: cores, operator: Gt, values: ["8"]}]`, map[string][]string{
			"n0": {ReasonPod}, "n1": {ReasonPod}, "n3": {ReasonPod}, "n4": {ReasonPod}}},
		{"added affinity is checked first", `{"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
			{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}`,
			`{metadata: {name: p}, spec: {nodeSelector: {disktype: ssd}}}`, map[string][]string{
				"n1": {ReasonPod}, "n2": {ReasonEnforced}, "n3": {ReasonPod}, "n4": {ReasonEnforced}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHost(t)
			mod := newModule(t, tt.settings)
			a := h.Pod(t, tt.pod)
			got := a.Filter(t, mod)
			if !maps.EqualFunc(got, tt.want, slices.Equal) {
				t.Fatalf("rejections %v, want %v", got, tt.want)
			}
			// A new attempt of the same pod (served from the cache) answers
			// alike.
			if got := h.Pod(t, tt.pod).Filter(t, mod); !maps.EqualFunc(got, tt.want, slices.Equal) {
				t.Fatalf("second attempt: %v, want %v", got, tt.want)
			}
		})
	}
}

// TestFilterFollowsNodeChanges relabels, adds and removes nodes between
// pods and checks that cached node sets do not go stale.
func TestFilterFollowsNodeChanges(t *testing.T) {
	h := testHost(t)
	mod := newModule(t, `{}`)
	pod := `{metadata: {name: p}, spec: {nodeSelector: {disktype: ssd}}}`
	if got := rejected(h.Pod(t, pod).Filter(t, mod), ReasonPod); !slices.Equal(got, []string{"n1", "n2", "n3", "n4"}) {
		t.Fatalf("before: %v", got)
	}
	h.SetNode(t, `{metadata: {name: n4, labels: {disktype: ssd}}}`)
	h.RemoveNode("n0")
	h.SetNode(t, `{metadata: {name: n6, labels: {disktype: ssd}}}`) // takes n0's index
	if got := rejected(h.Pod(t, pod).Filter(t, mod), ReasonPod); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("after: %v", got)
	}
	// A restarted instance gets the full table.
	h.Forget(mod)
	fresh := newModule(t, `{}`)
	if got := rejected(h.Pod(t, pod).Filter(t, fresh), ReasonPod); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("fresh instance: %v", got)
	}
}

func TestScore(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		pod      string
		want     map[string]int64
	}{
		{"no preference", `{}`, `{metadata: {name: p}}`,
			map[string]int64{"n0": 0, "n1": 0, "n2": 0, "n3": 0, "n4": 0, "n5": 0}},
		{"weighted terms normalised by the best", `{"addedAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
			{"weight": 5, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}`, `
metadata: {name: p}
spec:
  affinity:
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - {weight: 10, preference: {matchExpressions: [{key: zone, operator: In, values: [a]}]}}
      - {weight: 5, preference: {matchExpressions: [{key: disktype, operator: In, values: [ssd]}]}}`,
			// raw: n0 15, n1 0, n2 5, n3 15, n4 0, n5 5
			map[string]int64{"n0": 100, "n1": 0, "n2": 33, "n3": 100, "n4": 0, "n5": 33}},
		{"only zero-weight or empty terms", `{}`, `
metadata: {name: p}
spec:
  affinity:
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - {weight: 0, preference: {matchExpressions: [{key: zone, operator: In, values: [a]}]}}
      - {weight: 3, preference: {}}`,
			map[string]int64{"n0": 0, "n1": 0, "n2": 0, "n3": 0, "n4": 0, "n5": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHost(t)
			got := h.Pod(t, tt.pod).Score(t, newModule(t, tt.settings))
			if !maps.Equal(got, tt.want) {
				t.Fatalf("scores %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	tests := []struct {
		settings string
		wantErr  bool
	}{
		{``, false},
		{`{}`, false},
		{`{"addedAffinity": null}`, false},
		{`{"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["x"]}]}]}}}`, true},
		{`{"other": 1}`, true},
		{`[]`, true},
	}
	for _, tt := range tests {
		mod, err := sched.New(New(), Manifest())
		if err != nil {
			t.Fatal(err)
		}
		err = mod.Configure([]byte(tt.settings))
		if (err != nil) != tt.wantErr {
			t.Errorf("Configure(%s) = %v, wantErr %v", tt.settings, err, tt.wantErr)
		}
	}
}
