// Package badger is Tugboat's default store backend: a Badger v4 database in
// managed mode, where every Badger version timestamp is a store revision.
//
// All writes go through one committer goroutine (commit.go) that groups
// concurrent requests, checks their preconditions, assigns consecutive
// revisions, makes the group durable with one write and one fdatasync of its
// own write-ahead log (wal.go), then commits it to Badger as one transaction
// before acknowledging anyone (group commit). Reads are
// snapshot reads at the last published revision, so an acknowledged write is
// visible to every later read. See docs/ARCHITECTURE.md for the key layout and
// docs/RATIONALE.md for why.
package badger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bdb "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/lease"
	"github.com/tugboat-dev/tugboat/kernel/store"
	"github.com/tugboat-dev/tugboat/kernel/watch"
)

// Defaults for Options.
const (
	DefaultMaxValueSize       = 1_000_000
	DefaultHistoryEvents      = 4096
	DefaultWatchBuffer        = 1024
	DefaultBookmarkInterval   = time.Minute
	DefaultLeaseCheckInterval = 500 * time.Millisecond
	DefaultCompactionWindow   = 5 * time.Minute

	DefaultMemTableSize = 64 << 20

	// ValueThreshold is the value size from which Badger keeps a value in
	// its value log rather than in the LSM tree: Kubernetes objects (pods,
	// deployments: a few KiB) are written once to the value log instead of
	// being rewritten by every LSM compaction; small values (leases, the
	// event log, metadata) stay in the tree. See RATIONALE: "Why do values
	// live in Badger's value log?".
	ValueThreshold = 1 << 10

	maxBatchOps = 1024
)

// Options configure a Store. Zero values take the defaults above.
type Options struct {
	// Dir is the data directory; required unless InMemory.
	Dir string
	// InMemory keeps everything in memory (no durability); for unit tests.
	InMemory bool
	// MaxValueSize bounds a value in bytes (ErrTooLarge beyond it); at most
	// DefaultMaxValueSize and, in memory (where values stay in Badger's
	// memtable), a twentieth of MemTableSize.
	MaxValueSize int
	// HistoryEvents is how many recent events stay in memory for watches.
	HistoryEvents int
	// WatchBuffer is how many events a watcher may fall behind before it is
	// cut off with ErrTooSlow.
	WatchBuffer int
	// BookmarkInterval is how often watchers receive a Bookmark.
	BookmarkInterval time.Duration
	// MemTableSize sizes the store's write buffers (default 64 MiB; at
	// least 1 MiB): write-ahead log segments are half of it, value-log files
	// twice it, and Badger's memtable, which holds keys and value pointers
	// (values of ValueThreshold bytes and more are in the value log), a
	// sixteenth of it, at least 1 MiB. A small memtable keeps the value-log
	// garbage that LSM compaction has not yet found small (see RATIONALE:
	// "Why do values live in Badger's value log?"). In memory, Badger's
	// memtable is MemTableSize itself.
	MemTableSize int64
	// LeaseCheckInterval is how often expired leases are collected.
	LeaseCheckInterval time.Duration
	// CompactionWindow is how much history is retained: every window the
	// store compacts to the revision it had one window earlier. Negative
	// disables automatic compaction.
	CompactionWindow time.Duration
	Logger           *slog.Logger

	// noCheckpoints keeps the whole write-ahead log (tests that lose
	// Badger's memtable logs need every write in the log).
	noCheckpoints bool
}

// groupRawBytes caps the keys and values of one commit group.
const groupRawBytes = 4 << 20

// badgerMemTable is Badger's memtable size.
func (o *Options) badgerMemTable() int64 {
	if o.InMemory {
		return o.MemTableSize
	}
	return max(1<<20, o.MemTableSize/16)
}

// groupTreeBytes caps what one commit group adds to Badger's memtable: a
// tenth of it (Badger refuses transactions over 15%), so a group always
// fits one Badger transaction in one memtable.
func (o *Options) groupTreeBytes() int64 { return o.badgerMemTable() / 10 }

