//go:build wasip1

package sdk

import "github.com/tugboat-dev/tugboat/hostapi"

//go:wasmexport tugboat_reconcile
func exportReconcile(ptr, size uint32) uint64 {
	in := input(ptr, size)
	out = reuse(out)
	switch {
	case registered == nil:
		out = appendReconcileResult(out, ReconcileResult{Error: errNoPlugin.Error()})
	case registered.ctl == nil:
		out = appendReconcileResult(out, ReconcileResult{Error: "sdk: module " + registered.manifest.Name + " is not a controller"})
	default:
		out = registered.callController(out, hostapi.ExportReconcile, in)
	}
	return finish(out)
}

//go:wasmexport tugboat_controller
func exportController(ptr, size uint32) uint64 {
	_ = input(ptr, size)
	out = reuse(out)
	if registered != nil && registered.ctl != nil {
		out = append(out, registered.ctl.specJSON...)
	}
	return result(out)
}
