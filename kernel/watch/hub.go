// Package watch fans committed store events out to watchers.
//
// A Hub receives each committed group of events from the store's committer
// (Publish), keeps the most recent ones in a ring for cheap resumes, and hands
// every watcher the events under its prefix in revision order. Delivery never
// blocks the publisher: each watcher owns a bounded buffer, and a watcher
// whose buffer is full is cut off with errdefs.ErrTooSlow (its client
// relists, as Kubernetes clients do). Resumes older than the ring read the
// store's retained history through the History interface, off the publisher's
// path. A Hub is safe for concurrent use.
package watch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// History reads retained events from durable storage.
type History interface {
	// Events returns the events under prefix with after < Revision <= upto,
	// in revision order; ErrGone if part of that range was compacted.
	Events(ctx context.Context, prefix string, after, upto int64) ([]store.Event, error)
}

// Config sizes a Hub.
type Config struct {
	// RingSize is how many recent events stay in memory (default 4096).
	RingSize int
	// Buffer is each watcher's event buffer (default 1024).
	Buffer int
	// BookmarkInterval is how often idle watchers get a Bookmark (default 1m).
	BookmarkInterval time.Duration
	History          History
}

// Hub fans events out to watchers.
type Hub struct {
	cfg Config

	published atomic.Int64 // == rev, readable without mu

	mu        sync.Mutex
	rev       int64         // last published revision
	compacted int64         // revisions at or below this are gone
	ring      []store.Event // circular; ring[(first+i)%len] holds revision ringStart+i
	ringHead  int           // index of the oldest event in ring
	ringLen   int
	byPrefix  map[string]map[*watcher]struct{}
	closed    bool

	stop chan struct{}
	done chan struct{}
}

// NewHub starts a Hub whose last published revision is rev and whose history
// is compacted at compacted.
func NewHub(cfg Config, rev, compacted int64) *Hub {
	if cfg.RingSize <= 0 {
		cfg.RingSize = 4096
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1024
	}
	if cfg.BookmarkInterval <= 0 {
		cfg.BookmarkInterval = time.Minute
	}
	h := &Hub{
		cfg:       cfg,
		rev:       rev,
		compacted: compacted,
		ring:      make([]store.Event, cfg.RingSize),
		byPrefix:  make(map[string]map[*watcher]struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	h.published.Store(rev)
	go h.bookmarks()
	return h
}

// Revision returns the last published revision. A reader that sees R here
// and then watches from R gets every event after R; a watcher that receives
// the event at R can read R's state through a store that reads at Revision.
func (h *Hub) Revision() int64 { return h.published.Load() }

// Publish delivers events (consecutive revisions, ascending, all above the
// last published revision) to watchers and records them in the ring. It
// never blocks on a watcher.
func (h *Hub) Publish(events []store.Event) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rev = events[len(events)-1].Revision
	h.published.Store(h.rev)
	for i := range events {
		ev := events[i]
		h.push(ev)
		for prefix, ws := range h.byPrefix {
			if !strings.HasPrefix(ev.KV.Key, prefix) {
				continue
			}
			for w := range ws {
				select {
				case w.in <- ev:
				default:
					h.dropLocked(w, errdefs.ErrTooSlow)
				}
			}
		}
	}
}

// Compacted records that history at or below rev is gone.
func (h *Hub) Compacted(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev > h.compacted {
		h.compacted = rev
	}
}

func (h *Hub) push(ev store.Event) {
	n := len(h.ring)
	if h.ringLen < n {
		h.ring[(h.ringHead+h.ringLen)%n] = ev
		h.ringLen++
		return
	}
	h.ring[h.ringHead] = ev
	h.ringHead = (h.ringHead + 1) % n
}

// ringSince returns the ring's events under prefix with Revision > after,
// and whether the ring covers every revision above after.
func (h *Hub) ringSince(prefix string, after int64) ([]store.Event, bool) {
	if h.ringLen == 0 {
		return nil, after >= h.rev
	}
	n := len(h.ring)
	oldest := h.ring[h.ringHead].Revision
	if after+1 < oldest {
		return nil, false
	}
	var out []store.Event
	for i := int(max(after+1-oldest, 0)); i < h.ringLen; i++ {
		ev := h.ring[(h.ringHead+i)%n]
		if strings.HasPrefix(ev.KV.Key, prefix) {
			out = append(out, ev)
		}
	}
	return out, true
}

// Watch starts a watch of prefix delivering events with Revision > after
// (after == 0: from the last published revision on). The watch ends when ctx
// is done, Stop is called, the Hub closes, or the watcher falls behind.
func (h *Hub) Watch(ctx context.Context, prefix string, after int64) (store.Watcher, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("watch %s: %w", prefix, errdefs.ErrUnavailable)
	}
	if after == 0 {
		after = h.rev
	}
	if after > h.rev {
		return nil, fmt.Errorf("watch %s from revision %d, current is %d: %w", prefix, after, h.rev, errdefs.ErrFutureRevision)
	}
	if after < h.compacted {
		return nil, fmt.Errorf("watch %s from revision %d, compacted at %d: %w", prefix, after, h.compacted, errdefs.ErrGone)
	}
	w := &watcher{hub: h, prefix: prefix, in: make(chan store.Event, h.cfg.Buffer), quit: make(chan struct{})}
	w.out = w.in
	backlog, covered := h.ringSince(prefix, after)
	switch {
	case covered && len(backlog) <= h.cfg.Buffer/2:
		// Common case: the backlog fits the buffer; no extra goroutine.
		for _, ev := range backlog {
			w.in <- ev
		}
	case covered:
		w.out = make(chan store.Event)
		go w.forward(ctx, backlog, 0, 0)
	default:
		w.out = make(chan store.Event)
		go w.forward(ctx, nil, after, h.rev)
	}
	ws := h.byPrefix[prefix]
	if ws == nil {
		ws = make(map[*watcher]struct{})
		h.byPrefix[prefix] = ws
	}
	ws[w] = struct{}{}
	w.unhook = context.AfterFunc(ctx, w.Stop)
	return w, nil
}

