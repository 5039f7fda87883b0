package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// The watch cache keeps every served resource's objects decoded in memory,
// as kube-apiserver's watch cache does, so that lists are served without
// reading and decoding the store: selectors match typed objects, and
// protobuf responses encode them directly.
//
// One store watch of store.Root feeds all resources. Every revision is a
// write to a key under Root, so that single stream says exactly how far the
// cache has caught up (its progress), which a per-resource watch cannot:
// a list with resourceVersion "" waits until the progress reaches the
// store's revision at the time of the request (a bounded wait; the store
// serves the list otherwise), and then reflects every acknowledged write.
// See RATIONALE.md ("Why one watch for the whole watch cache?").

// Watch cache tuning.
const (
	// cacheFreshWait bounds how long a read waits for the cache to reach
	// the revision it needs before the store serves it instead.
	cacheFreshWait = time.Second
	// cacheFillPage is the page size of the store list that fills the
	// cache.
	cacheFillPage = 1000
	// cacheRetryMin and cacheRetryMax bound the back-off between failed
	// fills or watches (a relist after ErrGone or ErrTooSlow is immediate).
	cacheRetryMin = 100 * time.Millisecond
	cacheRetryMax = 5 * time.Second
	// cacheQueueMax bounds the events waiting for the applier; beyond it
	// the cache gives up its watch and relists, as the store would cut off
	// any other slow watcher.
	cacheQueueMax = 1 << 16
)

// Reasons a list is served by the store rather than the cache (metric
// label values).
const (
	reasonContinue = "continue"  // a continue token reads a store snapshot
	reasonExact    = "exact"     // resourceVersionMatch=Exact
	reasonLimit    = "limit"     // the page would need a continue token
	reasonJSON     = "json"      // plain JSON: the store's bytes need no decoding
	reasonYAML     = "yaml"      // YAML is converted from the stored JSON
	reasonNotReady = "not_ready" // the cache is (re)filling
	reasonTimeout  = "timeout"   // the cache did not catch up in cacheFreshWait
	reasonBroken   = "broken"    // a stored value of the resource did not decode
)

// watchCache is the cache of all resources. Its applier goroutine (run) is
// the only writer of the object sets; readers take snapshots. It is safe
// for concurrent use.
type watchCache struct {
	st      store.Store
	log     *slog.Logger
	sets    map[string]*objectSet // by resource storage segment
	order   []*objectSet          // registry order, for metrics
	metrics *metrics
	// freshWait bounds waitFresh (cacheFreshWait; tests raise it).
	freshWait time.Duration

	mu sync.Mutex
	// rev is the progress: every event at or below rev has been applied.
	rev int64
	// live is true while the cache follows the store; false before the
	// first fill and while relisting, when reads go to the store.
	live bool
	// changed, when not nil, is closed at the next change of rev or live
	// (created by waiters only).
	changed chan struct{}

	done chan struct{}
}

func newWatchCache(st store.Store, reg *registry, log *slog.Logger) *watchCache {
	c := &watchCache{st: st, log: log, sets: make(map[string]*objectSet, len(reg.all)),
		freshWait: cacheFreshWait, done: make(chan struct{})}
	for _, res := range reg.all {
		if _, dup := c.sets[res.storage]; dup {
			continue
		}
		set := &objectSet{res: res}
		c.sets[res.storage] = set
		c.order = append(c.order, set)
	}
	return c
}

// start fills the cache and keeps it current until ctx ends; wait returns
// once it has stopped.
func (c *watchCache) start(ctx context.Context) { go c.run(ctx) }

func (c *watchCache) wait() { <-c.done }

// run fills the cache, follows the store, and refills after the watch is
// lost, until ctx ends.
func (c *watchCache) run(ctx context.Context) {
	defer close(c.done)
	backoff := cacheRetryMin
	for {
		rev, err := c.fill(ctx)
		if err == nil {
			backoff = cacheRetryMin
			err = c.follow(ctx, rev)
		}
		c.setLive(false)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errdefs.ErrGone) || errors.Is(err, errdefs.ErrTooSlow) {
			c.log.Info("watch cache lost its watch; relisting", "err", err)
			continue
		}
		c.log.Warn("watch cache stopped; retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, cacheRetryMax)
	}
}

