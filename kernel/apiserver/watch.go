package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// defaultWatchTimeout is the lower bound of the random watch timeout when
// the client gives none (Kubernetes' --min-request-timeout, 30 min).
const defaultWatchTimeout = 30 * time.Minute

// watchOptions are the parsed query options of a watch.
type watchOptions struct {
	sel       selector
	rev       int64 // start after this revision (0: now)
	latest    bool  // resourceVersion "": initial events reflect every acknowledged write
	initial   bool  // send the current state as ADDED first
	endMarker bool  // then a bookmark annotated k8s.io/initial-events-end
	bookmarks bool
	timeout   time.Duration
}

func (s *Server) parseWatchOptions(req *request) (watchOptions, error) {
	q := req.query
	var o watchOptions
	sel, err := parseSelector(req.res, q)
	if err != nil {
		return o, err
	}
	if req.name != "" {
		sel = sel.withName(req.name)
	}
	o.sel = sel
	if err := validateListQuery(q, true); err != nil {
		return o, err
	}
	rv := q.Get("resourceVersion")
	if o.rev, err = parseRV(rv); err != nil {
		return o, apierrors.NewBadRequest(err.Error())
	}
	o.latest = rv == ""
	o.bookmarks = isTrue(q.Get("allowWatchBookmarks"))
	if q.Has("sendInitialEvents") {
		o.initial, _ = strconv.ParseBool(q.Get("sendInitialEvents"))
		o.endMarker = o.initial && o.bookmarks
	} else {
		// Legacy semantics: a watch from "" or "0" starts with the state.
		o.initial = o.rev == 0
	}
	if o.initial && o.rev > s.store.Revision() {
		return o, tooLargeResourceVersion(fmt.Sprintf("%d, current: %d", o.rev, s.store.Revision()))
	}
	o.timeout = defaultWatchTimeout + time.Duration(rand.Int64N(int64(defaultWatchTimeout)))
	if t := q.Get("timeoutSeconds"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			return o, apierrors.NewBadRequest(fmt.Sprintf("timeoutSeconds: invalid value %q", t))
		}
		if n > 0 {
			o.timeout = time.Duration(min(n, 1<<31)) * time.Second
		}
	}
	return o, nil
}

// serveWatch streams watch events as newline-delimited JSON
// ({"type":..,"object":..}), or as length-prefixed protobuf frames,
// flushing after each one, until the client goes away, the timeout passes,
// the store ends the watch or Close is called. Events come from a store
// watch; the initial events of a protobuf (or Table) watch come from the
// watch cache when it is live.
func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, req *request) {
	out, err := negotiate(r)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	o, err := s.parseWatchOptions(req)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	if !s.beginWatch() {
		s.writeError(w, r, req, apierrors.NewServiceUnavailable("the server is shutting down"))
		return
	}
	defer s.watches.Done()
	s.metrics.watchStarted(req.res)
	defer s.metrics.watchEnded(req.res)

	ctx, cancel := context.WithTimeout(r.Context(), o.timeout)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	ww := &watchWriter{s: s, w: w, r: r, req: req, out: out, rc: http.NewResponseController(w)}
	var initial *listPage
	start := o.rev
	if o.initial {
		if initial, err = s.watchInitial(ctx, req, o, out); err != nil {
			s.writeError(w, r, req, err)
			return
		}
		start = initial.rev
	}
	watcher, err := s.store.Watch(ctx, objectPrefix(req.res, req.namespace), start)
	if errors.Is(err, errdefs.ErrGone) {
		ww.begin()
		ww.sendError(apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", start, s.store.CompactedRevision())))
		return
	}
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	defer watcher.Stop()
	ww.begin()
	if initial != nil && !ww.sendInitial(initial, o.endMarker) {
		return
	}
	ww.stream(ctx, watcher, o)
}

// watchInitial reads the state a watch starts with. JSON watches send the
// stored bytes, so they read the store; the others need typed objects and
// read the watch cache when it can serve (as a list would, see
// listCached), else the store.
func (s *Server) watchInitial(ctx context.Context, req *request, o watchOptions, out output) (*listPage, error) {
	if out != outJSON {
		page, _ := s.listCached(ctx, req, listOptions{sel: o.sel, consistent: o.latest, minRev: o.rev}, out)
		if page != nil {
			return page, nil
		}
	}
	return s.listObjects(ctx, req.res, req.namespace, listOptions{sel: o.sel})
}

// beginWatch registers a watch unless the server is closing.
func (s *Server) beginWatch() bool {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.watches.Add(1)
	return true
}

// watchWriter encodes watch events onto one response.
type watchWriter struct {
	s       *Server
	w       http.ResponseWriter
	r       *http.Request
	req     *request
	out     output
	rc      *http.ResponseController
	buf     []byte
	failed  bool
	columns bool // Table column definitions sent
}

func (ww *watchWriter) begin() {
	ct := mediaJSON
	if ww.out == outProto {
		ct = mediaProtoWatch
	}
	ww.w.Header().Set("Content-Type", ct)
	ww.w.Header().Set("Cache-Control", "no-cache, private")
	ww.w.WriteHeader(http.StatusOK)
	_ = ww.rc.Flush()
}

func (ww *watchWriter) sendInitial(page *listPage, endMarker bool) bool {
	for _, kv := range page.kvs {
		if !ww.send("ADDED", kv.Key, kv.Value, kv.ModRevision, kv.ModRevision) {
			return false
		}
	}
	if page.cached {
		for _, obj := range page.objs {
			if !ww.sendObject("ADDED", obj) {
				return false
			}
		}
	}
	if endMarker {
		return ww.sendBookmark(page.rev, true)
	}
	return true
}

func (ww *watchWriter) stream(ctx context.Context, watcher store.Watcher, o watchOptions) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-watcher.Events():
			if !ok {
				if errors.Is(watcher.Err(), errdefs.ErrGone) {
					ww.sendError(apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %v", watcher.Err())))
				}
				return
			}
			if !ww.event(ev, o) {
				return
			}
		}
	}
}