// groupEntries caps the Badger entries of one commit group: half of
// Badger's per-transaction count limit (15% of the memtable in skiplist
// nodes of 96 bytes), so a group never fails with ErrTxnTooBig.
func (o *Options) groupEntries() int { return int(o.badgerMemTable()*15/100/96) / 2 }

func (o *Options) setDefaults() error {
	if o.Dir == "" && !o.InMemory {
		return fmt.Errorf("badger store: no data directory: %w", errdefs.ErrInvalid)
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.MemTableSize < 1<<20 {
		return fmt.Errorf("badger store: memtable size %d below 1 MiB: %w", o.MemTableSize, errdefs.ErrInvalid)
	}
	limit := min(DefaultMaxValueSize, groupRawBytes/2)
	if o.InMemory { // values stay in the memtable
		limit = min(limit, int(o.groupTreeBytes()/2))
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = limit
	}
	if o.MaxValueSize < 0 || o.MaxValueSize > limit {
		return fmt.Errorf("badger store: max value size %d outside 1..%d (memtable %d bytes): %w", o.MaxValueSize, limit, o.MemTableSize, errdefs.ErrInvalid)
	}
	if o.HistoryEvents <= 0 {
		o.HistoryEvents = DefaultHistoryEvents
	}
	if o.WatchBuffer <= 0 {
		o.WatchBuffer = DefaultWatchBuffer
	}
	if o.BookmarkInterval <= 0 {
		o.BookmarkInterval = DefaultBookmarkInterval
	}
	if o.LeaseCheckInterval <= 0 {
		o.LeaseCheckInterval = DefaultLeaseCheckInterval
	}
	if o.CompactionWindow == 0 {
		o.CompactionWindow = DefaultCompactionWindow
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Store is the Badger backend. It is safe for concurrent use.
type Store struct {
	opts   Options
	log    *slog.Logger
	db     *bdb.DB
	hub    *watch.Hub
	leases *lease.Lessor

	committed atomic.Int64 // last durable revision; published through hub.Revision()
	sub       uint16       // revision-less groups since committed; committer-owned
	compacted atomic.Int64 // history at or below is gone

	wal      *wal           // nil in memory; committer-owned after Open
	walCheck time.Time      // when the committer last looked for removable segments
	walRots  int            // the wal's rotations at that time
	trimming atomic.Bool    // a removal of old log segments is running
	trimWG   sync.WaitGroup // that removal
	// checkpointed is a version at or below which Badger's own files hold
	// every write durably (maintainLoop synced them), so the log below it
	// may go; checkpoints asks maintainLoop for a new one, gcKick for a
	// value-log collection.
	checkpointed atomic.Uint64
	checkpoints  chan uint64
	gcKick       chan struct{}
	// badgerWrite is held by the committer around each Badger commit and by
	// value-log collection around each file it rewrites: Badger v4.9.6's
	// DB.MaxVersion, which a rewrite calls, reads the memtable's version
	// without the lock its write goroutine updates it under (a data race).
	badgerWrite sync.Mutex
	pinned      []pinnedIterator // value-log files kept after a failed sync; maintainLoop-owned

	compactStaged int64 // highest compaction staged; committer-owned
	// syncq carries written groups from the committer to the syncer, which
	// makes them durable, publishes and answers them; inflight counts them.
	syncq    chan synced
	syncWG   sync.WaitGroup
	inflight sync.WaitGroup
	unsynced atomic.Int32 // groups handed to the syncer and not yet answered

	reqs     chan *request
	closing  chan struct{}
	closeMu  sync.RWMutex // held for reading while submitting, for writing by Close
	closed   bool
	failed   atomic.Pointer[error] // a write path error; the store refuses writes after it
	bg       sync.WaitGroup
	commitWG sync.WaitGroup
}

var _ store.Store = (*Store)(nil)

// Open opens (or creates) the store in opts.Dir, replays nothing (Badger
// recovers its own log) and starts the committer and background loops.
func Open(opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	bo := bdb.DefaultOptions(opts.Dir).
		WithInMemory(opts.InMemory).
		WithSyncWrites(false). // the committer syncs once per group
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1). // keep the newest version at or below the discard ts
		WithMemTableSize(opts.badgerMemTable()).
		WithValueThreshold(ValueThreshold).
		WithValueLogFileSize(min(max(2*opts.MemTableSize, 1<<20), 1<<30)).
		WithCompression(options.None).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithNumCompactors(2).
		WithNumLevelZeroTables(2).
		WithLogger(badgerLogger{opts.Logger})
	if opts.InMemory {
		// No value log in memory: Badger refuses values over the threshold.
		bo = bo.WithValueThreshold(min(1<<20, opts.MemTableSize*15/100))
		bo.Dir, bo.ValueDir = "", ""
	}
	if !opts.InMemory {
		if err := syncBadgerFiles(opts.Dir); err != nil {
			return nil, err
		}
	}
	db, err := bdb.OpenManaged(bo)
	if err != nil {
		return nil, fmt.Errorf("open badger in %s: %w", opts.Dir, err)
	}
	s := &Store{
		opts:    opts,
		log:     opts.Logger,
		db:      db,
		leases:  lease.New(nil),
		reqs:    make(chan *request, maxBatchOps),
		syncq:   make(chan synced, 8),
		closing: make(chan struct{}),

		checkpoints: make(chan uint64, 1),
		gcKick:      make(chan struct{}, 1),
	}
	if !opts.InMemory {
		w, records, err := openWAL(filepath.Join(opts.Dir, "wal"), max(opts.MemTableSize/2, 256<<10))
		if err != nil {
			db.Close()
			return nil, err
		}
		s.wal = w
		w.beforeRotate = s.inflight.Wait
		if err := s.replay(records); err != nil {
			w.close()
			db.Close()
			return nil, err
		}
	}
	if err := s.recover(); err != nil {
		if s.wal != nil {
			s.wal.close()
		}
		db.Close()
		return nil, err
	}
	s.hub = watch.NewHub(watch.Config{
		RingSize:         opts.HistoryEvents,
		Buffer:           opts.WatchBuffer,
		BookmarkInterval: opts.BookmarkInterval,
		History:          history{s},
	}, s.committed.Load(), s.compacted.Load())
	s.commitWG.Add(1)
	go s.commitLoop()
	s.syncWG.Add(1)
	go s.syncLoop()
	s.bg.Add(2)
	go s.leaseLoop()
	go s.compactLoop()
	if !opts.InMemory {
		s.bg.Add(2)
		go s.adviseLoop(adviseInterval)
		go s.maintainLoop()
	}
	return s, nil
}

// replay applies the groups in the write-ahead log to Badger again, each at
// its own version. Groups Badger already holds are rewritten with the same
// keys, versions and values, so this is idempotent.
func (s *Store) replay(records []walRecord) error {
	for _, rec := range records {
		txn := s.db.NewTransactionAt(rec.version, true)
		for _, e := range rec.entries {
			var err error
			if e.delete {
				err = txn.Delete(e.key)
			} else {
				err = txn.SetEntry(bdb.NewEntry(e.key, e.value))
			}
			if err != nil {
				txn.Discard()
				return fmt.Errorf("replay wal version %x: %w", rec.version, err)
			}
		}
		if err := txn.CommitAt(rec.version, nil); err != nil {
			txn.Discard()
			return fmt.Errorf("replay wal version %x: %w", rec.version, err)
		}
		txn.Discard()
	}
	if len(records) > 0 {
		s.log.Info("replayed write-ahead log", "groups", len(records))
	}
	return nil
}

// recover loads the revision, compaction point and leases.
func (s *Store) recover() error {
	txn := s.db.NewTransactionAt(math.MaxUint64, false)
	defer txn.Discard()
	for _, m := range []struct {
		key []byte
		dst *atomic.Int64
	}{{metaRev, &s.committed}, {metaCompact, &s.compacted}} {
		item, err := txn.Get(m.key)
		if errors.Is(err, bdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("recover %s: %w", m.key, err)
		}
		var v int64
		if err := item.Value(func(b []byte) error { v, err = decodeU64(b); return err }); err != nil {
			return fmt.Errorf("recover %s: %w", m.key, err)
		}
		m.dst.Store(v)
		if m.dst == &s.committed && revOf(item.Version()) == v {
			s.sub = uint16(item.Version() & 0xffff)
		}
	}
	if s.committed.Load() == 0 {
		if err := s.initialize(); err != nil {
			return err
		}
	}
	if s.opts.InMemory {
		return nil
	}
	// Leases get a fresh TTL on restart; then their attachments.
	it := txn.NewIterator(bdb.IteratorOptions{Prefix: []byte{pfxLease}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		id, err := decodeU64(item.Key()[1:])
		if err != nil {
			return fmt.Errorf("recover lease key %x: %w", item.Key(), err)
		}
		var ms int64
		if err := item.Value(func(b []byte) error { ms, err = decodeTTL(b); return err }); err != nil {
			return fmt.Errorf("recover lease %d: %w", id, err)
		}
		s.leases.Grant(id, time.Duration(ms)*time.Millisecond)
	}
	at := txn.NewIterator(bdb.IteratorOptions{Prefix: []byte{pfxAttach}})
	defer at.Close()
	for at.Rewind(); at.Valid(); at.Next() {
		k := at.Item().Key()
		if len(k) < 10 {
			return fmt.Errorf("recover lease attachment %x: %w", k, errdefs.ErrInvalid)
		}
		id, _ := decodeU64(k[1:9])
		s.leases.Attach(id, string(k[9:]))
	}
	return nil
}

// initialize starts a fresh store at revision 1 (compacted at 1, with no
// event), as etcd does: a list of an empty store then says revision 1, and
// a watch from it is not mistaken for "from now".
func (s *Store) initialize() error {
	txn := s.db.NewTransactionAt(0, true)
	defer txn.Discard()
	for _, k := range [][]byte{metaRev, metaCompact} {
		if err := txn.Set(k, u64(1)); err != nil {
			return fmt.Errorf("initialize store: %w", err)
		}
	}
	if err := txn.CommitAt(version(1, 0), nil); err != nil {
		return fmt.Errorf("initialize store: %w", err)
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("initialize store: %w", err)
	}
	s.committed.Store(1)
	s.compacted.Store(1)
	return nil
}

// Revision returns the last acknowledged (published) revision; reads happen
// at it.
func (s *Store) Revision() int64 { return s.hub.Revision() }

// CompactedRevision returns the revision of the last compaction.
func (s *Store) CompactedRevision() int64 { return s.compacted.Load() }

func (s *Store) checkOpen() error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return fmt.Errorf("store closed: %w", errdefs.ErrUnavailable)
	}
	return nil
}

// Get returns the current value of key.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.KV{}, err
	}
	if err := s.checkOpen(); err != nil {
		return store.KV{}, err
	}
	txn := s.db.NewTransactionAt(readTs(s.Revision()), false)
	defer txn.Discard()
	kv, err := getAt(txn, key)
	if err != nil {
		return store.KV{}, fmt.Errorf("get %s: %w", key, err)
	}
	return kv, nil
}