// setFor returns the object set of a store key, or nil for keys of no
// served resource.
func (c *watchCache) setFor(key string) *objectSet {
	rest, ok := strings.CutPrefix(key, store.Root)
	if !ok {
		return nil
	}
	seg, after, _ := strings.Cut(rest, "/")
	if set := c.sets[seg]; set != nil {
		return set
	}
	// A group-qualified storage segment ("<group>/<plural>").
	if next, _, ok := strings.Cut(after, "/"); ok {
		return c.sets[seg+"/"+next]
	}
	return nil
}

// fill lists every object under store.Root at one revision, replaces the
// sets' contents and returns that revision. Objects unchanged since the
// last fill keep their decoded form.
func (c *watchCache) fill(ctx context.Context) (int64, error) {
	next := make(map[*objectSet][]*cachedObject, len(c.order))
	broken := make(map[*objectSet]bool)
	var rev int64
	start := ""
	for {
		page, err := c.st.List(ctx, store.Root, store.ListOptions{StartKey: start, Limit: cacheFillPage, Revision: rev})
		if err != nil {
			return 0, fmt.Errorf("fill watch cache: %w", err)
		}
		rev = page.Revision
		for _, kv := range page.KVs {
			set := c.setFor(kv.Key)
			if set == nil {
				continue
			}
			co, err := reuseOrDecode(set, kv)
			if err != nil {
				c.log.Error("watch cache: stored object does not decode", "key", kv.Key, "err", err)
				broken[set] = true
				continue
			}
			next[set] = append(next[set], co)
		}
		if !page.More || len(page.KVs) == 0 {
			break
		}
		start = page.KVs[len(page.KVs)-1].Key + "\x00"
	}
	for _, set := range c.order {
		set.replace(next[set], broken[set], rev)
	}
	c.advance(rev)
	c.metrics.cacheFilled()
	return rev, nil
}

// reuseOrDecode returns the cached object of kv: the set's current one if
// it is at kv's revision, else a new decoding.
func reuseOrDecode(set *objectSet, kv store.KV) (*cachedObject, error) {
	old := set.all()
	if i, ok := slices.BinarySearchFunc(old, kv.Key, compareKey); ok && old[i].rev == kv.ModRevision {
		return old[i], nil
	}
	return newCachedObject(set.res, kv.Key, kv.Value, kv.ModRevision)
}

func newCachedObject(res *resource, key string, data []byte, rev int64) (*cachedObject, error) {
	obj, err := decodeStored(res, data, rev)
	if err != nil {
		return nil, err
	}
	freezeObject(obj)
	return &cachedObject{key: key, rev: rev, obj: obj}, nil
}

// follow watches store.Root after rev and applies the events until the
// watch ends or ctx does (then it returns nil).
func (c *watchCache) follow(ctx context.Context, rev int64) error {
	w, err := c.st.Watch(ctx, store.Root, rev)
	if err != nil {
		return fmt.Errorf("watch for the watch cache: %w", err)
	}
	q := &eventQueue{wake: make(chan struct{}, 1)}
	var pump sync.WaitGroup
	pump.Go(func() { q.pump(w) })
	defer func() {
		w.Stop()
		pump.Wait()
	}()
	for {
		batch, err := q.take(ctx)
		if err != nil || batch == nil {
			return err
		}
		c.apply(batch)
	}
}

// apply applies events in order, advancing the progress after each.
func (c *watchCache) apply(events []store.Event) {
	for _, ev := range events {
		if ev.Type != store.Bookmark {
			c.applyOne(ev)
		}
		c.advance(ev.Revision)
	}
}

func (c *watchCache) applyOne(ev store.Event) {
	set := c.setFor(ev.KV.Key)
	if set == nil {
		return
	}
	if ev.Type == store.Deleted {
		set.remove(ev.KV.Key, ev.Revision)
		return
	}
	co, err := newCachedObject(set.res, ev.KV.Key, ev.KV.Value, ev.KV.ModRevision)
	if err != nil {
		c.log.Error("watch cache: stored object does not decode; serving its resource from the store",
			"key", ev.KV.Key, "revision", ev.Revision, "err", err)
		set.markBroken(ev.Revision)
		return
	}
	set.put(co, ev.Revision)
}

