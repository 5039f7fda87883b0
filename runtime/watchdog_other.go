//go:build !linux

package runtime

import "github.com/tetratelabs/wazero/api"

// newWatchdog returns the Go timer watchdog; only Linux has the kernel one.
func newWatchdog(stop api.MutableGlobal) (watchdog, error) {
	return newTimerWatchdog(stop), nil
}
