package badger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// The store's write-ahead log makes a commit group durable with one
// write(2) and one fdatasync(2) on a preallocated, zero-filled segment, so
// the sync flushes data blocks only (no file-size or extent metadata). Badger
// itself is never synced on the write path: its memtable log is an mmap'd
// file whose msync costs far more than the data it carries (see RATIONALE).
// On Open, the groups still in the log are applied to Badger again at their
// own versions, which is idempotent; a segment is removed once every version
// in it is at or below a checkpoint (maintain.go), which synced Badger's
// memtable and value logs after those versions were committed to Badger.
//
// Segment file: <dir>/wal/<first version, 16 hex digits>.wal, half of
// Options.MemTableSize of records followed by zeros. Record: length u32 | crc32c u32 |
// payload; payload: version u64 | entry count u32 | entries; entry: op u8
// (0 set, 1 delete) | key length u32 | key | value length u32 | value. A zero
// length, a bad checksum or a version not above the previous record's ends
// the log (a torn tail of unacknowledged writes).

const (
	walHeader = 8
	walSuffix = ".wal"
)

var walTable = crc32.MakeTable(crc32.Castagnoli)

// wal is the committer's log. Only the committer goroutine calls append
// and rotate; Open calls replay before the committer starts.
type wal struct {
	dir string
	// segSize is the size of a new segment: half of Options.MemTableSize.
	segSize int64
	// rotations counts new segments, so the store knows when to look for
	// removable ones.
	rotations int
	// beforeRotate runs before a new segment replaces the current one.
	beforeRotate func()
	f            *os.File
	off          int64 // write offset in f
	size         int64 // size of f
	// segments lists the segment files in order, the last being f, with
	// the last version written to each.
	segments []walSegment
	buf      []byte
	// next is a zero-filled segment being prepared in the background, or nil.
	next chan preparedSegment
	// pace lets the committer steer the zero-filling of next.
	pace *zeroPace
}

// zeroPace paces the zero-filling of the next segment. Zero-filling at full
// speed puts tens of MiB in flight at once, and every fdatasync of the log
// (a device cache flush: this disk has no FUA) then waits for them: the
// commit pipeline stalled for ~100 ms each time. So the next segment is
// filled in small chunks, each written out before the next one is started,
// and only as far ahead of the current segment's fill level as needed.
type zeroPace struct {
	used  atomic.Int64  // bytes used in the current segment
	want  atomic.Int64  // the filler waits until used reaches this
	hurry atomic.Bool   // a rotation waits for the segment
	stop  atomic.Bool   // the log is closing: abandon the segment
	kick  chan struct{} // wakes the filler
}

func newZeroPace() *zeroPace { return &zeroPace{kick: make(chan struct{}, 1)} }

// advance records the current segment's fill level, waking the filler if
// it waits for it.
func (p *zeroPace) advance(used int64) {
	p.used.Store(used)
	if used >= p.want.Load() {
		p.wake()
	}
}

// wait blocks the filler until it may write the chunk at off of a segment
// of size bytes.
func (p *zeroPace) wait(off, size int64) {
	for {
		want := off - size/4
		p.want.Store(want)
		if p.hurry.Load() || p.stop.Load() || p.used.Load() >= want {
			p.want.Store(math.MaxInt64)
			return
		}
		<-p.kick
	}
}

func (p *zeroPace) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// zeroChunk is how much of a segment the filler writes out at a time; a
// log sync waits for at most about that much of it.
const zeroChunk = 256 << 10

type walSegment struct {
	path string
	last uint64
}

type preparedSegment struct {
	f    *os.File
	path string
	err  error
}

// walRecord is one decoded group.
type walRecord struct {
	version uint64
	entries []entry
}

