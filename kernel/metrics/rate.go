package metrics

import (
	"time"
)

// sample is one cumulative CPU reading of a container (or node) and its
// memory working set at the time of the reading.
type sample struct {
	at time.Time
	// cpu is the cumulative CPU time used, in core-nanoseconds.
	cpu uint64
	// started distinguishes a restarted container from the one sampled
	// before (its counter starts again from zero).
	started time.Time
	memory  uint64
	// node is the node the reading came from.
	node string
}

// rate returns the CPU use between two readings in nanocores (CPU
// nanoseconds per second), as metrics-server computes it: ok is false
// when the readings do not span a positive interval, or when the counter
// went backwards or the container restarted (no usable rate until the
// next reading).
func rate(prev, cur sample) (nanocores uint64, ok bool) {
	dt := cur.at.Sub(prev.at)
	if dt <= 0 || cur.cpu < prev.cpu || !cur.started.Equal(prev.started) {
		return 0, false
	}
	return uint64(float64(cur.cpu-prev.cpu) / dt.Seconds()), true
}
