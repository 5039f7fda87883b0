//go:build linux

package runtime

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero/api"
	"golang.org/x/sys/unix"
)

// kernelWatchdog makes the kernel write the stop flag. Each instance has a
// timerfd and a goroutine (on its own thread) blocked in read(2) on it,
// with the flag's storage as the read buffer: when the timer expires the
// kernel copies the expiration count (non-zero) straight into the flag,
// with no Go code involved, so it works while the Go runtime is stopping
// the world.
//
// The watchdog is lazy, because a timerfd_settime(2) costs about as much
// as a whole short guest call: a call's deadline is enforced by any
// expiry between the deadline and a little later (see instance.begin), so
// the timer set for one call also serves the calls that follow while
// their deadlines fall before it, and disarm does nothing. When the timer
// expires between calls the reader reads again, and the next arm clears
// the flag once the reader is back in read(2).
type kernelWatchdog struct {
	fd    int
	tid   int            // the reader's thread
	cell  unsafe.Pointer // the flag's 8 bytes; keeps their allocation alive
	done  chan struct{}  // closed when the reader has returned
	reads atomic.Uint64  // read(2) calls the reader has come back from
	// closing tells the reader to stop at its next wake-up.
	closing atomic.Bool

	mu     sync.Mutex
	expiry time.Time // when the timer expires; zero when not set
	seen   uint64    // reads when the flag was last cleared
	closed bool
}

// newWatchdog returns a kernel watchdog for stop, or a timerWatchdog when
// the kernel one cannot be set up.
func newWatchdog(stop api.MutableGlobal) (watchdog, error) {
	cell, err := globalCell(stop)
	if err != nil {
		return newTimerWatchdog(stop), nil
	}
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watchdog: timerfd_create: %w", err)
	}
	w := &kernelWatchdog{fd: fd, cell: cell, done: make(chan struct{})}
	tid := make(chan int, 1)
	go w.read(tid)
	w.tid = <-tid
	waitInRead(w.tid)
	return w, nil
}

// read blocks in read(2) until the timer expires, again and again until
// close.
func (w *kernelWatchdog) read(tid chan<- int) {
	runtime.LockOSThread() // the thread ends with the goroutine
	tid <- unix.Gettid()
	for {
		// syscall.Syscall, not unix.Read: the buffer is not Go-managed
		// data the race detector should see written by this goroutine.
		_, _, errno := syscall.Syscall(syscall.SYS_READ, uintptr(w.fd), uintptr(w.cell), 8)
		if errno == syscall.EINTR {
			continue
		}
		w.reads.Add(1)
		if errno != 0 || w.closing.Load() {
			break
		}
	}
	close(w.done)
}

// waitInRead waits (briefly) until thread tid sleeps in read(2), so that
// no arm happens while the reader could still be stopped by the Go
// runtime before reaching the kernel. It gives up silently where procfs
// does not say.
func waitInRead(tid int) {
	path := "/proc/self/task/" + strconv.Itoa(tid) + "/syscall"
	want := strconv.Itoa(unix.SYS_READ) + " "
	for i := 0; i < 2000; i++ {
		b, err := os.ReadFile(path)
		if err != nil || strings.HasPrefix(string(b), want) {
			return
		}
		if i < 50 {
			// The reader usually gets there within tens of µs; a Go
			// sleep that short often oversleeps by a millisecond on a
			// busy machine, which made new instances slow.
			runtime.Gosched()
			continue
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// settime sets the timer to expire after d (> 0); w.mu held. The expiry
// it records is never later than the kernel's.
func (w *kernelWatchdog) settime(d time.Duration) {
	if w.closed {
		return
	}
	w.expiry = time.Now().Add(d)
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	_ = unix.TimerfdSettime(w.fd, 0, &spec, nil)
}

func (w *kernelWatchdog) arm(deadline, latest time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	flag := (*uint64)(w.cell)
	if atomic.LoadUint64(flag) != 0 || !w.expiry.IsZero() && !time.Now().Before(w.expiry) {
		// The timer expired after the last call (the kernel may still be
		// writing the flag): wait until the reader has come back and is
		// in read(2) again, then clear the flag.
		for w.reads.Load() == w.seen {
			runtime.Gosched()
		}
		waitInRead(w.tid)
		w.seen = w.reads.Load()
		atomic.StoreUint64(flag, 0)
		w.expiry = time.Time{}
	}
	if !w.expiry.IsZero() && !w.expiry.Before(deadline) && !w.expiry.After(latest) {
		return // the running timer serves this call
	}
	w.settime(max(time.Until(latest), time.Nanosecond))
}

func (w *kernelWatchdog) disarm() {}

func (w *kernelWatchdog) fireNow() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.settime(time.Nanosecond)
}

// close wakes the reader if it still waits, then releases the timerfd.
func (w *kernelWatchdog) close() {
	w.closing.Store(true)
	w.fireNow()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		_ = unix.Close(w.fd)
	}
}
