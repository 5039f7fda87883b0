package imagelocality

import (
	"maps"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// noSkip is the plugin without SkipScore: the field shadows the promoted
// method, so the SDK always calls Score (the reference).
type noSkip struct {
	*Plugin
	SkipScore struct{}
}

func TestSkip(t *testing.T) {
	tests := []struct {
		name  string
		nodes []string
		pod   string
		skip  bool
	}{
		{"no node reports images", []string{`{metadata: {name: n1}}`, `{metadata: {name: n2}}`},
			`{metadata: {name: p}, spec: {containers: [{name: c, image: nginx}]}}`, true},
		{"no node has the pod's images", []string{`{metadata: {name: n1}, status: {images: [{names: ["redis:latest"], sizeBytes: 314572800}]}}`, `{metadata: {name: n2}}`},
			`{metadata: {name: p}, spec: {containers: [{name: c, image: nginx}]}}`, true},
		{"a node has the pod's image (normalised name)", []string{`{metadata: {name: n1}, status: {images: [{names: ["nginx:latest"], sizeBytes: 314572800}]}}`, `{metadata: {name: n2}}`},
			`{metadata: {name: p}, spec: {containers: [{name: c, image: nginx}]}}`, false},
		{"init container image", []string{`{metadata: {name: n1}, status: {images: [{names: ["redis:7"], sizeBytes: 314572800}]}}`, `{metadata: {name: n2}}`},
			`{metadata: {name: p}, spec: {initContainers: [{name: i, image: "redis:7"}], containers: [{name: c, image: nginx}]}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mod, err := sched.New(New(), Manifest())
			if err != nil {
				t.Fatal(err)
			}
			ref, err := sched.New(noSkip{Plugin: New()}, Manifest())
			if err != nil {
				t.Fatal(err)
			}
			h := schedtest.New()
			for _, n := range tt.nodes {
				h.SetNode(t, n)
			}
			a := h.Pod(t, tt.pod)
			if skip := a.SkippedScore(t, mod); skip != tt.skip {
				t.Errorf("skipped %v, want %v", skip, tt.skip)
			}
			if got, want := a.Score(t, mod), a.Score(t, ref); !maps.Equal(got, want) {
				t.Errorf("scores with skip %v, without %v", got, want)
			}
		})
	}
}
