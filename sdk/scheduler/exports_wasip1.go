//go:build wasip1

package scheduler

import (
	"unsafe"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// relevanceOut holds the last relevance answer until the host has read it.
var relevanceOut []byte

//go:wasmexport tugboat_sched_relevance
func exportRelevance() uint64 {
	m, err := Registered()
	if err != nil {
		return 0 // no answer: always relevant; configure reports the error
	}
	relevanceOut = m.appendRelevance(relevanceOut[:0])
	return hostapi.Pack(uint32(uintptr(unsafe.Pointer(&relevanceOut[0]))), uint32(len(relevanceOut)))
}

// inputReuse is what the guest promises for hostapi.ExportInputReuse:
// package sdk's tugboat_alloc keeps its buffer across calls until a
// larger one is asked for, and drops it after a call only beyond 1 MiB.
// (The promise lives here because scheduler modules are the ones called
// per pod; it holds for every module built with package sdk.)
const inputReuse = 64 << 10

//go:wasmexport tugboat_input_reuse
func exportInputReuse() int32 { return inputReuse }
