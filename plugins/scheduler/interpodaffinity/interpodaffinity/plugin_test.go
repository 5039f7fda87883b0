package interpodaffinity

import (
	"maps"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

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

// testHost: zones z1 (n1, n2) and z2 (n3), n4 without a zone; web-1 on n1,
// db-1 on n3 (its required anti-affinity keeps app=web pods out of z2).
func testHost(t testing.TB) *schedtest.Host {
	t.Helper()
	h := schedtest.New()
	h.SetNode(t, `{metadata: {name: n1, labels: {zone: z1, kubernetes.io/hostname: n1}}}`)
	h.SetNode(t, `{metadata: {name: n2, labels: {zone: z1, kubernetes.io/hostname: n2}}}`)
	h.SetNode(t, `{metadata: {name: n3, labels: {zone: z2, kubernetes.io/hostname: n3}}}`)
	h.SetNode(t, `{metadata: {name: n4, labels: {kubernetes.io/hostname: n4}}}`)
	h.AddPod(t, `{metadata: {name: web-1, labels: {app: web}}, spec: {nodeName: n1}}`)
	h.AddPod(t, `
metadata: {name: db-1, labels: {app: db}}
spec:
  nodeName: n3
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - {labelSelector: {matchLabels: {app: web}}, topologyKey: zone}`)
	return h
}

func podWith(labels, affinity string) string {
	return "{metadata: {name: p, namespace: default, labels: " + labels + "}, spec: {affinity: " + affinity + "}}"
}

func TestFilter(t *testing.T) {
	const (
		aff  = ReasonAffinity
		anti = ReasonAntiAffinity
		ex   = ReasonExistingAntiRule
		// The API server validates terms; a pod that slips through cannot go
		// anywhere, like kube-scheduler's PreFilter parse error.
		badTerm = "parsing pod: podAffinity: requiredDuringSchedulingIgnoredDuringExecution[0]: topologyKey must be set"
	)
	tests := []struct {
		name string
		pod  string
		want map[string]string
	}{
		{"no terms, not matched by existing terms", podWith(`{app: other}`, `{}`), map[string]string{}},
		{"required affinity by zone", podWith(`{app: other}`,
			`{podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: web}}, topologyKey: zone}]}}`),
			map[string]string{"n3": aff, "n4": aff}},
		{"required affinity by hostname", podWith(`{app: other}`,
			`{podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}]}}`),
			map[string]string{"n2": aff, "n3": aff, "n4": aff}},
		{"first pod of a self-affine series goes where the key exists", podWith(`{app: cache}`,
			`{podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: cache}}, topologyKey: zone}]}}`),
			map[string]string{"n4": aff}},
		{"affinity to pods that do not exist, not self-matching", podWith(`{app: other}`,
			`{podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: cache}}, topologyKey: zone}]}}`),
			map[string]string{"n1": aff, "n2": aff, "n3": aff, "n4": aff}},
		{"required anti-affinity by zone", podWith(`{app: other}`,
			`{podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}, topologyKey: zone}]}}`),
			map[string]string{"n1": anti, "n2": anti}},
		{"existing pod's anti-affinity", podWith(`{app: web}`, `{}`), map[string]string{"n3": ex}},
		{"anti-affinity limited to another namespace", podWith(`{app: other}`,
			`{podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: web}}, namespaces: [prod], topologyKey: zone}]}}`),
			map[string]string{}},
		{"anti-affinity in all namespaces", podWith(`{app: other}`,
			`{podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: db}}, namespaces: [prod], namespaceSelector: {}, topologyKey: zone}]}}`),
			map[string]string{"n3": anti}},
		{"namespace selector on the name label", podWith(`{app: other}`,
			`{podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: db}}, namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}, topologyKey: zone}]}}`),
			map[string]string{"n3": anti}},
		{"matchLabelKeys narrows the selector", podWith(`{app: other, track: canary}`,
			`{podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchExpressions: [{key: app, operator: Exists}]}, matchLabelKeys: [track], topologyKey: zone}]}}`),
			map[string]string{}},
		{"an unparsable term rejects every node", podWith(`{app: other}`,
			`{podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: web}}}]}}`),
			map[string]string{"n1": badTerm, "n2": badTerm, "n3": badTerm, "n4": badTerm}},
		{"affinity reason wins over anti-affinity", podWith(`{app: web}`,
			`{podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: db}}, topologyKey: zone}]},
			  podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: db}}, topologyKey: zone}]}}`),
			map[string]string{"n1": aff, "n2": aff, "n3": anti, "n4": aff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHost(t)
			mod := newModule(t, "")
			got := flat(t, h.Pod(t, tt.pod).Filter(t, mod))
			if !maps.Equal(got, tt.want) {
				t.Fatalf("rejections %v, want %v", got, tt.want)
			}
		})
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

// TestFilterFollowsPods binds and removes pods between attempts: the
// cached counters and the existing-term groups must follow.
func TestFilterFollowsPods(t *testing.T) {
	h := testHost(t)
	mod := newModule(t, "")
	antiWeb := podWith(`{app: web}`,
		`{podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}]}}`)
	want := map[string]string{"n1": ReasonAntiAffinity, "n3": ReasonExistingAntiRule}
	if got := flat(t, h.Pod(t, antiWeb).Filter(t, mod)); !maps.Equal(got, want) {
		t.Fatalf("before: %v, want %v", got, want)
	}
	// Bind a second anti-affine web pod on n2 and remove db-1.
	h.AddPod(t, `
metadata: {name: web-2, labels: {app: web}}
spec:
  nodeName: n2
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}`)
	h.RemovePod("default", "db-1")
	want = map[string]string{"n1": ReasonAntiAffinity, "n2": ReasonAntiAffinity}
	if got := flat(t, h.Pod(t, antiWeb).Filter(t, mod)); !maps.Equal(got, want) {
		t.Fatalf("after: %v, want %v", got, want)
	}
	// A node relabel moves pods between domains.
	h.SetNode(t, `{metadata: {name: n2, labels: {zone: z1, kubernetes.io/hostname: n2b}}}`)
	if got := flat(t, h.Pod(t, antiWeb).Filter(t, mod)); !maps.Equal(got, want) {
		t.Fatalf("after relabel: %v, want %v", got, want)
	}
	h.RemoveNode("n2")
	want = map[string]string{"n1": ReasonAntiAffinity}
	if got := flat(t, h.Pod(t, antiWeb).Filter(t, mod)); !maps.Equal(got, want) {
		t.Fatalf("after node removal: %v, want %v", got, want)
	}
}

func TestScore(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		extra    string // another bound pod
		pod      string
		want     map[string]int64
	}{
		{"no terms anywhere", "", "", podWith(`{app: other}`, `{}`),
			map[string]int64{"n1": 0, "n2": 0, "n3": 0, "n4": 0}},
		{"preferred affinity by zone", "", "", podWith(`{app: other}`,
			`{podAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 10, podAffinityTerm: {labelSelector: {matchLabels: {app: web}}, topologyKey: zone}}]}}`),
			map[string]int64{"n1": 100, "n2": 100, "n3": 0, "n4": 0}},
		{"preferred anti-affinity by hostname", "", "", podWith(`{app: other}`,
			`{podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 5, podAffinityTerm: {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}}]}}`),
			map[string]int64{"n1": 0, "n2": 100, "n3": 100, "n4": 100}},
		{"both, mixed", "", "", podWith(`{app: other}`,
			`{podAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 10, podAffinityTerm: {labelSelector: {matchLabels: {app: web}}, topologyKey: zone}}]},
			  podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 4, podAffinityTerm: {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}}]}}`),
			// raw n1 6, n2 10, n3 0, n4 0
			map[string]int64{"n1": 60, "n2": 100, "n3": 0, "n4": 0}},
		{"existing pod's preferred affinity to the incoming pod", "",
			`{metadata: {name: e, labels: {app: e}}, spec: {nodeName: n3, affinity: {podAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 7, podAffinityTerm: {labelSelector: {matchLabels: {app: x}}, topologyKey: zone}}]}}}}`,
			podWith(`{app: x}`, `{}`),
			map[string]int64{"n1": 0, "n2": 0, "n3": 100, "n4": 0}},
		{"existing pod's preferred anti-affinity to the incoming pod", "",
			`{metadata: {name: e, labels: {app: e}}, spec: {nodeName: n3, affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 7, podAffinityTerm: {labelSelector: {matchLabels: {app: x}}, topologyKey: zone}}]}}}}`,
			podWith(`{app: x}`, `{}`),
			map[string]int64{"n1": 100, "n2": 100, "n3": 0, "n4": 100}},
		{"existing pod's required affinity counts hardPodAffinityWeight", "",
			`{metadata: {name: e, labels: {app: e}}, spec: {nodeName: n2, affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: x}}, topologyKey: kubernetes.io/hostname}]}}}}`,
			podWith(`{app: x}`, `{}`),
			map[string]int64{"n1": 0, "n2": 100, "n3": 0, "n4": 0}},
		{"hardPodAffinityWeight 0 ignores it", `{"hardPodAffinityWeight": 0}`,
			`{metadata: {name: e, labels: {app: e}}, spec: {nodeName: n2, affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: x}}, topologyKey: kubernetes.io/hostname}]}}}}`,
			podWith(`{app: x}`, `{}`),
			map[string]int64{"n1": 0, "n2": 0, "n3": 0, "n4": 0}},
		{"ignorePreferredTermsOfExistingPods", `{"ignorePreferredTermsOfExistingPods": true}`,
			`{metadata: {name: e, labels: {app: e}}, spec: {nodeName: n3, affinity: {podAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 7, podAffinityTerm: {labelSelector: {matchLabels: {app: x}}, topologyKey: zone}}]}}}}`,
			podWith(`{app: x}`, `{}`),
			map[string]int64{"n1": 0, "n2": 0, "n3": 0, "n4": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHost(t)
			if tt.extra != "" {
				h.AddPod(t, tt.extra)
			}
			got := h.Pod(t, tt.pod).Score(t, newModule(t, tt.settings))
			if !maps.Equal(got, tt.want) {
				t.Fatalf("scores %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, aff := range []string{
		`{"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {}}]}}`,
		`{"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone", "labelSelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}}]}}`,
		`{"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": {}}}`,
	} {
		if _, err := ParseAffinity([]byte(aff), "default", nil); err == nil {
			t.Errorf("ParseAffinity(%s) accepted", aff)
		}
	}
}
