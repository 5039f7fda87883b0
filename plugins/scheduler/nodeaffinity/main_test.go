package main

import (
	"maps"
	"slices"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/nodeaffinity/nodeaffinity"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// TestPlugin runs the registered plugin natively and as Wasm through the
// runtime on the same cluster; both must answer alike.
func TestPlugin(t *testing.T) {
	native, err := sched.Registered()
	if err != nil {
		t.Fatal(err)
	}
	targets := []struct {
		name string
		c    schedtest.Caller
	}{
		{"native", native},
		{"wasm", schedtest.LoadWasm(t, ".", "")},
	}
	h := schedtest.New()
	h.SetNode(t, `{metadata: {name: a, labels: {disktype: ssd, zone: z1}}}`)
	h.SetNode(t, `{metadata: {name: b, labels: {disktype: hdd, zone: z1}}}`)
	h.SetNode(t, `{metadata: {name: c, labels: {zone: z2}}}`)
	pod := `
metadata: {name: p}
spec:
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: disktype, operator: Exists}]
      preferredDuringSchedulingIgnoredDuringExecution:
      - {weight: 4, preference: {matchExpressions: [{key: disktype, operator: In, values: [ssd]}]}}
      - {weight: 1, preference: {matchExpressions: [{key: zone, operator: NotIn, values: [z2]}]}}`
	wantReject := map[string][]string{"c": {nodeaffinity.ReasonPod}}
	wantScores := map[string]int64{"a": 100, "b": 20, "c": 0}
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			a := h.Pod(t, pod)
			if got := a.Filter(t, tt.c); !maps.EqualFunc(got, wantReject, slices.Equal) {
				t.Fatalf("filter: %v, want %v", got, wantReject)
			}
			if got := a.Score(t, tt.c); !maps.Equal(got, wantScores) {
				t.Fatalf("score: %v, want %v", got, wantScores)
			}
		})
	}
}
