package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// TestPoolHammer runs many goroutines of calls, some of which trap, on a
// small pool. An instance used by two calls at once would mix up the
// guest's buffers, so every echo must come back exactly.
func TestPoolHammer(t *testing.T) {
	e, _ := newTestEngine(t)
	const poolSize, goroutines, calls = 3, 8, 60
	p := loadGuest(t, e, PluginConfig{Name: "hammered", PoolSize: poolSize})
	var wg sync.WaitGroup
	var mu sync.Mutex
	traps := 0
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				if i%20 == 7 {
					_, err := p.Call(context.Background(), "panic", nil)
					if !errors.Is(err, errdefs.ErrPluginTrap) {
						t.Errorf("panic: %v, want ErrPluginTrap", err)
					}
					mu.Lock()
					traps++
					mu.Unlock()
					continue
				}
				in := fmt.Sprintf("g%d-call%d-%s", g, i, string(make([]byte, i)))
				out, err := p.Call(context.Background(), "echo", []byte(in))
				if err != nil || string(out) != in {
					t.Errorf("echo %q = %q, %v", in, out, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	idle, busy := p.pool.size()
	if busy != 0 || idle > poolSize {
		t.Errorf("pool: %d idle, %d busy; want at most %d idle, none busy", idle, busy, poolSize)
	}
	if started := p.started.Load(); started > int64(1+poolSize+traps) {
		t.Errorf("%d instances started for a pool of %d and %d traps", started, poolSize, traps)
	}
}

func TestCloseWhileCalling(t *testing.T) {
	e, _ := newTestEngine(t)
	p := loadGuest(t, e, PluginConfig{Name: "closing", PoolSize: 2})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				out, err := p.Call(context.Background(), "echo", []byte("x"))
				if err != nil {
					if !errors.Is(err, errdefs.ErrUnavailable) {
						t.Errorf("call during close: %v, want ErrUnavailable", err)
					}
					return
				}
				if string(out) != "x" {
					t.Errorf("echo = %q", out)
				}
			}
		}()
	}
	if err := p.Close(context.Background()); err != nil {
		t.Errorf("close: %v", err)
	}
	wg.Wait()
	if _, err := p.Call(context.Background(), "echo", []byte("x")); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("call after close: %v, want ErrUnavailable", err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Errorf("close engine: %v", err)
	}
	if _, err := e.Load(context.Background(), PluginConfig{Name: "late", Path: guestPath(t, "guest")}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("load after the engine closed: %v, want ErrUnavailable", err)
	}
}
