package podtopologyspread

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
	tests := []struct {
		name, pod           string
		skipFilter, skipScr bool
	}{
		{"no constraints", pod(`{app: foo}`, `{}`), true, true},
		{"hard constraint", pod(`{app: foo}`,
			`{topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: foo}}}]}`),
			false, true},
		{"soft constraint", pod(`{app: foo}`,
			`{topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: foo}}}]}`),
			true, false},
		{"both", pod(`{app: foo}`,
			`{topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: foo}}},
			  {maxSkew: 2, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: foo}}}]}`),
			false, false},
		{"unparsable constraint is not skipped", pod(`{app: foo}`,
			`{topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: foo}}}]}`),
			false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := sched.New(noSkip{Plugin: New()}, Manifest())
			if err != nil {
				t.Fatal(err)
			}
			testHost(t).Pod(t, tt.pod).CheckSkips(t, newModule(t), ref, tt.skipFilter, tt.skipScr)
		})
	}
}
