package exec

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetNS runs start (an exec.Cmd's Start) on a thread that has joined
// the network namespace at path, so the forked child is born in it; ""
// runs start on the caller's thread. Go forks on the calling thread, and
// setns(CLONE_NEWNET) is allowed in a multithreaded process. The thread is
// locked and never unlocked, so it exits with its goroutine instead of
// returning to the scheduler in a foreign namespace.
func inNetNS(path string, start func() error) error {
	if path == "" {
		return start()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open network namespace %s: %w", path, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("join network namespace %s: %w", path, err)
			return
		}
		errc <- start()
	}()
	return <-errc
}
