package badger

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	bdb "github.com/dgraph-io/badger/v4"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/lease"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

type opKind uint8

const (
	opCreate opKind = iota + 1
	opUpdate
	opDelete
	opGrant       // lease: id, ttl
	opRevoke      // lease: id; deletes attached keys
	opCompact     // ifRev: the revision to compact to
	opPurgeEvents // revs: h/ entries to delete
)

// request is one write waiting for the committer. Results are set by the
// committer before done is closed.
type request struct {
	kind opKind
	key  string
	// value is the written value behind recordHeadroom free bytes
	// (withHeadroom), for creates and updates.
	value []byte
	ifRev int64
	lease int64
	ttl   time.Duration
	revs  []int64
	// expiry marks a revoke by the expiry loop: it is dropped if the lease
	// was renewed after it was found expired.
	expiry bool

	kv   store.KV
	prev store.KV
	rev  int64
	err  error
	done chan struct{}
}

func (r *request) size() int { return len(r.key) + len(r.value) + 64 + 9*len(r.revs) }

// entries bounds the Badger entries the request writes (object, event,
// attachment, one per purged event).
func (r *request) entries() int { return 3 + len(r.revs) }

// treeSize estimates what the request adds to Badger's memtable: a value of
// ValueThreshold bytes or more goes to the value log, leaving a pointer.
func (r *request) treeSize(inMemory bool) int {
	if len(r.value) >= ValueThreshold && !inMemory {
		return len(r.key) + 32 + 64 + 9*len(r.revs)
	}
	return r.size()
}

// submit hands r to the committer and waits for its result. A request that
// was handed over is always answered, even if ctx ends first: the write may
// be committed, so the caller must not assume otherwise.
func (s *Store) submit(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p := s.failed.Load(); p != nil {
		return fmt.Errorf("store failed earlier (%v): %w", *p, errdefs.ErrUnavailable)
	}
	r.done = make(chan struct{})
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return fmt.Errorf("store closed: %w", errdefs.ErrUnavailable)
	}
	s.reqs <- r
	s.closeMu.RUnlock()
	<-r.done
	return r.err
}

func (s *Store) checkValue(key string, value []byte) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	if len(value) > s.opts.MaxValueSize {
		return fmt.Errorf("value for %s is %d bytes, limit %d: %w", key, len(value), s.opts.MaxValueSize, errdefs.ErrTooLarge)
	}
	return nil
}

// Create writes key if it does not exist.
func (s *Store) Create(ctx context.Context, key string, value []byte, opts store.WriteOptions) (store.KV, error) {
	if err := s.checkValue(key, value); err != nil {
		return store.KV{}, err
	}
	r := &request{kind: opCreate, key: key, value: withHeadroom(value), lease: opts.Lease}
	if err := s.submit(ctx, r); err != nil {
		return store.KV{}, fmt.Errorf("create %s: %w", key, err)
	}
	return r.kv, nil
}

// Update replaces key's value, if its ModRevision is ifRevision (when not 0).
func (s *Store) Update(ctx context.Context, key string, value []byte, ifRevision int64, opts store.WriteOptions) (store.KV, error) {
	if err := s.checkValue(key, value); err != nil {
		return store.KV{}, err
	}
	if ifRevision < 0 {
		return store.KV{}, fmt.Errorf("update %s: revision precondition %d: %w", key, ifRevision, errdefs.ErrInvalid)
	}
	r := &request{kind: opUpdate, key: key, value: withHeadroom(value), ifRev: ifRevision, lease: opts.Lease}
	if err := s.submit(ctx, r); err != nil {
		return store.KV{}, fmt.Errorf("update %s: %w", key, err)
	}
	return r.kv, nil
}

// Delete removes key, if its ModRevision is ifRevision (when not 0).
func (s *Store) Delete(ctx context.Context, key string, ifRevision int64) (store.KV, int64, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.KV{}, 0, err
	}
	if ifRevision < 0 {
		return store.KV{}, 0, fmt.Errorf("delete %s: revision precondition %d: %w", key, ifRevision, errdefs.ErrInvalid)
	}
	r := &request{kind: opDelete, key: key, ifRev: ifRevision}
	if err := s.submit(ctx, r); err != nil {
		return store.KV{}, 0, fmt.Errorf("delete %s: %w", key, err)
	}
	return r.prev, r.rev, nil
}

