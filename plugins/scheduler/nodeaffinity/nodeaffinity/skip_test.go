package nodeaffinity

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

func TestSkip(t *testing.T) {
	const added = `{"addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}`
	const addedPref = `{"addedAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 3, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}`
	tests := []struct {
		name, settings, pod string
		skipFilter, skipScr bool
	}{
		{"nothing", "", `{metadata: {name: p}}`, true, true},
		{"empty affinity", "", `{metadata: {name: p}, spec: {affinity: {}}}`, true, true},
		{"pod affinity only", "", `{metadata: {name: p}, spec: {affinity: {podAffinity: {}}}}`, true, true},
		{"nodeSelector", "", `{metadata: {name: p}, spec: {nodeSelector: {disktype: ssd}}}`, false, true},
		{"required affinity", "", `{metadata: {name: p}, spec: {affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: gpu, operator: Exists}]}]}}}}}`, false, true},
		{"preferred affinity", "", `{metadata: {name: p}, spec: {affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 2, preference: {matchExpressions: [{key: zone, operator: In, values: [a]}]}}]}}}}`, true, false},
		{"scheduler-enforced affinity", added, `{metadata: {name: p}}`, false, true},
		{"scheduler-enforced preference", addedPref, `{metadata: {name: p}}`, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := sched.New(noSkip{Plugin: New()}, Manifest())
			if err != nil {
				t.Fatal(err)
			}
			if err := ref.Configure([]byte(tt.settings)); err != nil {
				t.Fatal(err)
			}
			testHost(t).Pod(t, tt.pod).CheckSkips(t, newModule(t, tt.settings), ref, tt.skipFilter, tt.skipScr)
		})
	}
}
