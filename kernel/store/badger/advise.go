package badger

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tugboat-dev/tugboat/kernel/procmaps"
)

// adviseLogMappings marks Badger's memory-mapped logs under prefix (its
// data directory with a trailing separator) MADV_RANDOM, turning off the
// kernel's fault-time readahead for them. Badger appends to these sparse
// files (memtable .mem files and .vlog files) through the mapping, and on a
// disk with a large read_ahead_kb (8 MiB here) every fault that reaches the
// readahead window maps and zero-fills the next window in the faulting
// thread: Badger's single write goroutine, so every commit stalled ~20 ms
// once per 8 MiB written. The files are only ever read by offset, so
// readahead buys nothing. Advising a mapping again is harmless, and needed:
// Badger may map a file anew at the same address.
func adviseLogMappings(prefix string) {
	maps, err := procmaps.Self()
	if err != nil {
		return
	}
	for _, m := range maps {
		if strings.HasPrefix(m.Path, prefix) && (strings.HasSuffix(m.Path, ".mem") || strings.HasSuffix(m.Path, ".vlog")) {
			_ = m.Advise(unix.MADV_RANDOM)
		}
	}
}

// adviseInterval is how often the mappings are looked after while the
// store is being written (new files appear only then).
const adviseInterval = 20 * time.Millisecond

// adviseLoop looks after Badger's mapped logs until closing, every
// interval in which the store was written or a file appeared in the data
// directory, and once more after that (a file is created before it is
// mapped): it advises their mappings (adviseLogMappings) and pushes their
// dirty pages to the disk (logPusher).
func (s *Store) adviseLoop(every time.Duration) {
	defer s.bg.Done()
	prefix := s.opts.Dir
	if abs, err := filepath.Abs(prefix); err == nil {
		prefix = abs
	}
	prefix += string(os.PathSeparator)
	t := time.NewTicker(every)
	defer t.Stop()
	p := &logPusher{dir: s.opts.Dir, files: map[string]*os.File{}}
	defer p.close()
	lastRev, lastMod, again := int64(-1), time.Time{}, false
	for {
		rev, mod := s.committed.Load(), dirModTime(s.opts.Dir)
		if changed := rev != lastRev || !mod.Equal(lastMod); changed || again {
			if !mod.Equal(lastMod) {
				p.refresh()
			}
			lastRev, lastMod, again = rev, mod, changed
			adviseLogMappings(prefix)
			p.push()
		}
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
	}
}

// logPusher writes out the dirty pages of Badger's newest value log and
// its memtable logs a few milliseconds' worth at a time. Badger never syncs
// them on the write path, so without it they reach the disk in bursts: when
// a checkpoint syncs them, or when the kernel's writeback wakes up. On this
// disk a sync of our own log waits for whatever else is in flight (it is a
// device cache flush), so a burst of tens of MiB stalls every commit behind
// it; a steady trickle costs each sync a little instead.
type logPusher struct {
	dir   string
	files map[string]*os.File // the files pushed, by path
}

// refresh opens the newest .vlog and every .mem file, closing the others.
func (p *logPusher) refresh() {
	want := map[string]bool{}
	vlogs, _ := filepath.Glob(filepath.Join(p.dir, "*.vlog"))
	if len(vlogs) > 0 {
		want[slices.Max(vlogs)] = true // fixed-width names
	}
	mems, _ := filepath.Glob(filepath.Join(p.dir, "*.mem"))
	for _, m := range mems {
		want[m] = true
	}
	for path, f := range p.files {
		if !want[path] {
			f.Close()
			delete(p.files, path)
		}
	}
	for path := range want {
		if p.files[path] == nil {
			if f, err := os.Open(path); err == nil {
				p.files[path] = f
			}
		}
	}
}

// push writes out the files' dirty pages and waits for them.
func (p *logPusher) push() {
	for _, f := range p.files {
		_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	}
}

func (p *logPusher) close() {
	for _, f := range p.files {
		f.Close()
	}
}

func dirModTime(dir string) time.Time {
	fi, err := os.Stat(dir)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
