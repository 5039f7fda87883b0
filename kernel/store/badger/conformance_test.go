package badger_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
	"github.com/tugboat-dev/tugboat/kernel/store/storetest"
)

// Settings the conformance stores are opened with; short intervals keep the
// bookmark and lease subtests fast.
const (
	conformanceBookmarkInterval   = 200 * time.Millisecond
	conformanceLeaseCheckInterval = 50 * time.Millisecond
	conformanceWatchBuffer        = 1024
)

func TestConformance(t *testing.T) {
	opts := []storetest.Option{
		storetest.WithBookmarks(conformanceBookmarkInterval),
		storetest.WithWatchBuffer(conformanceWatchBuffer),
	}
	t.Run("disk", func(t *testing.T) {
		storetest.Run(t, func(t testing.TB) store.Store {
			return openConformanceStore(t, tbadger.Options{Dir: t.TempDir()})
		}, opts...)
	})
	t.Run("memory", func(t *testing.T) {
		storetest.Run(t, func(t testing.TB) store.Store {
			return openConformanceStore(t, tbadger.Options{InMemory: true})
		}, opts...)
	})
}

// openConformanceStore opens a store with the settings storetest expects and
// closes it when the test ends (tolerating a store the suite closed itself).
func openConformanceStore(t testing.TB, opts tbadger.Options) *tbadger.Store {
	t.Helper()
	opts.MaxValueSize = storetest.MaxValueSize
	opts.BookmarkInterval = conformanceBookmarkInterval
	opts.LeaseCheckInterval = conformanceLeaseCheckInterval
	opts.WatchBuffer = conformanceWatchBuffer
	opts.Logger = slog.New(slog.DiscardHandler)
	s, err := tbadger.Open(opts)
	if err != nil {
		t.Fatalf("open badger store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("close badger store: %v", err)
		}
	})
	return s
}
