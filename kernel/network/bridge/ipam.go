package bridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// ipam hands out the addresses of a node's pod CIDR. Each allocation is a
// file named after the address holding the pod's UID, created with O_EXCL
// (as CNI's host-local plugin does), so the directory is the record: a
// restarted agent finds every address in use, and no address is ever
// given twice. Addresses are handed out round-robin (the last one is kept
// in a file) so a freed address is not reused at once. The network and
// broadcast addresses and the gateway (the first host address, the
// bridge's) are never given out. It is safe for concurrent use.
type ipam struct {
	dir     string
	cidr    netip.Prefix
	gateway netip.Addr
	first   uint32 // first assignable address
	last    uint32 // last assignable address

	mu sync.Mutex
}

const lastFile = "last_reserved_ip"

func newIPAM(dir string, cidr netip.Prefix) (*ipam, error) {
	if !cidr.IsValid() || !cidr.Addr().Is4() || cidr.Masked() != cidr || cidr.Bits() > 29 {
		return nil, fmt.Errorf("pod CIDR %s: want a masked IPv4 prefix of at most /29: %w", cidr, errdefs.ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam dir: %w", err)
	}
	base := num(cidr.Addr())
	size := uint32(1) << (32 - cidr.Bits())
	return &ipam{dir: dir, cidr: cidr, gateway: addr(base + 1), first: base + 2, last: base + size - 2}, nil
}

// lookup returns the address held by owner, if any.
func (m *ipam) lookup(owner string) (netip.Addr, bool, error) {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("read ipam dir: %w", err)
	}
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(m.dir, e.Name()))
		if err == nil && strings.TrimSpace(string(data)) == owner {
			return ip, true, nil
		}
	}
	return netip.Addr{}, false, nil
}

// owners lists the owners holding an address.
func (m *ipam) owners() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("read ipam dir: %w", err)
	}
	var out []string
	for _, e := range entries {
		if _, err := netip.ParseAddr(e.Name()); err != nil {
			continue
		}
		if data, err := os.ReadFile(filepath.Join(m.dir, e.Name())); err == nil {
			out = append(out, strings.TrimSpace(string(data)))
		}
	}
	return out, nil
}

// allocate returns owner's address, allocating one if it holds none. A
// full range is errdefs.ErrUnavailable.
func (m *ipam) allocate(owner string) (netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ip, ok, err := m.lookup(owner); err != nil || ok {
		return ip, err
	}
	start := m.first
	if data, err := os.ReadFile(filepath.Join(m.dir, lastFile)); err == nil {
		if ip, err := netip.ParseAddr(strings.TrimSpace(string(data))); err == nil && m.cidr.Contains(ip) {
			start = num(ip) + 1
		}
	}
	n := m.last - m.first + 1
	for i := range n {
		cand := m.first + (start-m.first+i)%n
		ip := addr(cand)
		f, err := os.OpenFile(filepath.Join(m.dir, ip.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return netip.Addr{}, fmt.Errorf("reserve %s: %w", ip, err)
		}
		_, werr := f.WriteString(owner)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			os.Remove(f.Name())
			return netip.Addr{}, fmt.Errorf("reserve %s: %w", ip, err)
		}
		if err := os.WriteFile(filepath.Join(m.dir, lastFile), []byte(ip.String()), 0o600); err != nil {
			return netip.Addr{}, fmt.Errorf("record last address: %w", err)
		}
		return ip, nil
	}
	return netip.Addr{}, fmt.Errorf("pod CIDR %s is full: %w", m.cidr, errdefs.ErrUnavailable)
}

// release frees owner's address, if it holds one.
func (m *ipam) release(owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ip, ok, err := m.lookup(owner)
	if err != nil || !ok {
		return err
	}
	if err := os.Remove(filepath.Join(m.dir, ip.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("release %s: %w", ip, err)
	}
	return nil
}

func num(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}