// openWAL reads the log in dir (creating dir), returning the wal positioned
// for appending and the records to replay, in version order.
func openWAL(dir string, segSize int64) (*wal, []walRecord, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("wal: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*"+walSuffix))
	if err != nil {
		return nil, nil, fmt.Errorf("wal: %w", err)
	}
	// Leftover preparations (".tmp") are incomplete; remove them.
	tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	for _, t := range tmps {
		_ = os.Remove(t)
	}
	slices.Sort(names) // fixed-width hex names sort by first version
	w := &wal{dir: dir, segSize: segSize, pace: newZeroPace()}
	var records []walRecord
	var last uint64
	for i, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, nil, fmt.Errorf("wal: %w", err)
		}
		recs, end := decodeWAL(data, last)
		records = append(records, recs...)
		segLast := last
		if len(recs) > 0 {
			segLast = recs[len(recs)-1].version
			last = segLast
		}
		w.segments = append(w.segments, walSegment{path: name, last: segLast})
		if i == len(names)-1 {
			// Append after the last good record of the newest segment; a torn
			// tail is overwritten (zeroed first so a shorter record does not
			// leave a valid-looking remainder).
			f, err := os.OpenFile(name, os.O_RDWR, 0)
			if err != nil {
				return nil, nil, fmt.Errorf("wal: %w", err)
			}
			if tail := int64(len(data)) - int64(end); tail > 0 && !allZero(data[end:]) {
				if _, err := f.WriteAt(make([]byte, tail), int64(end)); err != nil {
					f.Close()
					return nil, nil, fmt.Errorf("wal: clear torn tail of %s: %w", name, err)
				}
				if err := unix.Fdatasync(int(f.Fd())); err != nil {
					f.Close()
					return nil, nil, fmt.Errorf("wal: %w", err)
				}
			}
			w.f, w.off, w.size = f, int64(end), int64(len(data))
		} else if !allZero(data[end:]) {
			// A later segment exists, so this one ended cleanly; garbage here
			// means the file was damaged.
			return nil, nil, fmt.Errorf("wal: segment %s is damaged at offset %d: %w", name, end, errdefs.ErrInvalid)
		}
	}
	w.pace.advance(w.off)
	w.prepare()
	if w.f == nil {
		// A fresh log: the first write needs the segment at once.
		w.pace.hurry.Store(true)
		w.pace.wake()
	}
	return w, records, nil
}

// decodeWAL decodes the records of one segment whose versions exceed
// after, returning them and the offset after the last good one.
func decodeWAL(data []byte, after uint64) ([]walRecord, int) {
	var recs []walRecord
	off := 0
	for off+walHeader <= len(data) {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n == 0 || n > len(data)-off-walHeader {
			break
		}
		payload := data[off+walHeader : off+walHeader+n]
		if crc32.Checksum(payload, walTable) != sum {
			break
		}
		rec, ok := decodeWALPayload(payload)
		if !ok || rec.version <= after {
			break
		}
		after = rec.version
		recs = append(recs, rec)
		off += walHeader + n
	}
	return recs, off
}

func decodeWALPayload(p []byte) (walRecord, bool) {
	if len(p) < 12 {
		return walRecord{}, false
	}
	rec := walRecord{version: binary.LittleEndian.Uint64(p)}
	count := binary.LittleEndian.Uint32(p[8:])
	p = p[12:]
	for range count {
		if len(p) < 5 {
			return walRecord{}, false
		}
		op := p[0]
		kl := int(binary.LittleEndian.Uint32(p[1:]))
		p = p[5:]
		if kl > len(p) {
			return walRecord{}, false
		}
		e := entry{key: p[:kl:kl], delete: op == 1}
		p = p[kl:]
		if len(p) < 4 {
			return walRecord{}, false
		}
		vl := int(binary.LittleEndian.Uint32(p))
		p = p[4:]
		if vl > len(p) {
			return walRecord{}, false
		}
		if !e.delete {
			e.value = p[:vl:vl]
		}
		p = p[vl:]
		rec.entries = append(rec.entries, e)
	}
	return rec, len(p) == 0
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// write appends one group's record to the log without syncing it; sync
// makes everything written so far durable. The committer writes and a
// second goroutine syncs, so the next group is staged while the disk works
// (beforeRotate, if set, must wait for that goroutine to finish its syncs:
// a rotation closes the file it syncs).
func (w *wal) write(version uint64, entries []entry) error {
	size := walHeader + 12
	for _, e := range entries {
		size += 9 + len(e.key) + len(e.value)
	}
	if w.f == nil || w.off+int64(size) > w.size {
		if w.beforeRotate != nil {
			w.beforeRotate()
		}
		if err := w.rotate(version, size); err != nil {
			return err
		}
	}
	b := slices.Grow(w.buf[:0], size)[:walHeader]
	b = binary.LittleEndian.AppendUint64(b, version)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		op := byte(0)
		if e.delete {
			op = 1
		}
		b = append(b, op)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e.key)))
		b = append(b, e.key...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e.value)))
		b = append(b, e.value...)
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)-walHeader))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[walHeader:], walTable))
	w.buf = b
	if _, err := w.f.WriteAt(b, w.off); err != nil {
		return fmt.Errorf("wal write: %w", err)
	}
	w.off += int64(len(b))
	w.segments[len(w.segments)-1].last = version
	w.pace.advance(w.off)
	return nil
}

// sync makes every record written so far durable with one fdatasync.
func (w *wal) sync() error {
	if w.f == nil { // nothing written yet
		return nil
	}
	if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
		return fmt.Errorf("wal sync: %w", err)
	}
	return nil
}