// dropLocked removes w and closes its input with err. Callers hold h.mu.
func (h *Hub) dropLocked(w *watcher, err error) {
	ws := h.byPrefix[w.prefix]
	if _, ok := ws[w]; !ok {
		return
	}
	delete(ws, w)
	if len(ws) == 0 {
		delete(h.byPrefix, w.prefix)
	}
	w.setErr(err)
	close(w.in)
	close(w.quit)
}

func (h *Hub) bookmarks() {
	defer close(h.done)
	t := time.NewTicker(h.cfg.BookmarkInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		h.mu.Lock()
		bm := store.Event{Type: store.Bookmark, Revision: h.rev}
		for _, ws := range h.byPrefix {
			for w := range ws {
				select {
				case w.in <- bm:
				default: // a full buffer gets no bookmark; events still flow
				}
			}
		}
		h.mu.Unlock()
	}
}

// Close ends every watch with ErrUnavailable and stops the Hub.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	for _, ws := range h.byPrefix {
		for w := range ws {
			h.dropLocked(w, errdefs.ErrUnavailable)
		}
	}
	h.mu.Unlock()
	close(h.stop)
	<-h.done
}

type watcher struct {
	hub    *Hub
	prefix string
	in     chan store.Event // filled by the publisher; closed by the hub
	out    chan store.Event // what the consumer reads; == in unless forwarding
	quit   chan struct{}    // closed when the hub drops the watcher
	unhook func() bool      // guarded by hub.mu

	errMu sync.Mutex
	err   error
}

var _ store.Watcher = (*watcher)(nil)

func (w *watcher) Events() <-chan store.Event { return w.out }

func (w *watcher) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *watcher) setErr(err error) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// Stop ends the watch; Err stays nil unless it had already failed.
func (w *watcher) Stop() {
	w.hub.mu.Lock()
	w.hub.dropLocked(w, nil)
	unhook := w.unhook
	w.hub.mu.Unlock()
	if unhook != nil {
		unhook()
	}
}

// forward sends a backlog (given, or read from history for (after, upto])
// and then the live input to out. It runs only for watches whose backlog did
// not fit the buffer.
func (w *watcher) forward(ctx context.Context, backlog []store.Event, after, upto int64) {
	defer close(w.out)
	if backlog == nil && upto > after {
		evs, err := w.hub.cfg.History.Events(ctx, w.prefix, after, upto)
		if err != nil {
			w.setErr(fmt.Errorf("watch %s: read history: %w", w.prefix, err))
			w.Stop()
			return
		}
		backlog = evs
	}
	for _, ev := range backlog {
		select {
		case w.out <- ev:
		case <-w.quit:
			return
		}
	}
	for ev := range w.in {
		select {
		case w.out <- ev:
		case <-w.quit:
			return
		}
	}
}