// event translates one store event through the selector, as Kubernetes'
// watch cache does: an object entering the selection is ADDED, one leaving
// it is DELETED (with its previous content at the event's revision).
func (ww *watchWriter) event(ev store.Event, o watchOptions) bool {
	res := ww.req.res
	if ev.Type == store.Bookmark {
		if !o.bookmarks {
			return true
		}
		return ww.sendBookmark(ev.Revision, false)
	}
	key := ev.KV.Key
	cur := true
	if !o.sel.empty() {
		obj, err := ww.s.objectAt(res, key, ev.KV.Value, ev.KV.ModRevision)
		if err != nil {
			ww.sendError(apierrors.NewInternalError(err))
			return false
		}
		cur = o.sel.matches(res, obj)
	}
	var err error
	switch ev.Type {
	case store.Added:
		if cur {
			return ww.send("ADDED", key, ev.KV.Value, ev.KV.ModRevision, ev.Revision)
		}
	case store.Deleted:
		if cur {
			return ww.send("DELETED", key, ev.KV.Value, ev.KV.ModRevision, ev.Revision)
		}
	case store.Modified:
		prev := true
		if !o.sel.empty() && ev.PrevValue != nil {
			if prev, err = o.sel.matchesStored(res, ev.PrevValue); err != nil {
				ww.sendError(apierrors.NewInternalError(err))
				return false
			}
		}
		switch {
		case cur && prev:
			return ww.send("MODIFIED", key, ev.KV.Value, ev.KV.ModRevision, ev.Revision)
		case cur:
			return ww.send("ADDED", key, ev.KV.Value, ev.KV.ModRevision, ev.Revision)
		case prev:
			return ww.send("DELETED", key, ev.PrevValue, 0, ev.Revision)
		}
	}
	return true
}

