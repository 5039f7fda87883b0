//go:build wasip1

package scheduler

import "runtime/debug"

// A scheduler plugin's heap is mostly its node table, which lives as long
// as the instance; collecting only when the heap has grown fourfold keeps
// the collector (single-threaded and slow in Wasm) off the per-pod path.
func init() { debug.SetGCPercent(400) }
