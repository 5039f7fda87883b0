// Package nettest helps network tests stay inside network namespaces they
// create: each test "host" is a fresh namespace with no link out of the
// machine, removed (with everything in it) when the test ends, and the
// helpers only serve and dial inside such namespaces.
package nettest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/tugboat-dev/tugboat/kernel/network/bridge"
)

// RequireRoot skips the test unless it runs as root with the named tools
// on PATH.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("network namespace tests need %s on PATH", tool)
		}
	}
}

// NewHost creates a namespace standing for one node, with lo up, and
// removes it when the test ends.
func NewHost(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := bridge.NewNetNS(path); err != nil {
		t.Fatalf("new netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := bridge.DeleteNetNS(path); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	err := WithHandle(path, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		return h.LinkSetUp(lo)
	})
	if err != nil {
		t.Fatalf("lo up in %s: %v", name, err)
	}
	return path
}

// WithHandle calls f with a netlink handle in the namespace at path.
func WithHandle(path string, f func(*netlink.Handle) error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return f(h)
}

// LinkHosts joins two host namespaces with a veth pair named dev on both
// sides, carrying addresses a and b of a /24 that exists only between
// them.
func LinkHosts(t testing.TB, h1, h2, dev string, a, b netip.Addr) {
	t.Helper()
	ns2, err := netns.GetFromPath(h2)
	if err != nil {
		t.Fatal(err)
	}
	defer ns2.Close()
	err = WithHandle(h1, func(h *netlink.Handle) error {
		return h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dev}, PeerName: dev, PeerNamespace: netlink.NsFd(ns2)})
	})
	if err != nil {
		t.Fatalf("link %s: %v", dev, err)
	}
	for _, side := range []struct {
		ns string
		ip netip.Addr
	}{{h1, a}, {h2, b}} {
		err := WithHandle(side.ns, func(h *netlink.Handle) error {
			l, err := h.LinkByName(dev)
			if err != nil {
				return err
			}
			if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: side.ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
				return err
			}
			return h.LinkSetUp(l)
		})
		if err != nil {
			t.Fatalf("address %s on %s: %v", side.ip, dev, err)
		}
	}
}

// Serve answers every TCP connection to addr (port 0: any) inside
// namespace ns with reply and a newline, until the test ends. It returns
// the address it listens on.
func Serve(t testing.TB, ns string, addr netip.AddrPort, reply string) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	err := bridge.InNetNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, reply+"\n")
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// Dial connects from namespace ns to to and returns the line it reads.
func Dial(ns string, to netip.AddrPort) (string, error) {
	var line string
	err := bridge.InNetNS(ns, func() error {
		c, err := net.DialTimeout("tcp4", to.String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read from %s: %w", to, err)
		}
		return nil
	})
	return strings.TrimSpace(line), err
}
