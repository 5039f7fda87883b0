package badger

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	kind  opKind
	key   string
	value []byte
	ifRev int64
	lease int64
	ttl   time.Duration
	revs  []int64

	kv   store.KV
	prev store.KV
	rev  int64
	err  error
	done chan struct{}
}

func (r *request) size() int { return len(r.key) + len(r.value) + 64 + 9*len(r.revs) }

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
	r := &request{kind: opCreate, key: key, value: value, lease: opts.Lease}
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
	r := &request{kind: opUpdate, key: key, value: value, ifRev: ifRevision, lease: opts.Lease}
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
	r := &request{kind: opRevoke, lease: id}
	if err := s.submit(ctx, r); err != nil {
		return fmt.Errorf("revoke lease %d: %w", id, err)
	}
	return nil
}

// commitLoop is the only writer to Badger. It groups whatever requests are
// queued (up to maxBatchOps / maxBatchBytes) into one commit.
func (s *Store) commitLoop() {
	defer s.commitWG.Done()
	batch := make([]*request, 0, maxBatchOps)
	for {
		var first *request
		select {
		case first = <-s.reqs:
		case <-s.closing:
			// Submitters hold closeMu while sending, and Close set closed
			// under it, so nothing new arrives; answer what is queued.
			for {
				select {
				case r := <-s.reqs:
					s.commit([]*request{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		size := first.size()
	drain:
		for len(batch) < maxBatchOps && size < maxBatchBytes {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				size += r.size()
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

// keyState is a key's state as seen by the committer, including writes
// earlier in the same group.
type keyState struct {
	exists bool
	rec    record
	mod    int64
}

// group is one commit in the making.
type group struct {
	s       *Store
	txn     *bdb.Txn // reads at the last committed revision
	wb      *bdb.WriteBatch
	rev     int64 // last assigned revision
	pending map[string]keyState
	events  []store.Event
	after   []func() // run once the group is durable
	err     error    // first Badger error
}

func (g *group) state(key string) (keyState, error) {
	if st, ok := g.pending[key]; ok {
		return st, nil
	}
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
		return keyState{}, err
	}
	return keyState{exists: true, rec: rec, mod: int64(item.Version())}, nil
}

func (g *group) set(key []byte, value []byte, ts int64) {
	if g.err == nil {
		g.err = g.wb.SetEntryAt(bdb.NewEntry(key, value), uint64(max(ts, 1)))
	}
}

func (g *group) del(key []byte, ts int64) {
	if g.err == nil {
		g.err = g.wb.DeleteAt(key, uint64(max(ts, 1)))
	}
}

func (s *Store) commit(batch []*request) {
	base := s.published.Load()
	g := &group{
		s:       s,
		txn:     s.db.NewTransactionAt(uint64(base), false),
		wb:      s.db.NewManagedWriteBatch(),
		rev:     base,
		pending: make(map[string]keyState, len(batch)),
	}
	defer g.txn.Discard()
	for _, r := range batch {
		r.err = g.apply(r)
	}
	if g.rev > base {
		g.set(metaRev, u64(g.rev), g.rev)
	}
	err := g.err
	if err == nil {
		err = g.wb.Flush()
	} else {
		g.wb.Cancel()
	}
	if err == nil {
		err = s.db.Sync()
	}
	if err != nil {
		// Whether any of the group reached disk is unknown; refuse further
		// writes rather than risk revisions going backwards.
		err = fmt.Errorf("commit revisions %d..%d: %w", base+1, g.rev, err)
		s.failed.CompareAndSwap(nil, &err)
		s.log.Error("store write path failed; refusing further writes", "err", err)
		for _, r := range batch {
			r.err = fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
			close(r.done)
		}
		return
	}
	for _, f := range g.after {
		f()
	}
	s.published.Store(g.rev)
	s.hub.Publish(g.events)
	for _, r := range batch {
		close(r.done)
	}
}

// apply evaluates one request against the group and stages its writes. A
// returned error is the request's own (precondition, not found); Badger
// errors are kept in g.err and fail the whole group.
func (g *group) apply(r *request) error {
	switch r.kind {
	case opCreate, opUpdate:
		return g.put(r)
	case opDelete:
		st, err := g.state(r.key)
		if err != nil {
			g.err = err
			return err
		}
		if !st.exists {
			return errdefs.ErrNotFound
		}
		if r.ifRev != 0 && r.ifRev != st.mod {
			return fmt.Errorf("revision is %d, not %d: %w", st.mod, r.ifRev, errdefs.ErrConflict)
		}
		r.prev, r.rev = g.remove(r.key, st), g.rev
		return nil
	case opGrant:
		g.set(leaseKey(r.lease), ttlBytes(r.ttl), g.rev)
		g.s.leases.Grant(r.lease, r.ttl)
		return nil
	case opRevoke:
		if !g.s.leases.Exists(r.lease) {
			return fmt.Errorf("lease %d: %w", r.lease, errdefs.ErrNotFound)
		}
		for _, key := range g.s.leases.Keys(r.lease) {
			st, err := g.state(key)
			if err != nil {
				g.err = err
				return err
			}
			if st.exists && st.rec.lease == r.lease {
				g.remove(key, st)
			}
		}
		g.del(leaseKey(r.lease), g.rev)
		g.s.leases.Remove(r.lease)
		return nil
	case opCompact:
		g.set(metaCompact, u64(r.ifRev), g.rev)
		return nil
	case opPurgeEvents:
		for _, rev := range r.revs {
			g.del(eventKey(rev), g.rev)
		}
		return nil
	}
	return fmt.Errorf("unknown request kind %d: %w", r.kind, errdefs.ErrInvalid)
}

func (g *group) put(r *request) error {
	st, err := g.state(r.key)
	if err != nil {
		g.err = err
		return err
	}
	switch {
	case r.kind == opCreate && st.exists:
		return errdefs.ErrAlreadyExists
	case r.kind == opUpdate && !st.exists:
		return errdefs.ErrNotFound
	case r.kind == opUpdate && r.ifRev != 0 && r.ifRev != st.mod:
		return fmt.Errorf("revision is %d, not %d: %w", st.mod, r.ifRev, errdefs.ErrConflict)
	}
	if r.lease != 0 && !g.s.leases.Live(r.lease) {
		return fmt.Errorf("lease %d: %w", r.lease, errdefs.ErrNotFound)
	}
	g.rev++
	rev := g.rev
	rec := record{createRev: rev, lease: r.lease, value: r.value}
	typ := store.Added
	if st.exists {
		rec.createRev, typ = st.rec.createRev, store.Modified
	}
	g.set(dataKey(r.key), rec.encode(), rev)
	g.set(eventKey(rev), encodeEvent(typ, r.key), rev)
	if st.exists && st.rec.lease != 0 && st.rec.lease != r.lease {
		g.del(attachKey(st.rec.lease, r.key), rev)
		g.s.leases.Detach(st.rec.lease, r.key)
	}
	if r.lease != 0 && r.lease != st.rec.lease {
		g.set(attachKey(r.lease, r.key), nil, rev)
		g.s.leases.Attach(r.lease, r.key)
	}
	g.pending[r.key] = keyState{exists: true, rec: rec, mod: rev}
	r.kv = store.KV{Key: r.key, Value: r.value, CreateRevision: rec.createRev, ModRevision: rev, Lease: r.lease}
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
	g.del(dataKey(key), rev)
	g.set(eventKey(rev), encodeEvent(store.Deleted, key), rev)
	if st.rec.lease != 0 {
		g.del(attachKey(st.rec.lease, key), rev)
		g.s.leases.Detach(st.rec.lease, key)
	}
	g.pending[key] = keyState{}
	prev := store.KV{Key: key, Value: st.rec.value, CreateRevision: st.rec.createRev, ModRevision: st.mod, Lease: st.rec.lease}
	g.events = append(g.events, store.Event{Type: store.Deleted, Revision: rev, KV: prev, PrevValue: st.rec.value})
	return prev
}