func getAt(txn *bdb.Txn, key string) (store.KV, error) {
	item, err := txn.Get(dataKey(key))
	if errors.Is(err, bdb.ErrKeyNotFound) {
		return store.KV{}, errdefs.ErrNotFound
	}
	if err != nil {
		return store.KV{}, err
	}
	return kvFromItem(key, item)
}

func kvFromItem(key string, item *bdb.Item) (store.KV, error) {
	raw, err := item.ValueCopy(nil)
	if err != nil {
		return store.KV{}, err
	}
	rec, err := decodeRecord(raw)
	if err != nil {
		return store.KV{}, fmt.Errorf("key %s at revision %d: %w", key, item.Version(), err)
	}
	return rec.kv(key), nil
}

// readRevision resolves a requested read revision (0 = current).
func (s *Store) readRevision(rev int64) (int64, error) {
	cur := s.Revision()
	switch {
	case rev == 0:
		return cur, nil
	case rev < 0:
		return 0, fmt.Errorf("revision %d: %w", rev, errdefs.ErrInvalid)
	case rev > cur:
		return 0, fmt.Errorf("revision %d, current is %d: %w", rev, cur, errdefs.ErrFutureRevision)
	case rev < s.compacted.Load():
		return 0, fmt.Errorf("revision %d, compacted at %d: %w", rev, s.compacted.Load(), errdefs.ErrGone)
	}
	return rev, nil
}

