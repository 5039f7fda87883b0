//go:build linux

package runtime

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
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
// the world. Arming and disarming are one timerfd_settime(2) each. The
// reader returns once; an instance whose watchdog fired is never reused.
type kernelWatchdog struct {
	fd   int
	cell unsafe.Pointer // the flag's 8 bytes; keeps their allocation alive
	done chan struct{}  // closed when the reader has returned

	mu     sync.Mutex
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
	waitInRead(<-tid)
	return w, nil
}

// read blocks in read(2) until the timer expires or close wakes it.
func (w *kernelWatchdog) read(tid chan<- int) {
	runtime.LockOSThread() // the thread ends with the goroutine
	tid <- unix.Gettid()
	for {
		// syscall.Syscall, not unix.Read: the buffer is not Go-managed
		// data the race detector should see written by this goroutine.
		_, _, errno := syscall.Syscall(syscall.SYS_READ, uintptr(w.fd), uintptr(w.cell), 8)
		if errno != syscall.EINTR {
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
		time.Sleep(50 * time.Microsecond)
	}
}

func (w *kernelWatchdog) settime(d time.Duration) {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		_ = unix.TimerfdSettime(w.fd, 0, &spec, nil)
	}
}

func (w *kernelWatchdog) arm(d time.Duration) { w.settime(max(d, time.Nanosecond)) }

func (w *kernelWatchdog) disarm() { w.settime(0) }

func (w *kernelWatchdog) fireNow() { w.settime(time.Nanosecond) }

// close wakes the reader if it still waits, then releases the timerfd.
func (w *kernelWatchdog) close() {
	w.fireNow()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		_ = unix.Close(w.fd)
	}
}
