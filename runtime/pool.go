package runtime

import (
	"context"
	"fmt"
	"sync"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// pool bounds the instances of one plugin. A call holds a slot (a token in
// slots) for as long as it uses an instance, so there are never more than
// cap(slots) instances and an instance is never used by two calls. Idle
// instances are reused last-in first-out (warm caches); a slot without an
// idle instance creates one with start. A broken instance is closed when
// it is returned and replaced on demand.
type pool struct {
	slots chan struct{}
	start func(ctx context.Context) (*instance, error)

	mu     sync.Mutex
	idle   []*instance
	closed bool
}

func newPool(size int, start func(ctx context.Context) (*instance, error)) *pool {
	return &pool{slots: make(chan struct{}, size), start: start}
}

// get waits for a slot (as long as ctx allows) and returns an idle or new
// instance.
func (p *pool) get(ctx context.Context) (*instance, error) {
	select {
	case p.slots <- struct{}{}:
	default:
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for an instance: %w: %w", errdefs.ErrPluginTimeout, context.Cause(ctx))
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, fmt.Errorf("plugin closed: %w", errdefs.ErrUnavailable)
	}
	var in *instance
	if n := len(p.idle); n > 0 {
		in, p.idle = p.idle[n-1], p.idle[:n-1]
	}
	p.mu.Unlock()
	if in != nil {
		return in, nil
	}
	in, err := p.start(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return in, nil
}

// put returns in to the pool, or closes it when it is broken or the pool
// is closed, and frees its slot.
func (p *pool) put(ctx context.Context, in *instance) {
	p.mu.Lock()
	keep := !in.broken && !p.closed
	if keep {
		p.idle = append(p.idle, in)
	}
	p.mu.Unlock()
	if !keep {
		in.close(ctx)
	}
	<-p.slots
}

// add puts an instance created outside get (the first one, at load) into
// the idle list.
func (p *pool) add(in *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = append(p.idle, in)
}

// close closes the idle instances; instances in use are closed when they
// are returned.
func (p *pool) close(ctx context.Context) {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, in := range idle {
		in.close(ctx)
	}
}

// size reports the idle instances and the slots in use.
func (p *pool) size() (idle, busy int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle), len(p.slots)
}
