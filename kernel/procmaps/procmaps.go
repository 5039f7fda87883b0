// Package procmaps lists this process's memory mappings (/proc/self/maps)
// and passes advice about them to the kernel (madvise). The server and the
// agent use it for mappings they do not create themselves: Badger's mapped
// logs and the executable's own pages.
package procmaps

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mapping is one line of /proc/self/maps.
type Mapping struct {
	Start, End uint64
	Perms      string // e.g. "r-xp", "rw-s"
	Path       string // "" for anonymous mappings
}

// Self returns the process's current mappings.
func Self() ([]Mapping, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("procmaps: %w", err)
	}
	defer f.Close()
	var out []Mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := parse(sc.Text()); ok {
			out = append(out, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("procmaps: %w", err)
	}
	return out, nil
}

// parse reads "start-end perms offset dev inode [path]"; the path may
// contain spaces.
func parse(line string) (Mapping, bool) {
	f := strings.Fields(line)
	if len(f) < 5 {
		return Mapping{}, false
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return Mapping{}, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return Mapping{}, false
	}
	m := Mapping{Start: start, End: end, Perms: f[1]}
	if len(f) > 5 {
		if i := strings.Index(line, f[5]); i >= 0 {
			m.Path = line[i:]
		}
	}
	return m, true
}

// Advise applies madvise(advice) to the whole mapping.
func (m Mapping) Advise(advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.Start), uintptr(m.End-m.Start), uintptr(advice)); errno != 0 {
		return fmt.Errorf("madvise %#x-%#x: %w", m.Start, m.End, errno)
	}
	return nil
}
