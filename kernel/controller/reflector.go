package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// reflector keeps one resourceCache in step with the API server: a list,
// then a watch from the list's resourceVersion, resumed after errors and
// replaced by a new list after 410 Gone. Events go to the driver as
// (old, new) pairs, new nil for deletions.
type reflector struct {
	api    *api
	cache  *resourceCache
	log    *slog.Logger
	notify func(info *resourceInfo, old, cur *object)
	synced chan struct{}
}

// watchTimeout is how long one watch request lasts before it is renewed.
const watchTimeout = 5 * time.Minute

func (r *reflector) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		rv, err := r.list(ctx)
		if err == nil && first {
			close(r.synced)
			first = false
		}
		for err == nil && ctx.Err() == nil {
			rv, err = r.watch(ctx, rv)
			if err == nil {
				backoff = 100 * time.Millisecond
			}
		}
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, errdefs.ErrGone) {
			r.log.Warn("list/watch", "resource", r.cache.info.name, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	}
}

// list replaces the cache with a fresh list and returns its
// resourceVersion.
func (r *reflector) list(ctx context.Context) (string, error) {
	info := r.cache.info
	body, err := r.api.do(ctx, http.MethodGet, info.path("", "", ""), nil, "", nil)
	if err != nil {
		return "", err
	}
	var l struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return "", fmt.Errorf("decode %s list: %w: %w", info.name, errdefs.ErrInvalid, err)
	}
	objs := make([]*object, 0, len(l.Items))
	for _, it := range l.Items {
		o, err := decodeObject(info, it)
		if err != nil {
			return "", err
		}
		objs = append(objs, o)
	}
	for _, ev := range r.cache.replace(objs) {
		r.notify(info, ev[0], ev[1])
	}
	return l.Metadata.ResourceVersion, nil
}

// watchEvent is one line of a watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// watch follows the stream from rv until it ends and returns the last
// resourceVersion seen; ErrGone asks for a new list.
func (r *reflector) watch(ctx context.Context, rv string) (string, error) {
	info := r.cache.info
	q := url.Values{
		"watch": {"1"}, "resourceVersion": {rv}, "allowWatchBookmarks": {"true"},
		"timeoutSeconds": {fmt.Sprint(int(watchTimeout / time.Second))},
	}
	resp, err := r.api.send(ctx, http.MethodGet, info.path("", "", ""), q, "", nil)
	if err != nil {
		return rv, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var buf [4096]byte
		n, _ := resp.Body.Read(buf[:])
		return rv, statusError(http.MethodGet, info.path("", "", ""), resp.StatusCode, buf[:n])
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return rv, ctx.Err()
			}
			return rv, nil // the stream ended: watch again from rv
		}
		switch ev.Type {
		case "ERROR":
			var st struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			_ = json.Unmarshal(ev.Object, &st)
			if st.Code == http.StatusGone {
				return rv, fmt.Errorf("watch %s: %s: %w", info.name, st.Message, errdefs.ErrGone)
			}
			return rv, fmt.Errorf("watch %s: %d %s: %w", info.name, st.Code, st.Message, errdefs.ErrUnavailable)
		case "BOOKMARK":
			var m objectMeta
			if err := json.Unmarshal(ev.Object, &m); err == nil && m.Metadata.ResourceVersion != "" {
				rv = m.Metadata.ResourceVersion
			}
			continue
		}
		o, err := decodeObject(info, ev.Object)
		if err != nil {
			r.log.Warn("watch event", "resource", info.name, "err", err)
			continue
		}
		if o.rv != 0 {
			rv = fmt.Sprint(o.rv)
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			if old, stored := r.cache.upsert(o, true); stored {
				r.notify(info, old, o)
			}
		case "DELETED":
			if old := r.cache.remove(o.namespace, o.name, o.uid); old != nil {
				r.notify(info, old, nil)
			}
		}
	}
}