// Grant creates a lease with the given TTL.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (int64, error) {
	if err := lease.ValidateTTL(ttl); err != nil {
		return 0, err
	}
	r := &request{kind: opGrant, lease: rand.Int64N(1<<62) + 1, ttl: ttl}
	if err := s.submit(ctx, r); err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	return r.lease, nil
}

// KeepAlive renews a lease for another TTL.
func (s *Store) KeepAlive(ctx context.Context, id int64) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	return s.leases.Renew(id)
}

// Revoke deletes a lease and the keys attached to it.
func (s *Store) Revoke(ctx context.Context, id int64) error {
	return s.revoke(ctx, id, false)
}

func (s *Store) revoke(ctx context.Context, id int64, expiry bool) error {
	r := &request{kind: opRevoke, lease: id, expiry: expiry}
	if err := s.submit(ctx, r); err != nil {
		return fmt.Errorf("revoke lease %d: %w", id, err)
	}
	return nil
}

// commitLoop is the only writer to Badger. It groups whatever requests are
// queued (up to maxBatchOps requests or a tenth of the memtable) into one commit; requests that
// the group cannot take (a key already written in it) open the next group.
func (s *Store) commitLoop() {
	defer s.commitWG.Done()
	defer close(s.syncq) // the syncer answers what is queued, then ends
	var carry []*request
	for {
		batch := carry
		if len(batch) == 0 {
			select {
			case r := <-s.reqs:
				batch = append(make([]*request, 0, maxBatchOps), r)
			case <-s.closing:
				// Submitters hold closeMu while sending, and Close set
				// closed under it, so nothing new arrives; answer the queue.
				for {
					select {
					case r := <-s.reqs:
						for rest := []*request{r}; len(rest) > 0; {
							rest = s.commit(rest)
						}
					default:
						return
					}
				}
			}
		}
		if s.unsynced.Load() > 0 {
			// A group is being synced, and this one cannot be synced before
			// that sync ends, so there is no hurry to cut it. Yield once so
			// that writers woken by the last answers can queue their requests
			// first: the first one's send put the committer in its P's
			// runnext slot, ahead of them, and it used to cut a group per
			// request (half of all groups were single requests, each paying
			// a Badger transaction and a log write).
			runtime.Gosched()
		}
		size, tree, treeLimit, ents, entLimit := 0, 0, int(s.opts.groupTreeBytes()), 0, s.opts.groupEntries()
		for _, r := range batch {
			size += r.size()
			tree += r.treeSize(s.opts.InMemory)
			ents += r.entries()
		}
	drain:
		for len(batch) < maxBatchOps && size < groupRawBytes && tree < treeLimit && ents < entLimit {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				size += r.size()
				tree += r.treeSize(s.opts.InMemory)
				ents += r.entries()
			default:
				break drain
			}
		}
		carry = s.commit(batch)
	}
}

// keyState is a key's state as seen by the committer.
type keyState struct {
	exists bool
	rec    record
}

// entry is one staged Badger write.
type entry struct {
	key    []byte
	value  []byte
	delete bool
}

// group is one commit in the making: one Badger transaction at one version,
// in which every object key is written at most once (so the version
// identifies each key's write, and history can rebuild every event).
type group struct {
	s       *Store
	txn     *bdb.Txn // reads at the last committed group
	rev     int64    // last assigned revision
	touched map[string]struct{}
	entries []entry
	events  []store.Event
	// compactTo is the compaction this group makes durable, or 0.
	compactTo int64
}

func (g *group) state(key string) (keyState, error) {
	item, err := g.txn.Get(dataKey(key))
	if errors.Is(err, bdb.ErrKeyNotFound) {
		return keyState{}, nil
	}
	if err != nil {
		return keyState{}, err
	}
	raw, err := item.ValueCopy(nil)
	if err != nil {
		return keyState{}, err
	}
	rec, err := decodeRecord(raw)
	if err != nil {
		return keyState{}, fmt.Errorf("key %s: %w", key, err)
	}
	return keyState{exists: true, rec: rec}, nil
}

