package badger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	bdb "github.com/dgraph-io/badger/v4"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// purgeChunk bounds how many event-log entries one commit group deletes:
// at most 4096 and half a group's entries.
func (s *Store) purgeChunk() int { return min(4096, s.opts.groupEntries()/2) }

// leaseLoop revokes expired leases, deleting their keys.
func (s *Store) leaseLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.LeaseCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		for _, id := range s.leases.Expired() {
			err := s.revoke(context.Background(), id, true)
			if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				if !errors.Is(err, errdefs.ErrUnavailable) {
					s.log.Error("revoke expired lease", "lease", id, "err", err)
				}
				return
			}
		}
	}
}

// compactLoop compacts, every CompactionWindow, to the revision the store
// had one window earlier, so history spans one to two windows.
func (s *Store) compactLoop() {
	defer s.bg.Done()
	if s.opts.CompactionWindow < 0 {
		return
	}
	t := time.NewTicker(s.opts.CompactionWindow)
	defer t.Stop()
	mark := s.Revision()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		if mark > s.CompactedRevision() {
			if err := s.Compact(context.Background(), mark); err != nil && !errors.Is(err, errdefs.ErrUnavailable) {
				s.log.Error("compact", "revision", mark, "err", err)
			}
		}
		mark = s.Revision()
	}
}

// Compact discards history at and before rev.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	cur, done := s.Revision(), s.CompactedRevision()
	switch {
	case rev <= 0:
		return fmt.Errorf("compact to %d: %w", rev, errdefs.ErrInvalid)
	case rev > cur:
		return fmt.Errorf("compact to %d, current is %d: %w", rev, cur, errdefs.ErrFutureRevision)
	case rev < done:
		return fmt.Errorf("compact to %d, already compacted at %d: %w", rev, done, errdefs.ErrGone)
	case rev == done:
		return nil
	}
	if err := s.submit(ctx, &request{kind: opCompact, ifRev: rev}); err != nil {
		return fmt.Errorf("compact to %d: %w", rev, err)
	}
	err := s.purgeEvents(ctx, s.CompactedRevision())
	select { // values of versions compacted away are value-log garbage now
	case s.gcKick <- struct{}{}:
	default:
	}
	return err
}

// purgeEvents deletes event-log entries at or below rev, in chunks, so a
// large compaction never makes one huge commit group. It scans from the
// start of the log, so leftovers of an interrupted purge are found too.
func (s *Store) purgeEvents(ctx context.Context, rev int64) error {
	for {
		revs, err := s.eventRevs(rev, s.purgeChunk())
		if err != nil {
			return fmt.Errorf("purge events to %d: %w", rev, err)
		}
		if len(revs) == 0 {
			return nil
		}
		if err := s.submit(ctx, &request{kind: opPurgeEvents, revs: revs}); err != nil {
			return fmt.Errorf("purge events to %d: %w", rev, err)
		}
	}
}

// eventRevs lists up to n retained event-log revisions at or below upto.
func (s *Store) eventRevs(upto int64, n int) ([]int64, error) {
	txn := s.db.NewTransactionAt(readTs(s.Revision()), false)
	defer txn.Discard()
	it := txn.NewIterator(bdb.IteratorOptions{Prefix: []byte{pfxEvent}})
	defer it.Close()
	var revs []int64
	for it.Rewind(); it.Valid() && len(revs) < n; it.Next() {
		rev, err := decodeU64(it.Item().Key()[1:])
		if err != nil {
			return nil, err
		}
		if rev > upto {
			break
		}
		revs = append(revs, rev)
	}
	return revs, nil
}

// history reads retained events from the event log for the watch hub.
type history struct{ s *Store }

// Events returns the events under prefix in (after, upto].
func (h history) Events(ctx context.Context, prefix string, after, upto int64) ([]store.Event, error) {
	s := h.s
	if after < s.CompactedRevision() {
		return nil, fmt.Errorf("history after %d, compacted at %d: %w", after, s.CompactedRevision(), errdefs.ErrGone)
	}
	txn := s.db.NewTransactionAt(readTs(upto), false)
	defer txn.Discard()
	it := txn.NewIterator(bdb.IteratorOptions{Prefix: []byte{pfxEvent}})
	defer it.Close()
	if c := s.CompactedRevision(); after < c {
		return nil, fmt.Errorf("history after %d, compacted at %d: %w", after, c, errdefs.ErrGone)
	}
	var out []store.Event
	next := after + 1
	for it.Seek(eventKey(after + 1)); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		item := it.Item()
		rev, err := decodeU64(item.Key()[1:])
		if err != nil {
			return nil, err
		}
		if rev > upto {
			break
		}
		if rev != next {
			return nil, fmt.Errorf("history: revision %d missing: %w", next, errdefs.ErrGone)
		}
		next++
		raw, err := item.ValueCopy(nil)
		if err != nil {
			return nil, err
		}
		typ, key, err := decodeEvent(raw)
		if err != nil {
			return nil, fmt.Errorf("history revision %d: %w", rev, err)
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		ev, err := s.eventAt(typ, key, rev, item.Version())
		if err != nil {
			return nil, fmt.Errorf("history revision %d: %w", rev, err)
		}
		out = append(out, ev)
	}
	if next != upto+1 {
		return nil, fmt.Errorf("history: revisions %d..%d missing: %w", next, upto, errdefs.ErrGone)
	}
	return out, nil
}

// eventAt rebuilds the event of key at rev from the versioned data keys;
// ver is the version of rev's commit group, in which key was written once.
func (s *Store) eventAt(typ store.EventType, key string, rev int64, ver uint64) (store.Event, error) {
	ev := store.Event{Type: typ, Revision: rev}
	var prev store.KV
	if typ != store.Added {
		txn := s.db.NewTransactionAt(ver-1, false)
		p, err := getAt(txn, key)
		txn.Discard()
		if err != nil {
			return ev, fmt.Errorf("value of %s before %d: %w", key, rev, err)
		}
		prev, ev.PrevValue = p, p.Value
	}
	if typ == store.Deleted {
		ev.KV = prev
		return ev, nil
	}
	txn := s.db.NewTransactionAt(ver, false)
	defer txn.Discard()
	kv, err := getAt(txn, key)
	if err != nil {
		return ev, fmt.Errorf("value of %s at %d: %w", key, rev, err)
	}
	if kv.ModRevision != rev {
		return ev, fmt.Errorf("value of %s at %d has revision %d: %w", key, rev, kv.ModRevision, errdefs.ErrGone)
	}
	ev.KV = kv
	return ev, nil
}
