//go:build wasip1

package scheduler

import "runtime/debug"

// A scheduler plugin's heap is mostly its node table, which lives as long
// as the instance, and each call allocates little. Go's collector is
// single-threaded and slow in Wasm (with the default GOGC it took 30% of
// the guests' time in the scheduler benchmark), so collect only when the
// heap has grown elevenfold, or when it nears 384 MiB (below the default
// 512 MiB instance limit).
func init() {
	debug.SetGCPercent(1000)
	debug.SetMemoryLimit(384 << 20)
}
