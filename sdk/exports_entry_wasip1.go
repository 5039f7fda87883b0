//go:build wasip1

package sdk

import "github.com/tugboat-dev/tugboat/hostapi"

//go:wasmexport tugboat_filter
func exportFilter(ptr, size uint32) uint64 { return serveEntry(hostapi.ExportFilter, ptr, size) }

//go:wasmexport tugboat_score
func exportScore(ptr, size uint32) uint64 { return serveEntry(hostapi.ExportScore, ptr, size) }

// serveEntry passes one call to the registered Entry.
func serveEntry(export string, ptr, size uint32) uint64 {
	in := input(ptr, size)
	if entry == nil {
		out = append(reuse(out), "sdk: no plugin registered for "+export...)
		return finish(out)
	}
	return finish(entry.Serve(export, in))
}
