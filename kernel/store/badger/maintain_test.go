package badger

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/store"
)

func openTestStore(t *testing.T, dir string, memTable int64) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, MemTableSize: memTable, CompactionWindow: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func walSegments(t *testing.T, dir string) int {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "wal", "*"+walSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}

// TestWALTrimmedByCheckpoints writes far more log than one memtable's worth
// of segments while Badger's memtable (holding only keys and value
// pointers) never fills, so no SST is written: the log must still be
// trimmed, by checkpoints that sync Badger's memtable and value logs. The
// values must all be there after a reopen.
func TestWALTrimmedByCheckpoints(t *testing.T) {
	const (
		memTable = 16 << 20 // 8 MiB log segments, a 1 MiB Badger memtable
		valSize  = 32 << 10 // so 256 writes fill a segment, and ~4000 the memtable
		writes   = 2000     // 8 segments
	)
	dir := t.TempDir()
	s := openTestStore(t, dir, memTable)
	ctx := context.Background()
	val := make([]byte, valSize)
	rand.Read(val)
	maxSegs, n := 0, 0
	deadline := time.Now().Add(time.Minute)
	for ; n < writes || walSegments(t, dir) > 3; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("log still has %d segments after %d writes", walSegments(t, dir), n)
		}
		if _, err := s.Create(ctx, fmt.Sprintf("/registry/pods/ns/p%06d", n), val, store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if n%50 == 0 {
			maxSegs = max(maxSegs, walSegments(t, dir))
		}
	}
	if tables := s.db.Tables(); len(tables) > 0 {
		t.Fatalf("badger flushed %d tables; the test needs the log trimmed without flushes", len(tables))
	}
	t.Logf("%d writes, at most %d log segments, checkpointed at %x", n, maxSegs, s.checkpointed.Load())
	if maxSegs > 6 {
		t.Fatalf("log grew to %d segments of %d bytes before trimming", maxSegs, s.wal.segSize)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, memTable)
	defer s.Close()
	got, err := s.List(ctx, "/registry/pods/ns/", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.KVs) != n {
		t.Fatalf("reopened store lists %d pods, want %d", len(got.KVs), n)
	}
	for _, kv := range got.KVs {
		if string(kv.Value) != string(val) {
			t.Fatalf("%s has a different value after reopen", kv.Key)
		}
	}
}

// TestLogMappingsAdvisedRandom checks that Badger's mapped memtable and
// value logs are marked for random access (VmFlags "rr" in smaps), so a
// fault never triggers the device's readahead.
func TestLogMappingsAdvisedRandom(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, 1<<20)
	defer s.Close()
	ctx := context.Background()
	val := make([]byte, 2048)
	for i := range 50 {
		if _, err := s.Create(ctx, fmt.Sprintf("/registry/pods/ns/p%d", i), val, store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	abs, _ := filepath.Abs(dir)
	var mapped map[string]bool
	deadline := time.Now().Add(5 * time.Second)
	for {
		mapped = logMappings(t, abs)
		all := len(mapped) > 0
		for _, rr := range mapped {
			all = all && rr
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var kinds []string
	for path, rr := range mapped {
		if !rr {
			t.Errorf("mapping of %s is not advised random", path)
		}
		kinds = append(kinds, filepath.Ext(path))
	}
	if !strings.Contains(strings.Join(kinds, " "), ".mem") || !strings.Contains(strings.Join(kinds, " "), ".vlog") {
		t.Fatalf("expected mapped .mem and .vlog files in %s, found %v", dir, kinds)
	}
}

// logMappings reads /proc/self/smaps: for each mapped .mem or .vlog file
// under dir, whether its VmFlags include rr.
func logMappings(t *testing.T, dir string) map[string]bool {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	out := map[string]bool{}
	cur := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") { // a mapping's header
			cur = ""
			if i := strings.Index(line, " /"); i >= 0 && strings.HasPrefix(line[i+1:], dir+"/") && (strings.HasSuffix(line, ".mem") || strings.HasSuffix(line, ".vlog")) {
				p := line[i+1:]
				cur = p
				out[cur] = out[cur] || false
			}
			continue
		}
		if cur != "" && strings.HasPrefix(line, "VmFlags:") {
			out[cur] = strings.Contains(line+" ", " rr ")
		}
	}
	return out
}

// TestGroupsFitBadgerTransactions writes from many clients and compacts
// thousands of events meanwhile, with Badger's smallest memtable (1 MiB:
// at most 1638 entries per transaction). Every commit group, including
// event-log purges, must fit one Badger transaction.
func TestGroupsFitBadgerTransactions(t *testing.T) {
	s := openTestStore(t, t.TempDir(), 1<<20)
	defer s.Close()
	ctx := context.Background()
	write := func(prefix string, n int) error {
		errs := make(chan error, 64)
		for w := range 64 {
			go func() {
				for i := range n {
					if _, err := s.Create(ctx, fmt.Sprintf("/registry/configmaps/%s/w%02d-%05d", prefix, w, i), []byte("small"), store.WriteOptions{}); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range 64 {
			if err := <-errs; err != nil {
				return err
			}
		}
		return nil
	}
	if err := write("a", 100); err != nil {
		t.Fatal(err)
	}
	rev := s.Revision()
	done := make(chan error, 1)
	go func() { done <- write("b", 50) }()
	if err := s.Compact(ctx, rev); err != nil { // purges 6400 events
		t.Fatalf("compact: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("writes during compaction: %v", err)
	}
	got, err := s.List(ctx, "/registry/configmaps/", store.ListOptions{})
	if err != nil || len(got.KVs) != 64*150 {
		t.Fatalf("list: %d keys, err %v; want %d", len(got.KVs), err, 64*150)
	}
}

// TestOpenCreatesDirectory opens a store in a directory that does not exist
// yet, as a server's first start does.
func TestOpenCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "store")
	s := openTestStore(t, dir, 1<<20)
	if _, err := s.Create(context.Background(), "/registry/pods/ns/a", []byte("v"), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