// advance records that every event at or below rev is applied and that
// the cache is live.
func (c *watchCache) advance(rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rev = max(c.rev, rev)
	c.live = true
	c.wakeLocked()
}

func (c *watchCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	c.wakeLocked()
}

func (c *watchCache) wakeLocked() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// revision returns the progress (0 before the first fill).
func (c *watchCache) revision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// waitFresh waits until the cache is live and its progress is at least
// want, for at most freshWait, and returns the progress; reason says
// why not otherwise.
func (c *watchCache) waitFresh(ctx context.Context, want int64) (rev int64, reason string) {
	var timer *time.Timer
	for {
		c.mu.Lock()
		switch {
		case !c.live:
			c.mu.Unlock()
			return 0, reasonNotReady
		case c.rev >= want:
			rev := c.rev
			c.mu.Unlock()
			return rev, ""
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		changed := c.changed
		c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(c.freshWait)
			defer timer.Stop()
		}
		select {
		case <-changed:
		case <-timer.C:
			return 0, reasonTimeout
		case <-ctx.Done():
			return 0, reasonTimeout
		}
	}
}

// list returns res's cached objects under prefix, in key order, as of a
// revision of at least want, and that revision; or a reason why the store
// must serve the read.
func (c *watchCache) list(ctx context.Context, res *resource, prefix string, want int64) ([]*cachedObject, int64, string) {
	set := c.sets[res.storage]
	progress, reason := c.waitFresh(ctx, want)
	if reason != "" {
		return nil, 0, reason
	}
	// The set holds exactly the events up to max(progress, applied):
	// every event up to progress was applied before the snapshot, and
	// applied is the set's newest event.
	items, applied, ok := set.snapshot(prefix)
	if !ok {
		return nil, 0, reasonBroken
	}
	return items, max(progress, applied), ""
}

// lookup returns the cached object of key if the cache holds it at
// revision rev, else nil. The object is shared and read-only.
func (c *watchCache) lookup(res *resource, key string, rev int64) runtime.Object {
	if co := c.sets[res.storage].get(key); co != nil && co.rev == rev {
		return co.obj
	}
	return nil
}

// eventQueue decouples the store watch from the applier: the pump drains
// the watch as fast as events arrive, so a burst of writes that takes the
// applier a while to decode does not overflow the store's per-watcher
// buffer (which would end the watch with ErrTooSlow and force a relist).
type eventQueue struct {
	mu     sync.Mutex
	events []store.Event
	closed bool
	err    error
	wake   chan struct{} // capacity 1
}

// pump moves events from w into the queue until w's channel closes, or
// stops w once cacheQueueMax events are waiting.
func (q *eventQueue) pump(w store.Watcher) {
	var err error
	for ev := range w.Events() {
		q.mu.Lock()
		q.events = append(q.events, ev)
		full := len(q.events) >= cacheQueueMax
		q.mu.Unlock()
		q.signal()
		if full && err == nil {
			err = fmt.Errorf("watch cache: %d events behind: %w", cacheQueueMax, errdefs.ErrTooSlow)
			w.Stop()
		}
	}
	if err == nil {
		err = w.Err()
	}
	if err == nil {
		err = fmt.Errorf("watch cache: store watch ended: %w", errdefs.ErrUnavailable)
	}
	q.mu.Lock()
	q.closed, q.err = true, err
	q.mu.Unlock()
	q.signal()
}

func (q *eventQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns the queued events, waiting for some; nil, nil when ctx
// ends; nil and the watch's error once it ended and the queue is empty.
func (q *eventQueue) take(ctx context.Context) ([]store.Event, error) {
	for {
		q.mu.Lock()
		if evs := q.events; len(evs) > 0 {
			q.events = nil
			q.mu.Unlock()
			return evs, nil
		}
		closed, err := q.closed, q.err
		q.mu.Unlock()
		if closed {
			if ctx.Err() != nil {
				return nil, nil
			}
			return nil, err
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return nil, nil
		}
	}
}