// append writes and syncs one group (tests and callers without a
// pipeline).
func (w *wal) append(version uint64, entries []entry) error {
	if err := w.write(version, entries); err != nil {
		return err
	}
	return w.sync()
}

// rotate starts a new segment whose first record has version first and
// needs size bytes.
func (w *wal) rotate(first uint64, size int) error {
	var p preparedSegment
	if w.next != nil && int64(size) <= w.segSize {
		w.pace.hurry.Store(true)
		w.pace.wake()
		p = <-w.next
		w.next = nil
	} else {
		p = prepareSegment(w.dir, max(w.segSize, int64(size)), nil)
	}
	if p.err != nil && int64(size) <= w.segSize { // e.g. a transient failure in the background
		p = prepareSegment(w.dir, w.segSize, nil)
	}
	if p.err != nil {
		return p.err
	}
	name := filepath.Join(w.dir, fmt.Sprintf("%016x%s", first, walSuffix))
	if err := os.Rename(p.path, name); err != nil {
		p.f.Close()
		return fmt.Errorf("wal: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		p.f.Close()
		return err
	}
	if w.f != nil {
		// Records written since the last sync must not be lost with the
		// file handle.
		if err := w.sync(); err != nil {
			p.f.Close()
			return err
		}
		w.f.Close()
	}
	fi, err := p.f.Stat()
	if err != nil {
		p.f.Close()
		return fmt.Errorf("wal: %w", err)
	}
	w.f, w.off, w.size = p.f, 0, fi.Size()
	w.pace.advance(0)
	w.segments = append(w.segments, walSegment{path: name, last: first - 1})
	w.rotations++
	w.prepare()
	return nil
}

// prepare starts zero-filling the next segment in the background.
func (w *wal) prepare() {
	if w.next != nil {
		return
	}
	ch := make(chan preparedSegment, 1)
	w.next = ch
	w.pace.hurry.Store(false)
	pace := w.pace
	go func() { ch <- prepareSegment(w.dir, w.segSize, pace) }()
}

// prepareSegment writes a zero-filled, synced file of size bytes under a
// temporary name. With a pace, it writes zeroChunk bytes at a time, each
// written out to the disk before the next (sync_file_range), and stays at
// most a quarter segment ahead of the current segment's fill level, until
// the pace says hurry: then someone waits for the segment, and the rest is
// written at full speed.
func prepareSegment(dir string, size int64, pace *zeroPace) preparedSegment {
	f, err := os.CreateTemp(dir, "segment-*.tmp")
	if err != nil {
		return preparedSegment{err: fmt.Errorf("wal: %w", err)}
	}
	zeros := make([]byte, zeroChunk)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if pace != nil {
			pace.wait(off, size)
			if pace.stop.Load() {
				f.Close()
				os.Remove(f.Name())
				return preparedSegment{err: fmt.Errorf("wal: log closed: %w", errdefs.ErrUnavailable)}
			}
		}
		n := min(int64(len(zeros)), size-off)
		_, err := f.Write(zeros[:n])
		if err == nil && pace != nil && !pace.hurry.Load() {
			err = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		}
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			return preparedSegment{err: fmt.Errorf("wal: preallocate: %w", err)}
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return preparedSegment{err: fmt.Errorf("wal: preallocate: %w", err)}
	}
	return preparedSegment{f: f, path: f.Name()}
}

// removeThrough deletes the segments (other than the current one) whose
// every version is at or below durable.
func (w *wal) removeThrough(durable uint64) (removed int, err error) {
	old := w.takeThrough(durable)
	return len(old), removeSegments(w.dir, old)
}

// takeThrough drops from the log the segments (other than the current one)
// whose every version is at or below durable, and returns them for
// removeSegments.
func (w *wal) takeThrough(durable uint64) []walSegment {
	n := 0
	for n < len(w.segments)-1 && w.segments[n].last <= durable {
		n++
	}
	old := slices.Clone(w.segments[:n])
	w.segments = slices.Delete(w.segments, 0, n)
	return old
}

// removeSegments deletes segment files that takeThrough dropped.
func removeSegments(dir string, segs []walSegment) error {
	for _, seg := range segs {
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: %w", err)
		}
	}
	if len(segs) > 0 {
		return syncDir(dir)
	}
	return nil
}

// close closes the current segment and stops a preparation (removing its
// file).
func (w *wal) close() error {
	if w.next != nil {
		w.pace.stop.Store(true)
		w.pace.wake()
		if p := <-w.next; p.err == nil {
			p.f.Close()
			os.Remove(p.path)
		}
		w.next = nil
	}
	if w.f != nil {
		return w.f.Close()
	}
	return nil
}

// syncDir makes directory entries (new and removed files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