// send writes one event with the object stored under key as data and the
// resourceVersion rev. dataRev is the revision data was written at (0 if
// unknown): when it is rev, the watch cache's object can be sent as is.
func (ww *watchWriter) send(typ, key string, data []byte, dataRev, rev int64) bool {
	if ww.out == outJSON {
		ww.buf = append(ww.buf[:0], `{"type":"`...)
		ww.buf = append(ww.buf, typ...)
		ww.buf = append(ww.buf, `","object":`...)
		ww.buf = appendWithRV(ww.buf, data, rev)
		ww.buf = append(ww.buf, "}\n"...)
		return ww.flush()
	}
	var obj runtime.Object
	var err error
	if dataRev == rev {
		obj, err = ww.s.objectAt(ww.req.res, key, data, rev)
	} else {
		obj, err = decodeStored(ww.req.res, data, rev)
	}
	if err != nil {
		ww.sendError(apierrors.NewInternalError(err))
		return false
	}
	return ww.sendObject(typ, obj)
}

// sendObject writes an event whose object (read-only) is converted to the
// negotiated representation.
func (ww *watchWriter) sendObject(typ string, obj runtime.Object) bool {
	if ww.out == outProto {
		return ww.sendProto(typ, obj)
	}
	var payload any = obj
	switch ww.out {
	case outTable:
		t, err := ww.s.tableFor(ww.req, []runtime.Object{obj}, ww.r)
		if err != nil {
			ww.sendError(apiError(err, ww.req))
			return false
		}
		t.ResourceVersion = accessor(obj).GetResourceVersion()
		payload = t
	case outMetadata:
		payload = partialMetadata(obj)
	}
	return ww.sendPayload(typ, payload)
}

// watchEvent is the wire shape of metav1.WatchEvent.
type watchEvent struct {
	Type   string `json:"type"`
	Object any    `json:"object"`
}

// bookmarkObject is a BOOKMARK's object: the resource's kind and only
// metadata.
type bookmarkObject struct {
	metav1.TypeMeta
	Metadata metav1.ObjectMeta `json:"metadata"`
}

// sendProto writes one protobuf frame.
func (ww *watchWriter) sendProto(typ string, obj runtime.Object) bool {
	var err error
	if ww.buf, err = appendProtoWatchEvent(ww.buf[:0], typ, obj); err != nil {
		ww.s.log.Error("encode watch event", "err", err)
		return false
	}
	return ww.flush()
}

func (ww *watchWriter) sendPayload(typ string, payload any) bool {
	data, err := json.Marshal(watchEvent{Type: typ, Object: payload})
	if err != nil {
		ww.s.log.Error("encode watch event", "err", err)
		return false
	}
	ww.buf = append(append(ww.buf[:0], data...), '\n')
	return ww.flush()
}

// sendBookmark writes a BOOKMARK carrying only the revision (and, for the
// end of the initial events, the k8s.io/initial-events-end annotation).
func (ww *watchWriter) sendBookmark(rev int64, end bool) bool {
	res := ww.req.res
	meta := metav1.ObjectMeta{ResourceVersion: formatRV(rev)}
	if end {
		meta.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
	}
	switch ww.out {
	case outProto:
		obj := res.newObj()
		obj.GetObjectKind().SetGroupVersionKind(res.gvk)
		m := accessor(obj)
		m.SetResourceVersion(meta.ResourceVersion)
		m.SetAnnotations(meta.Annotations)
		return ww.sendProto("BOOKMARK", obj)
	case outTable:
		t := &metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"}}
		t.ResourceVersion = meta.ResourceVersion
		return ww.sendPayload("BOOKMARK", t)
	case outMetadata:
		return ww.sendPayload("BOOKMARK", &metav1.PartialObjectMetadata{
			TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}, ObjectMeta: meta})
	}
	return ww.sendPayload("BOOKMARK", bookmarkObject{
		TypeMeta: metav1.TypeMeta{Kind: res.gvk.Kind, APIVersion: res.apiVersion()}, Metadata: meta})
}

// sendError writes an ERROR event carrying a Status.
func (ww *watchWriter) sendError(se *apierrors.StatusError) {
	st := se.ErrStatus
	st.Kind, st.APIVersion = "Status", "v1"
	if ww.out == outProto {
		ww.sendProto("ERROR", &st)
		return
	}
	ww.sendPayload("ERROR", &st)
}

func (ww *watchWriter) flush() bool {
	if ww.failed {
		return false
	}
	if _, err := ww.w.Write(ww.buf); err != nil {
		ww.failed = true
		return false
	}
	if err := ww.rc.Flush(); err != nil {
		ww.failed = true
		return false
	}
	return true
}
