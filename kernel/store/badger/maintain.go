package badger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bdb "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

const (
	// valueLogGCInterval is how often the value log is checked for files
	// worth rewriting (besides after every compaction).
	valueLogGCInterval = 10 * time.Second
	// valueLogGCRatio is the share of a value-log file that must be garbage
	// before it is rewritten.
	valueLogGCRatio = 0.5
	// maxRewritesPerRun bounds the files one collection rewrites.
	maxRewritesPerRun = 8
)

// maintainLoop runs the store's file maintenance, one job at a time:
// checkpoints (syncing Badger's logs so the write-ahead log below a version
// can go) and value-log garbage collection. Running them on one goroutine
// keeps a collection from deleting a value-log file between a checkpoint's
// listing of the files and its sync.
func (s *Store) maintainLoop() {
	defer s.bg.Done()
	t := time.NewTicker(valueLogGCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case ver := <-s.checkpoints:
			if err := syncBadgerFiles(s.opts.Dir); err != nil {
				s.log.Warn("checkpoint: keeping the write-ahead log", "err", err)
				continue
			}
			s.checkpointed.Store(ver)
		case <-s.gcKick:
			s.collectValueLog()
		case <-t.C:
			s.collectValueLog()
		}
	}
}

// requestCheckpoint asks maintainLoop to make every version up to ver,
// already committed to Badger, durable in Badger's own files. A request
// already pending is kept; the committer asks again later.
func (s *Store) requestCheckpoint(ver uint64) {
	if s.opts.noCheckpoints {
		return
	}
	select {
	case s.checkpoints <- ver:
	default:
	}
}

// collectValueLog rewrites value-log files that are mostly garbage (values
// of versions compacted away). Badger moves the live values to the current
// file through its unsynced write path and then deletes the old file, which
// alone could lose the moved values in a machine crash. So an open iterator
// pins the old files (Badger defers deleting a value-log file while any
// iterator is open) until the moved values are synced.
func (s *Store) collectValueLog() {
	txn := s.db.NewTransactionAt(readTs(s.Revision()), false)
	it := txn.NewIterator(bdb.IteratorOptions{Prefix: metaRev})
	rewrote := 0
	for rewrote < maxRewritesPerRun {
		s.badgerWrite.Lock()
		err := s.db.RunValueLogGC(valueLogGCRatio)
		s.badgerWrite.Unlock()
		if err != nil {
			if !errors.Is(err, bdb.ErrNoRewrite) && !errors.Is(err, bdb.ErrRejected) {
				s.log.Warn("value log garbage collection", "err", err)
			}
			break
		}
		rewrote++
	}
	if rewrote > 0 {
		if err := syncBadgerFiles(s.opts.Dir); err != nil {
			// Keep the pinned files until Close, whose Badger shutdown
			// syncs the moved values before they go.
			err = fmt.Errorf("sync after value log garbage collection: %w", err)
			if s.failed.CompareAndSwap(nil, &err) {
				s.log.Error("store write path failed; refusing further writes", "err", err)
			}
			s.pinned = append(s.pinned, pinnedIterator{txn, it})
			return
		}
		s.log.Debug("value log garbage collection", "rewritten_files", rewrote)
	}
	it.Close()
	txn.Discard()
}

type pinnedIterator struct {
	txn *bdb.Txn
	it  *bdb.Iterator
}

// syncBadgerFiles syncs Badger's memtable and value logs and the data
// directory. Badger is never synced on the write path; after this returns,
// every write committed to Badger before it was called is durable in those
// files (a memtable flushed meanwhile is in a synced table, and its log may
// be gone: that is fine). Open calls it too: after a kill -9 Badger's logs
// may hold, in the page cache only, groups the write-ahead log did not get
// to sync (never acknowledged, but Badger replays them and the revision
// moves past them); syncing them makes that state durable, so a later
// machine crash cannot take it back while newer groups build on it.
func syncBadgerFiles(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil // a new store: Badger creates the directory
	}
	for _, pattern := range []string{"*.vlog", "*.mem"} {
		names, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return fmt.Errorf("sync badger logs: %w", err)
		}
		for _, name := range names {
			f, err := os.Open(name)
			if errors.Is(err, os.ErrNotExist) {
				continue // flushed (memtable) or collected (value log) meanwhile
			}
			if err != nil {
				return fmt.Errorf("sync badger logs: %w", err)
			}
			err = unix.Fdatasync(int(f.Fd()))
			f.Close()
			if err != nil {
				return fmt.Errorf("sync badger log %s: %w", name, err)
			}
		}
	}
	return syncDir(dir)
}
