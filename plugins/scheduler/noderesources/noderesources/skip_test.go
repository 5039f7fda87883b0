package noderesources_test

import (
	"strconv"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/schedtest"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/noderesources/noderesources"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// noSkip is Fit without SkipFilter (the field shadows the method): the
// reference the skips must agree with.
type noSkip struct {
	*noderesources.Fit
	SkipFilter struct{}
}

func podReq(name, cpu, extra string) string {
	return `{metadata: {name: ` + name + `}, spec: {containers: [{name: c, image: i, resources: {requests: {cpu: "` + cpu + `"` + extra + `}, limits: {}}}]}}`
}

// TestFitSkipFilter: the filter is skipped exactly when the pod fits
// within every node's free room (the bound the table hooks keep), follows
// pods added and removed, and never changes an answer.
func TestFitSkipFilter(t *testing.T) {
	h := schedtest.New()
	h.SetNode(t, `{metadata: {name: n1}, status: {allocatable: {cpu: "2", memory: 4Gi, pods: "3"}}}`)
	h.SetNode(t, `{metadata: {name: n2}, status: {allocatable: {cpu: "4", memory: 8Gi, pods: "110", nvidia.com/gpu: "1"}}}`)
	mod := module(t, noderesources.NewFit(), noderesources.FitManifest(), "")
	ref, err := sched.New(noSkip{Fit: noderesources.NewFit()}, noderesources.FitManifest())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ref.Plugin().(sched.FilterSkipper); ok {
		t.Fatal("reference still skips")
	}
	check := func(name, pod string, skip bool) {
		t.Run(name, func(t *testing.T) { h.Pod(t, pod).CheckSkips(t, mod, ref, skip, false) })
	}
	check("fits everywhere", podReq("a", "1", ""), true)
	check("more cpu than n1 has", podReq("b", "3", ""), false)
	check("extended resource", podReq("c", "100m", `, nvidia.com/gpu: "1"`), false)
	// n1 full of pods: no pod slot left there.
	for i := range 3 {
		h.AddPod(t, `{metadata: {name: x`+strconv.Itoa(i)+`}, spec: {nodeName: n1, containers: [{name: c, image: i}]}}`)
	}
	check("n1 has no pod slot", podReq("d", "100m", ""), false)
	// A slot frees up: the bound is loose until a rescan, which happens
	// within rescanEvery attempts of a pod that exceeds it; answers stay
	// right throughout.
	h.RemovePod("default", "x0")
	check("slot freed, bound loose", podReq("e", "100m", ""), false)
	skipped := false
	for i := 0; i < 70 && !skipped; i++ {
		skipped = h.Pod(t, podReq("f"+strconv.Itoa(i), "100m", "")).SkippedFilter(t, mod)
	}
	if !skipped {
		t.Fatal("the bound was never recomputed after a pod left")
	}
	check("after the rescan", podReq("g", "100m", ""), true)
}
