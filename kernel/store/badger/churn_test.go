package badger_test

import (
	"context"
	"errors"
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
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking (value-log collection, log trimming)
		}
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
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
// compacting as it goes, and checks that disk use levels off instead of
// growing with the history: values live in Badger's value log, whose
// garbage is found only as LSM compactions drop old versions, so some lag
// (a few memtables' worth of writes) is expected, but the second half of
// the run must not need more room than the first.
func TestDiskBoundedUnderChurn(t *testing.T) {
	const (
		keys    = 32
		valSize = 4 << 10
		rounds  = 2400 // 32 keys x 2400 rounds x 4 KiB = 300 MiB written
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
	var peak [2]int64 // in each half of the run
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
			half := round * 2 / rounds
			peak[half] = max(peak[half], diskBytes(t, dir))
		}
	}
	written := int64(keys * rounds * valSize)
	live := int64(keys * valSize)
	t.Logf("written %d MiB, live %d KiB, peak disk %.1f MiB in the first half, %.1f MiB in the second", written>>20, live>>10, float64(peak[0])/(1<<20), float64(peak[1])/(1<<20))
	// Bounded: the second half needs no more room than the first (plus a
	// memtable's worth of slack), and all of it is far below the history
	// written (a store that kept every version would hold all of it).
	if peak[1] > peak[0]+4*memTab || peak[1] > written/4 {
		t.Fatalf("disk use peaked at %d bytes in the first half and %d in the second, after writing %d: history is not being discarded", peak[0], peak[1], written)
	}
	got, err := s.List(ctx, "/registry/configmaps/churn/", store.ListOptions{})
	if err != nil || len(got.KVs) != keys {
		t.Fatalf("list after churn: %d keys, err %v", len(got.KVs), err)
	}
}
