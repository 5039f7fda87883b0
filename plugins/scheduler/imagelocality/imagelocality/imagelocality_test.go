package imagelocality

import (
	"maps"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

func TestNormalizedImageName(t *testing.T) {
	for in, want := range map[string]string{
		"nginx":                      "nginx:latest",
		"nginx:1.25":                 "nginx:1.25",
		"registry:5000/team/app":     "registry:5000/team/app:latest",
		"registry:5000/team/app:v1":  "registry:5000/team/app:v1",
		"gcr.io/pause@sha256:abc123": "gcr.io/pause@sha256:abc123",
	} {
		if got := NormalizedImageName(in); got != want {
			t.Errorf("NormalizedImageName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScore(t *testing.T) {
	mod, err := sched.New(New(), Manifest())
	if err != nil {
		t.Fatal(err)
	}
	h := schedtest.New()
	h.SetNode(t, `{metadata: {name: n1}, status: {images: [{names: ["nginx:1.25"], sizeBytes: 524288000}]}}`)
	h.SetNode(t, `{metadata: {name: n2}, status: {images: [{names: ["nginx:1.25", "docker.io/library/nginx:1.25"], sizeBytes: 524288000},
		{names: ["redis:latest"], sizeBytes: 314572800}]}}`)
	h.SetNode(t, `{metadata: {name: n3}}`)
	pod := `{metadata: {name: p}, spec: {initContainers: [{name: i, image: redis}], containers: [{name: c, image: "nginx:1.25"}]}}`
	// nginx on 2 of 3 nodes: 500 MB * 2/3; redis on 1: 300 MB / 3;
	// clamped to [23 MB, 2 × 1000 MB] and mapped to 0..100.
	want := map[string]int64{"n1": 15, "n2": 20, "n3": 0}
	if got := h.Pod(t, pod).Score(t, mod); !maps.Equal(got, want) {
		t.Fatalf("scores %v, want %v", got, want)
	}
	// Images nobody has: all 0.
	if got := h.Pod(t, `{metadata: {name: q}, spec: {containers: [{name: c, image: busybox}]}}`).Score(t, mod); !maps.Equal(got, map[string]int64{"n1": 0, "n2": 0, "n3": 0}) {
		t.Fatalf("unknown image: %v", got)
	}
	// n2 loses its images; n3 gains redis.
	h.SetNode(t, `{metadata: {name: n2}}`)
	h.SetNode(t, `{metadata: {name: n3}, status: {images: [{names: ["redis:latest"], sizeBytes: 314572800}]}}`)
	want = map[string]int64{"n1": 7, "n2": 0, "n3": 3} // nginx now on 1 of 3 nodes
	if got := h.Pod(t, pod).Score(t, mod); !maps.Equal(got, want) {
		t.Fatalf("after node changes: %v, want %v", got, want)
	}
}
