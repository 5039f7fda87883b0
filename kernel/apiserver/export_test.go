package apiserver

import (
	"context"
	"time"
)

// WaitCacheFresh waits until the watch cache is live and has applied every
// write up to the store's current revision, or ctx ends (a hang guard for
// tests, which can then tell a cached read from a store read).
func (s *Server) WaitCacheFresh(ctx context.Context) error {
	for {
		if _, reason := s.cache.waitFresh(ctx, s.store.Revision()); reason == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// SetCacheFreshWait changes how long a read waits for the watch cache to
// catch up before the store serves it. Tests that check which one served a
// read raise it, so that the answer does not depend on timing; call it
// before the first request.
func (s *Server) SetCacheFreshWait(d time.Duration) { s.cache.freshWait = d }