func (g *group) set(key, value []byte) { g.entries = append(g.entries, entry{key: key, value: value}) }
func (g *group) del(key []byte)        { g.entries = append(g.entries, entry{key: key, delete: true}) }

// keys lists the object keys r would write, to keep each key to one write
// per group.
func (s *Store) keys(r *request) []string {
	switch r.kind {
	case opCreate, opUpdate, opDelete:
		return []string{r.key}
	case opRevoke:
		return s.leases.Keys(r.lease)
	case opCompact:
		return []string{"\x00compact"}
	}
	return nil
}

// commit applies as many requests of batch as one group can take, makes
// them durable, publishes their events and answers them. It returns the
// requests left for the next group.
func (s *Store) commit(batch []*request) []*request {
	if p := s.failed.Load(); p != nil {
		// The syncer failed a sync: nothing more may be acknowledged.
		for _, r := range batch {
			r.err = fmt.Errorf("store failed earlier (%v): %w", *p, errdefs.ErrUnavailable)
			close(r.done)
		}
		return nil
	}
	base := s.committed.Load()
	g := &group{
		s:       s,
		txn:     s.db.NewTransactionAt(readTs(base), false),
		rev:     base,
		touched: make(map[string]struct{}, len(batch)),
	}
	defer g.txn.Discard()
	var fatal error
	n := 0
	for ; n < len(batch); n++ {
		r := batch[n]
		keys := s.keys(r)
		if slices.ContainsFunc(keys, func(k string) bool { _, ok := g.touched[k]; return ok }) {
			break
		}
		if r.err = g.apply(r); r.err != nil && !isRequestError(r.err) {
			fatal = r.err
			n++
			break
		}
		for _, k := range keys {
			g.touched[k] = struct{}{}
		}
	}
	done, rest := batch[:n], batch[n:]
	if fatal == nil {
		fatal = s.write(g, base)
	}
	if fatal != nil {
		// Whether any of the group reached disk is unknown; refuse further
		// writes rather than risk revisions going backwards.
		err := fmt.Errorf("commit revisions %d..%d: %w", base+1, g.rev, fatal)
		s.failed.CompareAndSwap(nil, &err)
		s.log.Error("store write path failed; refusing further writes", "err", err)
		for _, r := range batch {
			r.err = fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
			close(r.done)
		}
		return nil
	}
	if g.compactTo > 0 {
		s.compactStaged = max(s.compactStaged, g.compactTo)
	}
	// The syncer makes the group durable, then publishes and answers it;
	// meanwhile this goroutine stages the next group on top of it.
	s.inflight.Add(1)
	s.unsynced.Add(1)
	s.syncq <- synced{g: g, done: done}
	return rest
}

// synced is a group written to the log and to Badger, waiting for its sync.
type synced struct {
	g    *group
	done []*request
}

// syncLoop makes groups durable in order. One fdatasync covers every group
// written before it, so groups that queued up while the disk was busy share
// it. Only after the sync does a group become visible: its events are
// published (reads happen at the published revision) and its requests are
// answered.
func (s *Store) syncLoop() {
	defer s.syncWG.Done()
	for first := range s.syncq {
		batch := []synced{first}
	drain:
		for {
			select {
			case p, ok := <-s.syncq:
				if !ok {
					break drain
				}
				batch = append(batch, p)
			default:
				break drain
			}
		}
		var err error
		if p := s.failed.Load(); p != nil {
			err = *p
		} else if s.wal != nil {
			err = s.wal.sync()
		} else {
			err = s.db.Sync() // a no-op in memory
		}
		if err != nil {
			err = fmt.Errorf("commit revisions up to %d: %w", batch[len(batch)-1].g.rev, err)
			if s.failed.CompareAndSwap(nil, &err) {
				s.log.Error("store write path failed; refusing further writes", "err", err)
			}
		}
		for _, p := range batch {
			if err != nil {
				for _, r := range p.done {
					r.err = fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
					close(r.done)
				}
				s.unsynced.Add(-1)
				s.inflight.Done()
				continue
			}
			if p.g.compactTo > 0 {
				// Readers see the new floor only once it is durable.
				s.compacted.Store(p.g.compactTo)
				s.hub.Compacted(p.g.compactTo)
				s.db.SetDiscardTs(readTs(p.g.compactTo))
			}
			s.hub.Publish(p.g.events)
			for _, r := range p.done {
				close(r.done)
			}
			s.unsynced.Add(-1)
			s.inflight.Done()
		}
	}
}

