package interpodaffinity

import (
	"testing"

	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// noSkip is the plugin without its skip methods: the fields shadow the
// promoted SkipFilter and SkipScore, so the SDK always calls Filter and
// Score (the reference the skips must agree with).
type noSkip struct {
	*Plugin
	SkipFilter, SkipScore struct{}
}

func newPair(t testing.TB) (mod, ref *sched.Module) {
	t.Helper()
	mod = newModule(t, "")
	ref, err := sched.New(noSkip{Plugin: New()}, Manifest())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ref.Plugin().(sched.FilterSkipper); ok {
		t.Fatal("reference plugin still skips")
	}
	return mod, ref
}

func TestSkip(t *testing.T) {
	tests := []struct {
		name                string
		existing            string // bound pod on n1 (besides web-1)
		pod                 string
		skipFilter, skipScr bool
	}{
		{"no terms anywhere", "", podWith(`{app: other}`, `{}`), true, true},
		{"pod without affinity", "", podWith(`{app: other}`, `null`), true, true},
		{"node affinity only", "", podWith(`{app: other}`, `{nodeAffinity: {}}`), true, true},
		{"own required anti-affinity", "", podWith(`{app: other}`,
			`{podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: web}}, topologyKey: zone}]}}`),
			false, true},
		{"own preferred affinity", "", podWith(`{app: other}`,
			`{podAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 5, podAffinityTerm: {labelSelector: {matchLabels: {app: web}}, topologyKey: zone}}]}}`),
			true, false},
		{"existing pod's required anti-affinity selects the pod", `
metadata: {name: guard, labels: {app: guard}}
spec:
  nodeName: n1
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}`,
			podWith(`{app: web}`, `{}`), false, true},
		{"existing pod's required anti-affinity does not select the pod", `
metadata: {name: guard, labels: {app: guard}}
spec:
  nodeName: n1
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}`,
			podWith(`{app: other}`, `{}`), true, true},
		{"existing pod's preferred affinity scores the pod", `
metadata: {name: fan, labels: {app: fan}}
spec:
  nodeName: n2
  affinity:
    podAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - {weight: 10, podAffinityTerm: {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}}`,
			podWith(`{app: web}`, `{}`), true, false},
		{"unparsable terms are not skipped", "", podWith(`{app: other}`,
			`{podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: web}}}]}}`),
			false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHost(t)
			// testHost's db-1 blocks app=web pods; start without it so
			// the "no existing anti-affinity" cases have none.
			h.RemovePod("default", "db-1")
			if tt.existing != "" {
				h.AddPod(t, tt.existing)
			}
			mod, ref := newPair(t)
			h.Pod(t, tt.pod).CheckSkips(t, mod, ref, tt.skipFilter, tt.skipScr)
		})
	}
}

// TestSkipFollowsExistingPods: the filter stops skipping once a pod with
// required anti-affinity against the incoming pod is bound, and skips
// again once it is gone (the plugin's groups follow PodAdded/PodRemoved).
func TestSkipFollowsExistingPods(t *testing.T) {
	h := testHost(t)
	h.RemovePod("default", "db-1")
	mod, ref := newPair(t)
	pod := podWith(`{app: web}`, `{}`)
	h.Pod(t, pod).CheckSkips(t, mod, ref, true, true)
	h.AddPod(t, `
metadata: {name: db-1, labels: {app: db}}
spec:
  nodeName: n3
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - {labelSelector: {matchLabels: {app: web}}, topologyKey: zone}`)
	h.Pod(t, pod).CheckSkips(t, mod, ref, false, true)
	if got := h.Pod(t, pod).Filter(t, mod); len(got) != 1 || got["n3"][0] != ReasonExistingAntiRule {
		t.Errorf("filter with db-1 bound: %v, want n3 rejected", got)
	}
	h.RemovePod("default", "db-1")
	h.Pod(t, pod).CheckSkips(t, mod, ref, true, true)
}
