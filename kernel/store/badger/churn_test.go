package badger_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/tugboat-dev/tugboat/kernel/store"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

// diskBytes is the space the files under dir occupy (allocated blocks, so
// sparse preallocated logs count only what is written).
func diskBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDiskBoundedUnderChurn rewrites a small set of keys many times over,
// compacting as it goes, and checks that the data directory stays a small
// multiple of the live data instead of growing with the history.
func TestDiskBoundedUnderChurn(t *testing.T) {
	const (
		keys    = 32
		valSize = 4 << 10
		rounds  = 1200 // 32 keys x 1200 rounds x 4 KiB = 150 MiB written (L0 compaction lag alone can hold ~30 MiB)
		memTab  = 1 << 20
	)
	dir := t.TempDir()
	s, err := tbadger.Open(tbadger.Options{Dir: dir, MemTableSize: memTab, CompactionWindow: -1, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	val := make([]byte, valSize)
	var peak int64
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, keys)
		for k := 0; k < keys; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("/registry/configmaps/churn/k%02d", k)
				var err error
				if round == 0 {
					_, err = s.Create(ctx, key, val, store.WriteOptions{})
				} else {
					_, err = s.Update(ctx, key, val, 0, store.WriteOptions{})
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if round%20 == 19 {
			if err := s.Compact(ctx, s.Revision()); err != nil {
				t.Fatalf("compact: %v", err)
			}
			peak = max(peak, diskBytes(t, dir))
		}
	}
	written := int64(keys * rounds * valSize)
	live := int64(keys * valSize)
	t.Logf("written %d MiB, live %d KiB, peak disk %.1f MiB", written>>20, live>>10, float64(peak)/(1<<20))
	// Bounded: well under the history written (a store that kept every
	// version would hold all of it).
	if peak > written/3 {
		t.Fatalf("disk use peaked at %d bytes after writing %d: history is not being discarded", peak, written)
	}
	got, err := s.List(ctx, "/registry/configmaps/churn/", store.ListOptions{})
	if err != nil || len(got.KVs) != keys {
		t.Fatalf("list after churn: %d keys, err %v", len(got.KVs), err)
	}
}
