package storetest_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
	"github.com/tugboat-dev/tugboat/kernel/store/storetest"
	"time"
)

type mutant struct {
	store.Store
	m string
}

func (s *mutant) Get(ctx context.Context, key string) (store.KV, error) {
	kv, err := s.Store.Get(ctx, key)
	if s.m == "dropLease" {
		kv.Lease = 0
	}
	return kv, err
}

func (s *mutant) List(ctx context.Context, prefix string, o store.ListOptions) (store.ListResult, error) {
	switch s.m {
	case "listIgnoresRevision":
		r := o.Revision
		o.Revision = 0
		res, err := s.Store.List(ctx, prefix, o)
		if r != 0 {
			res.Revision = r
		}
		return res, err
	case "moreFlag":
		res, err := s.Store.List(ctx, prefix, o)
		res.More = o.Limit > 0 && len(res.KVs) == o.Limit
		return res, err
	case "startExclusive":
		if o.StartKey != "" {
			o.StartKey += "\x00"
		}
	case "sloppyPrefix":
		if len(prefix) > len(store.Root) {
			prefix = strings.TrimSuffix(prefix, "/")
		}
	case "listIgnoresGone":
		res, err := s.Store.List(ctx, prefix, o)
		if errors.Is(err, errdefs.ErrGone) {
			o.Revision = 0
			return s.Store.List(ctx, prefix, o)
		}
		return res, err
	}
	return s.Store.List(ctx, prefix, o)
}

func (s *mutant) Update(ctx context.Context, key string, v []byte, ifRev int64, o store.WriteOptions) (store.KV, error) {
	kv, err := s.Store.Update(ctx, key, v, ifRev, o)
	if s.m == "updateCreateRev" {
		kv.CreateRevision = kv.ModRevision
	}
	return kv, err
}

func (s *mutant) Create(ctx context.Context, key string, v []byte, o store.WriteOptions) (store.KV, error) {
	kv, err := s.Store.Create(ctx, key, v, o)
	if s.m == "existsIsConflict" && errors.Is(err, errdefs.ErrAlreadyExists) {
		err = errdefs.ErrConflict
	}
	return kv, err
}

func (s *mutant) Delete(ctx context.Context, key string, ifRev int64) (store.KV, int64, error) {
	kv, rev, err := s.Store.Delete(ctx, key, ifRev)
	if s.m == "deleteNoPrev" {
		kv.Value = nil
	}
	return kv, rev, err
}

func (s *mutant) KeepAlive(ctx context.Context, id int64) error {
	if s.m == "keepAliveNoop" {
		return nil
	}
	return s.Store.KeepAlive(ctx, id)
}

func (s *mutant) Revoke(ctx context.Context, id int64) error {
	if s.m == "revokeNoop" {
		return nil
	}
	return s.Store.Revoke(ctx, id)
}

func (s *mutant) Watch(ctx context.Context, prefix string, after int64) (store.Watcher, error) {
	switch s.m {
	case "watchOffByOne":
		if after > 0 {
			after++
		}
	case "sloppyWatchPrefix":
		if len(prefix) > len(store.Root) {
			prefix = strings.TrimSuffix(prefix, "/")
		}
	case "watchIgnoresGone":
		w, err := s.Store.Watch(ctx, prefix, after)
		if errors.Is(err, errdefs.ErrGone) {
			return s.Store.Watch(ctx, prefix, s.Store.CompactedRevision())
		}
		return w, err
	}
	w, err := s.Store.Watch(ctx, prefix, after)
	if err != nil {
		return nil, err
	}
	mw := &mwatch{Watcher: w, ch: make(chan store.Event, 10000), m: s.m}
	go mw.run()
	return mw, nil
}

type mwatch struct {
	store.Watcher
	ch chan store.Event
	m  string
}

func (w *mwatch) Events() <-chan store.Event { return w.ch }
func (w *mwatch) Err() error {
	if w.m == "stopErr" && w.Watcher.Err() == nil {
		return errdefs.ErrUnavailable
	}
	return w.Watcher.Err()
}
func (w *mwatch) run() {
	defer close(w.ch)
	n := 0
	for ev := range w.Watcher.Events() {
		n++
		switch w.m {
		case "noPrevValue":
			ev.PrevValue = nil
		case "dropBookmarks":
			if ev.Type == store.Bookmark {
				continue
			}
		case "duplicate":
			if n%37 == 0 {
				w.ch <- ev
			}
		case "deletedNoValue":
			if ev.Type == store.Deleted {
				ev.KV.Value = ev.PrevValue[:0]
			}
		}
		w.ch <- ev
	}
}

func TestMutant(t *testing.T) {
	m := os.Getenv("MUTANT")
	if m == "" {
		t.Skip()
	}
	storetest.Run(t, func(t testing.TB) store.Store {
		o := tbadger.Options{InMemory: true, MaxValueSize: storetest.MaxValueSize, BookmarkInterval: 200 * time.Millisecond,
			LeaseCheckInterval: 50 * time.Millisecond, WatchBuffer: 256, Logger: slog.New(slog.DiscardHandler)}
		if m == "bigValues" {
			o.MaxValueSize = 2 * storetest.MaxValueSize
		}
		s, err := tbadger.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return &mutant{Store: s, m: m}
	}, storetest.WithBookmarks(200*time.Millisecond), storetest.WithWatchBuffer(256))
}
