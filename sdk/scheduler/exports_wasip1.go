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
