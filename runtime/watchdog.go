package runtime

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero/api"
)

// A watchdog sets an instance's stop flag (the global the rewritten module
// checks at every loop header and function entry) when the current call's
// deadline passes, which makes the guest trap.
//
// The flag must get set even while the Go runtime is stopping the world:
// a goroutine running Wasm machine code cannot be preempted, so a garbage
// collection that starts while a guest spins waits for the guest, and a Go
// timer (which needs a running goroutine to set the flag) would never fire.
// The Linux watchdog therefore lets the kernel write the flag (see
// watchdog_linux.go); timerWatchdog, the fallback, uses a Go timer.
//
// arm, disarm and fireNow may be called from different goroutines; close
// is called once, after the last disarm.
type watchdog interface {
	// arm makes sure the flag gets set at some time between deadline and
	// latest unless the call ends first. A flag that an earlier arm left
	// to be set after its call ended is cleared first.
	arm(deadline, latest time.Time)
	// disarm ends the call. A lazy watchdog leaves its timer running, so
	// that the next calls need not set it again; arm clears what it sets.
	disarm()
	// fireNow sets the flag as soon as possible (the call was canceled).
	fireNow()
	// close releases the watchdog; fireNow afterwards does nothing.
	close()
}

// timerWatchdog sets the flag from a Go timer. It is used where the kernel
// watchdog is unavailable; a guest that spins while the Go runtime stops
// the world then delays that stop until the guest returns.
type timerWatchdog struct {
	stop  api.MutableGlobal
	timer *time.Timer

	mu     sync.Mutex
	closed bool
}

func newTimerWatchdog(stop api.MutableGlobal) *timerWatchdog {
	w := &timerWatchdog{stop: stop}
	w.timer = time.AfterFunc(time.Hour, w.fireNow)
	w.timer.Stop()
	return w
}

func (w *timerWatchdog) arm(deadline, _ time.Time) { w.timer.Reset(time.Until(deadline)) }

func (w *timerWatchdog) disarm() { w.timer.Stop() }

func (w *timerWatchdog) fireNow() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.stop.Set(1)
	}
}

func (w *timerWatchdog) close() {
	w.timer.Stop()
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// errNoCell means the storage of a global could not be located.
var errNoCell = errors.New("cannot locate the storage of the interrupt global")

// globalCell returns the address of the 8 bytes where the compiled code of
// mod reads the global stop. wazero does not export it: this follows
// wazero v1.12's internal structure (the global's module engine holds the
// instance's "opaque" context, which holds the value of every global),
// then finds the slot by setting marker values through the API, and fails
// with errNoCell if anything does not match, so a different wazero falls
// back to timerWatchdog instead of writing to the wrong place.
func globalCell(stop api.MutableGlobal) (unsafe.Pointer, error) {
	v := reflect.ValueOf(stop)
	if v.Kind() != reflect.Struct {
		return nil, errNoCell
	}
	gi := v.FieldByName("g")
	if !gi.IsValid() || gi.Kind() != reflect.Pointer || gi.IsNil() {
		return nil, errNoCell
	}
	inst := reflect.NewAt(gi.Type().Elem(), gi.UnsafePointer()).Elem()
	me := inst.FieldByName("Me")
	if !me.IsValid() || me.Kind() != reflect.Interface || me.IsNil() {
		return nil, errNoCell
	}
	eng := me.Elem()
	if eng.Kind() != reflect.Pointer || eng.IsNil() || eng.Elem().Kind() != reflect.Struct {
		return nil, errNoCell
	}
	opaque := eng.Elem().FieldByName("opaque")
	if !opaque.IsValid() || opaque.Kind() != reflect.Slice || opaque.Type().Elem().Kind() != reflect.Uint8 || opaque.Len() < 8 {
		return nil, errNoCell
	}
	base, size := opaque.UnsafePointer(), opaque.Len()
	find := func(marker uint64) int {
		stop.Set(marker)
		at := -1
		for off := 0; off+8 <= size; off += 8 {
			if *(*uint64)(unsafe.Add(base, off)) == marker {
				if at >= 0 {
					return -1 // ambiguous
				}
				at = off
			}
		}
		return at
	}
	at := find(0x5eed_cafe)
	if at < 0 || find(0x7a1e_b0a7) != at {
		stop.Set(0)
		return nil, fmt.Errorf("%w: no unique slot", errNoCell)
	}
	stop.Set(0)
	cell := unsafe.Add(base, at)
	if *(*uint64)(cell) != 0 {
		return nil, fmt.Errorf("%w: slot does not follow the global", errNoCell)
	}
	return cell, nil
}