// write commits the group's entries as one Badger transaction at the
// group's version and syncs.
func (s *Store) write(g *group, base int64) error {
	if len(g.entries) == 0 {
		return nil
	}
	var ver uint64
	if g.rev > base {
		ver = version(g.rev, 0)
	} else {
		if s.sub == 0xffff {
			return fmt.Errorf("more than %d revision-less commits since revision %d: %w", 0xffff, base, errdefs.ErrUnavailable)
		}
		ver = version(base, s.sub+1)
	}
	g.set(metaRev, u64(g.rev))
	txn := s.db.NewTransactionAt(readTs(base), true)
	defer txn.Discard()
	for _, e := range g.entries {
		var err error
		if e.delete {
			err = txn.Delete(e.key)
		} else {
			err = txn.SetEntry(bdb.NewEntry(e.key, e.value))
		}
		if err != nil {
			return fmt.Errorf("stage %d entries: %w", len(g.entries), err)
		}
	}
	if s.wal != nil {
		if err := s.wal.write(ver, g.entries); err != nil {
			return err
		}
	}
	s.badgerWrite.Lock()
	err := txn.CommitAt(ver, nil)
	s.badgerWrite.Unlock()
	if err != nil {
		return err
	}
	s.trimWAL(ver)
	if g.rev > base {
		s.sub = 0
	} else {
		s.sub++
	}
	s.committed.Store(g.rev)
	return nil
}

// trimWAL drops, after a new segment or at most once a second, the log
// segments whose every version Badger holds durably in its own files, and
// asks for a checkpoint at ver (the group just committed to Badger) to move
// that point on: a checkpoint syncs Badger's memtable and value logs, after
// which everything committed to Badger before it is durable there. Badger's
// flushed tables are not enough on their own: Badger does not sync the
// value log a table's pointers refer to. The file work (syncing Badger's
// directory, unlinking the segments) runs in the background: unlinking one
// segment took ~9 ms, a stall of the whole commit pipeline when it ran
// here. A removal that fails leaves the files for the next Open, which
// replays them (idempotent) and trims again.
func (s *Store) trimWAL(ver uint64) {
	if s.wal == nil || len(s.wal.segments) < 2 || (s.wal.rotations == s.walRots && time.Since(s.walCheck) < time.Second) {
		return
	}
	if !s.trimming.CompareAndSwap(false, true) {
		return // the previous removal is still running
	}
	s.walCheck, s.walRots = time.Now(), s.wal.rotations
	durable := s.checkpointed.Load()
	s.requestCheckpoint(ver)
	var old []walSegment
	if durable > 0 {
		old = s.wal.takeThrough(durable)
	}
	if len(old) == 0 {
		s.trimming.Store(false)
		return
	}
	s.trimWG.Add(1)
	go func() {
		defer s.trimWG.Done()
		defer s.trimming.Store(false)
		// The checkpoint synced the directory already; this also covers
		// files Badger created since.
		if err := syncDir(s.opts.Dir); err != nil {
			s.log.Warn("keeping write-ahead log segments until restart", "err", err)
			return
		}
		if err := removeSegments(s.wal.dir, old); err != nil {
			s.log.Warn("removing write-ahead log segments", "err", err)
			return
		}
		s.log.Debug("removed write-ahead log segments", "count", len(old), "durable_version", durable)
	}()
}

