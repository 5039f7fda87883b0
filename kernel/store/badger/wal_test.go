package badger

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

func walEntries(i int) []entry {
	return []entry{
		{key: fmt.Appendf(nil, "k%d", i), value: bytes.Repeat([]byte{byte(i)}, i*30)},
		{key: []byte("deleted"), delete: true},
	}
}

func checkRecords(t *testing.T, recs []walRecord, versions []uint64) {
	t.Helper()
	if len(recs) != len(versions) {
		t.Fatalf("got %d records, want %d", len(recs), len(versions))
	}
	for i, r := range recs {
		v := versions[i]
		if r.version != v {
			t.Fatalf("record %d has version %d, want %d", i, r.version, v)
		}
		want := walEntries(int(v))
		if len(r.entries) != len(want) {
			t.Fatalf("record %d: %d entries, want %d", i, len(r.entries), len(want))
		}
		for j, e := range r.entries {
			if !bytes.Equal(e.key, want[j].key) || !bytes.Equal(e.value, want[j].value) || e.delete != want[j].delete {
				t.Fatalf("record %d entry %d = %+v, want %+v", i, j, e, want[j])
			}
		}
	}
}

// TestWALReopenAndTornTail writes records across segments, reopens, then
// damages the tail record and checks that reopening drops exactly it and
// appends after the last good record.
func TestWALReopenAndTornTail(t *testing.T) {
	dir := t.TempDir()
	w, recs, err := openWAL(dir, 4096) // small segments: the records span several
	if err != nil || len(recs) != 0 {
		t.Fatalf("open empty: %v, %d records", err, len(recs))
	}
	var versions []uint64
	for i := 1; i <= 40; i++ {
		if err := w.append(uint64(i), walEntries(i)); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, uint64(i))
	}
	if len(w.segments) < 3 {
		t.Fatalf("%d segments; want the records to span several", len(w.segments))
	}
	last := w.segments[len(w.segments)-1].path
	tornAt := w.off - 5
	if err := w.close(); err != nil {
		t.Fatal(err)
	}

	w, recs, err = openWAL(dir, 4096)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, recs, versions)
	w.close()

	// Damage the last record's final bytes, as a crash mid-write would.
	f, err := os.OpenFile(last, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0xfe, 0xfd, 0xfc, 0xfb}, tornAt); err != nil {
		t.Fatal(err)
	}
	f.Close()
	w, recs, err = openWAL(dir, 4096)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, recs, versions[:len(versions)-1])
	// The torn record's version is reused by the next append (it was never
	// acknowledged), and everything reads back in order.
	if err := w.append(40, walEntries(40)); err != nil {
		t.Fatal(err)
	}
	if err := w.append(41, walEntries(41)); err != nil {
		t.Fatal(err)
	}
	w.close()
	w, recs, err = openWAL(dir, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	checkRecords(t, recs, append(versions, 41))
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmps) > 1 {
		t.Fatalf("leftover preparations: %v", tmps)
	}
}

// TestWALRemoveThrough keeps the segment being written and any segment
// holding a version above the durable one.
func TestWALRemoveThrough(t *testing.T) {
	dir := t.TempDir()
	w, _, err := openWAL(dir, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	for i := 1; i <= 40; i++ {
		if err := w.append(uint64(i), walEntries(i)); err != nil {
			t.Fatal(err)
		}
	}
	n := len(w.segments)
	durable := w.segments[1].last // everything in the first two segments
	removed, err := w.removeThrough(durable)
	if err != nil || removed != 2 {
		t.Fatalf("removeThrough(%d) removed %d, err %v; want 2 of %d", durable, removed, err, n)
	}
	if _, err := os.Stat(w.segments[0].path); err != nil {
		t.Fatalf("kept segment missing: %v", err)
	}
	removed, _ = w.removeThrough(1 << 62)
	if removed != n-3 || len(w.segments) != 1 {
		t.Fatalf("removeThrough(all) removed %d, %d left; want %d removed and the current one left", removed, len(w.segments), n-3)
	}
}

// TestWALZeroFillPace checks that the next segment is zero-filled only a
// quarter segment (plus the chunk being written) ahead of the current
// segment's fill level, follows that level, and finishes at once when a
// rotation is waiting for it.
func TestWALZeroFillPace(t *testing.T) {
	dir := t.TempDir()
	const size = 8 * zeroChunk
	pace := newZeroPace()
	done := make(chan preparedSegment, 1)
	go func() { done <- prepareSegment(dir, size, pace) }()

	// waitFilled returns once the filler waits for fill level want, and
	// checks how much it has written by then.
	waitFilled := func(want, written int64) {
		t.Helper()
		for pace.want.Load() != want {
			select {
			case p := <-done:
				t.Fatalf("filler finished early (err %v); want it to wait for fill level %d", p.err, want)
			case <-time.After(time.Millisecond):
			}
		}
		tmps, err := filepath.Glob(filepath.Join(dir, "*.tmp"))
		if err != nil || len(tmps) != 1 {
			t.Fatalf("preparations %v, err %v; want one", tmps, err)
		}
		fi, err := os.Stat(tmps[0])
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != written {
			t.Fatalf("waiting for fill level %d, the filler wrote %d bytes; want %d", want, fi.Size(), written)
		}
	}
	waitFilled(zeroChunk, size/4+zeroChunk)
	pace.advance(zeroChunk + 1)
	waitFilled(2*zeroChunk, size/4+2*zeroChunk)

	pace.hurry.Store(true)
	pace.wake()
	p := <-done
	if p.err != nil {
		t.Fatal(p.err)
	}
	defer p.f.Close()
	data, err := os.ReadFile(p.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != size || !allZero(data) {
		t.Fatalf("prepared segment has %d bytes (all zero: %v); want %d zeros", len(data), allZero(data), size)
	}
}

// TestWALZeroFillStop checks that closing the log abandons a segment being
// filled instead of finishing it: the filler ends and removes its file.
func TestWALZeroFillStop(t *testing.T) {
	dir := t.TempDir()
	const size = 8 * zeroChunk
	pace := newZeroPace()
	done := make(chan preparedSegment, 1)
	go func() { done <- prepareSegment(dir, size, pace) }()
	for pace.want.Load() == 0 { // not waiting yet
		select {
		case p := <-done:
			t.Fatalf("filler finished early (err %v); want it to wait", p.err)
		case <-time.After(time.Millisecond):
		}
	}
	pace.stop.Store(true)
	pace.wake()
	if p := <-done; !errors.Is(p.err, errdefs.ErrUnavailable) {
		t.Fatalf("stopped filler returned err %v; want ErrUnavailable", p.err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmps) != 0 {
		t.Fatalf("stopped filler left %v", tmps)
	}
}
