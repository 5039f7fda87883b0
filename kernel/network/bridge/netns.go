package bridge

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Network namespaces are pinned by bind-mounting /proc/self/task/<tid>/ns/net
// of a thread that unshared its namespace onto a file, as `ip netns add`
// does; the namespace lives until the file is unmounted and no process is
// in it.

// NewNetNS creates a new, empty network namespace pinned at path (a file
// that must not exist). Only its loopback device exists, down.
func NewNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("pin netns %s: %w", path, errdefs.ErrAlreadyExists)
		}
		return fmt.Errorf("pin netns: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread never returns to the pool: it is left in the new
		// namespace and dies with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind netns to %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// DeleteNetNS unpins the namespace at path and removes the file; a
// missing path is not an error. The namespace (and every interface in it)
// is destroyed once no process remains in it.
func DeleteNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// InNetNS runs f on a thread that has joined the namespace at path (""
// means the caller's namespace, as seen by a fresh thread of this
// process). Sockets f creates stay in that namespace after f returns.
func InNetNS(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread dies with the goroutine instead of
		// returning to the pool in a foreign namespace.
		if path != "" {
			ns, err := netns.GetFromPath(path)
			if err != nil {
				errc <- fmt.Errorf("open netns %s: %w", path, err)
				return
			}
			defer ns.Close()
			if err := netns.Set(ns); err != nil {
				errc <- fmt.Errorf("enter netns %s: %w", path, err)
				return
			}
		}
		errc <- f()
	}()
	return <-errc
}