// groupEnd returns the last revision of the commit group that contains rev:
// a snapshot can only be taken between groups. Revisions handed out by
// Revision and List are already group ends.
func (s *Store) groupEnd(rev int64) int64 {
	cur := s.Revision()
	if rev >= cur {
		return cur
	}
	txn := s.db.NewTransactionAt(readTs(cur), false)
	defer txn.Discard()
	item, err := txn.Get(eventKey(rev))
	if err != nil {
		return rev // purged by compaction at or above rev: rev is a boundary or gone
	}
	return revOf(item.Version())
}

// List returns the keys under prefix in key order.
func (s *Store) List(ctx context.Context, prefix string, opts store.ListOptions) (store.ListResult, error) {
	if err := store.ValidatePrefix(prefix); err != nil {
		return store.ListResult{}, err
	}
	if opts.StartKey != "" && !strings.HasPrefix(opts.StartKey, prefix) {
		return store.ListResult{}, fmt.Errorf("list %s: start key %q outside the prefix: %w", prefix, opts.StartKey, errdefs.ErrInvalid)
	}
	if opts.Limit < 0 {
		return store.ListResult{}, fmt.Errorf("list %s: negative limit: %w", prefix, errdefs.ErrInvalid)
	}
	if err := s.checkOpen(); err != nil {
		return store.ListResult{}, err
	}
	rev, err := s.readRevision(opts.Revision)
	if err != nil {
		return store.ListResult{}, fmt.Errorf("list %s: %w", prefix, err)
	}
	rev = s.groupEnd(rev)
	txn := s.db.NewTransactionAt(readTs(rev), false)
	defer txn.Discard()
	io := bdb.DefaultIteratorOptions
	io.Prefix = dataKey(prefix)
	if opts.Limit > 0 && opts.Limit < io.PrefetchSize {
		io.PrefetchSize = opts.Limit
	}
	it := txn.NewIterator(io)
	defer it.Close()
	// The iterator pinned its tables; if no compaction passed rev before
	// that, none of the versions it reads can be discarded under it.
	if c := s.compacted.Load(); rev < c {
		return store.ListResult{}, fmt.Errorf("list %s: revision %d, compacted at %d: %w", prefix, rev, c, errdefs.ErrGone)
	}
	start := io.Prefix
	if opts.StartKey != "" {
		start = dataKey(opts.StartKey)
	}
	res := store.ListResult{Revision: rev}
	for it.Seek(start); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return store.ListResult{}, fmt.Errorf("list %s: %w", prefix, err)
		}
		if opts.Limit > 0 && len(res.KVs) == opts.Limit {
			res.More = true
			break
		}
		item := it.Item()
		kv, err := kvFromItem(string(item.Key()[1:]), item)
		if err != nil {
			return store.ListResult{}, fmt.Errorf("list %s: %w", prefix, err)
		}
		res.KVs = append(res.KVs, kv)
	}
	return res, nil
}

// Watch delivers changes under prefix after afterRevision.
func (s *Store) Watch(ctx context.Context, prefix string, afterRevision int64) (store.Watcher, error) {
	if err := store.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if afterRevision < 0 {
		return nil, fmt.Errorf("watch %s from revision %d: %w", prefix, afterRevision, errdefs.ErrInvalid)
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	return s.hub.Watch(ctx, prefix, afterRevision)
}

// Close stops the committer and background loops, ends all watches and
// closes Badger. Requests already accepted are committed first.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.closeMu.Unlock()
	s.bg.Wait()
	if len(s.pinned) > 0 && syncBadgerFiles(s.opts.Dir) == nil {
		for _, p := range s.pinned { // the moved values are durable now
			p.it.Close()
			p.txn.Discard()
		}
	}
	s.commitWG.Wait()
	s.syncWG.Wait()
	s.trimWG.Wait()
	s.hub.Close()
	var walErr error
	if s.wal != nil {
		walErr = s.wal.close()
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close badger: %w", err)
	}
	return walErr
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Infof(string, ...any)  {}
func (b badgerLogger) Debugf(string, ...any) {}