// isRequestError reports whether err belongs to the request alone (a failed
// precondition), as opposed to a storage failure that fails the group.
func isRequestError(err error) bool {
	for _, e := range []error{errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrConflict, errdefs.ErrInvalid} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// apply evaluates one request against the group and stages its writes.
func (g *group) apply(r *request) error {
	switch r.kind {
	case opCreate, opUpdate:
		return g.put(r)
	case opDelete:
		st, err := g.state(r.key)
		if err != nil {
			return err
		}
		if !st.exists {
			return errdefs.ErrNotFound
		}
		if r.ifRev != 0 && r.ifRev != st.rec.modRev {
			return fmt.Errorf("revision is %d, not %d: %w", st.rec.modRev, r.ifRev, errdefs.ErrConflict)
		}
		r.prev, r.rev = g.remove(r.key, st), g.rev
		return nil
	case opGrant:
		g.set(leaseKey(r.lease), ttlBytes(r.ttl))
		g.s.leases.Grant(r.lease, r.ttl)
		return nil
	case opRevoke:
		if !g.s.leases.Exists(r.lease) {
			return fmt.Errorf("lease %d: %w", r.lease, errdefs.ErrNotFound)
		}
		if r.expiry && g.s.leases.Live(r.lease) {
			return nil // renewed since it was found expired
		}
		for _, key := range g.s.leases.Keys(r.lease) {
			st, err := g.state(key)
			if err != nil {
				return err
			}
			if st.exists && st.rec.lease == r.lease {
				g.remove(key, st)
			}
		}
		g.del(leaseKey(r.lease))
		g.s.leases.Remove(r.lease)
		return nil
	case opCompact:
		// Checked here, where compactions are serialised, so the
		// compacted revision only ever rises.
		if r.ifRev <= max(g.s.compacted.Load(), g.s.compactStaged, g.compactTo) {
			return nil
		}
		g.compactTo = r.ifRev
		g.set(metaCompact, u64(r.ifRev))
		return nil
	case opPurgeEvents:
		for _, rev := range r.revs {
			g.del(eventKey(rev))
		}
		return nil
	}
	return fmt.Errorf("unknown request kind %d: %w", r.kind, errdefs.ErrInvalid)
}

func (g *group) put(r *request) error {
	st, err := g.state(r.key)
	if err != nil {
		return err
	}
	switch {
	case r.kind == opCreate && st.exists:
		return errdefs.ErrAlreadyExists
	case r.kind == opUpdate && !st.exists:
		return errdefs.ErrNotFound
	case r.kind == opUpdate && r.ifRev != 0 && r.ifRev != st.rec.modRev:
		return fmt.Errorf("revision is %d, not %d: %w", st.rec.modRev, r.ifRev, errdefs.ErrConflict)
	}
	if r.lease != 0 && !g.s.leases.Live(r.lease) {
		return fmt.Errorf("lease %d: %w", r.lease, errdefs.ErrNotFound)
	}
	g.rev++
	rev := g.rev
	rec := record{createRev: rev, modRev: rev, lease: r.lease, value: r.value[recordHeadroom:]}
	typ := store.Added
	if st.exists {
		rec.createRev, typ = st.rec.createRev, store.Modified
	}
	g.set(dataKey(r.key), rec.encodeInPlace(r.value))
	g.set(eventKey(rev), encodeEvent(typ, r.key))
	if st.exists && st.rec.lease != 0 && st.rec.lease != r.lease {
		g.del(attachKey(st.rec.lease, r.key))
		g.s.leases.Detach(st.rec.lease, r.key)
	}
	if r.lease != 0 && r.lease != st.rec.lease {
		g.set(attachKey(r.lease, r.key), nil)
		g.s.leases.Attach(r.lease, r.key)
	}
	r.kv = rec.kv(r.key)
	ev := store.Event{Type: typ, Revision: rev, KV: r.kv}
	if st.exists {
		ev.PrevValue = st.rec.value
	}
	g.events = append(g.events, ev)
	return nil
}

// remove stages the deletion of an existing key and returns its last state.
func (g *group) remove(key string, st keyState) store.KV {
	g.rev++
	rev := g.rev
	g.del(dataKey(key))
	g.set(eventKey(rev), encodeEvent(store.Deleted, key))
	if st.rec.lease != 0 {
		g.del(attachKey(st.rec.lease, key))
		g.s.leases.Detach(st.rec.lease, key)
	}
	prev := st.rec.kv(key)
	g.events = append(g.events, store.Event{Type: store.Deleted, Revision: rev, KV: prev, PrevValue: st.rec.value})
	return prev
}
