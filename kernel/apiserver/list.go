package apiserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metainternalvalidation "k8s.io/apimachinery/pkg/apis/meta/internalversion/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// listOptions are the parsed query options of a list.
type listOptions struct {
	sel   selector
	limit int
	// rev is the store revision to read (0: latest); startKey the first
	// key.
	rev      int64
	startKey string
	// What the resourceVersion asks for: exact (resourceVersionMatch=Exact
	// at rev), consistent (resourceVersion "": every write acknowledged
	// before the request), or a state not older than minRev ("0": any).
	exact      bool
	consistent bool
	minRev     int64
}

// continueToken is the opaque continue parameter: the revision the first
// page was read at and the next key relative to the list prefix, like
// Kubernetes' etcd3 token. RV -1 means "continue at the latest revision"
// (the token handed out with a 410 for an expired one).
type continueToken struct {
	APIVersion string `json:"v"`
	RV         int64  `json:"rv"`
	Start      string `json:"start"`
}

const continueVersion = "meta.k8s.io/v1"

func encodeContinue(rv int64, start string) string {
	data, _ := json.Marshal(continueToken{APIVersion: continueVersion, RV: rv, Start: start})
	return base64.RawURLEncoding.EncodeToString(data)
}

func decodeContinue(tok string) (continueToken, error) {
	var ct continueToken
	data, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return ct, apierrors.NewBadRequest(fmt.Sprintf("continue key is not valid: %v", err))
	}
	if err := json.Unmarshal(data, &ct); err != nil {
		return ct, apierrors.NewBadRequest(fmt.Sprintf("continue key is not valid: %v", err))
	}
	if ct.APIVersion != continueVersion {
		return ct, apierrors.NewBadRequest(fmt.Sprintf("continue key is not valid: unsupported version %q", ct.APIVersion))
	}
	if ct.RV == 0 || ct.RV < -1 {
		return ct, apierrors.NewBadRequest("continue key is not valid: bad revision or key")
	}
	return ct, nil
}

// parseListOptions validates a list's query like Kubernetes'
// ValidateListOptions and resolves the revision to read.
func (s *Server) parseListOptions(req *request) (listOptions, error) {
	q := req.query
	var o listOptions
	sel, err := parseSelector(req.res, q)
	if err != nil {
		return o, err
	}
	o.sel = sel
	if l := q.Get("limit"); l != "" {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			return o, apierrors.NewBadRequest(fmt.Sprintf("limit: invalid value %q", l))
		}
		if n > 0 {
			o.limit = int(min(n, 1<<30))
		}
	}
	if err := validateListQuery(q, false); err != nil {
		return o, err
	}
	rv, match, cont := q.Get("resourceVersion"), q.Get("resourceVersionMatch"), q.Get("continue")
	if cont != "" {
		if rv != "" && rv != "0" {
			return o, apierrors.NewBadRequest("specifying resource version is not allowed when using continue")
		}
		ct, err := decodeContinue(cont)
		if err != nil {
			return o, err
		}
		o.rev, o.startKey = max(ct.RV, 0), objectPrefix(req.res, req.namespace)+ct.Start
		return o, nil
	}
	if o.rev, err = s.resolveListRV(rv, match); err != nil {
		return o, err
	}
	o.exact = match == string(metav1.ResourceVersionMatchExact)
	o.consistent = rv == ""
	if !o.exact {
		o.minRev, _ = parseRV(rv) // resolveListRV has validated it
	}
	return o, nil
}

// validateListQuery applies Kubernetes' ListOptions validation (422 on
// failure) to a list or watch query.
func validateListQuery(q url.Values, watch bool) error {
	opts := internalversion.ListOptions{
		ResourceVersion:      q.Get("resourceVersion"),
		ResourceVersionMatch: metav1.ResourceVersionMatch(q.Get("resourceVersionMatch")),
		Continue:             q.Get("continue"),
		Watch:                watch,
	}
	if q.Has("sendInitialEvents") {
		b, err := strconv.ParseBool(q.Get("sendInitialEvents"))
		if err != nil {
			return apierrors.NewBadRequest(fmt.Sprintf("sendInitialEvents: invalid value %q", q.Get("sendInitialEvents")))
		}
		opts.SendInitialEvents = &b
	}
	if errs := metainternalvalidation.ValidateListOptions(&opts, true); len(errs) > 0 {
		return apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "ListOptions"}, "", errs)
	}
	return nil
}

// resolveListRV maps resourceVersion and resourceVersionMatch (already
// validated) to a store read revision: Exact reads that revision (410 if
// compacted), the other forms read the latest state, which satisfies "not
// older than" any revision the store has reached (504 for one it has not).
func (s *Server) resolveListRV(rv, match string) (int64, error) {
	n, err := parseRV(rv)
	if err != nil {
		return 0, apierrors.NewBadRequest(err.Error())
	}
	if match == string(metav1.ResourceVersionMatchExact) {
		return n, nil
	}
	if cur := s.store.Revision(); n > cur {
		return 0, tooLargeResourceVersion(fmt.Sprintf("%d, current: %d", n, cur))
	}
	return 0, nil
}

// listPage is one page of matching objects: stored values read from the
// store (kvs, with objs when a selector needed them decoded), or the watch
// cache's shared objects (cached; objs only).
type listPage struct {
	kvs    []store.KV
	objs   []runtime.Object
	cached bool
	rev    int64
	cont   string
}

// listObjects reads one page of matching objects from the store. The
// decoded objects of a selected page are read-only.
func (s *Server) listObjects(ctx context.Context, res *resource, namespace string, o listOptions) (*listPage, error) {
	prefix := objectPrefix(res, namespace)
	out := &listPage{rev: o.rev}
	start := o.startKey
	for {
		want := 0
		if o.limit > 0 {
			want = o.limit - len(out.kvs)
			if !o.sel.empty() {
				want = max(want, 256)
			}
		}
		page, err := s.store.List(ctx, prefix, store.ListOptions{StartKey: start, Limit: want, Revision: out.rev})
		if err != nil {
			return nil, err
		}
		out.rev = page.Revision
		for i, kv := range page.KVs {
			if !o.sel.empty() {
				obj, err := s.objectAt(res, kv.Key, kv.Value, kv.ModRevision)
				if err != nil {
					return nil, err
				}
				if !o.sel.matches(res, obj) {
					continue
				}
				out.objs = append(out.objs, obj)
			}
			out.kvs = append(out.kvs, kv)
			if o.limit > 0 && len(out.kvs) == o.limit {
				if i < len(page.KVs)-1 || page.More {
					out.cont = encodeContinue(out.rev, strings.TrimPrefix(kv.Key, prefix)+"\x00")
				}
				return out, nil
			}
		}
		if !page.More || len(page.KVs) == 0 {
			return out, nil
		}
		start = page.KVs[len(page.KVs)-1].Key + "\x00"
	}
}

// serveList serves a list in the negotiated representation, from the
// watch cache when it can (listCached), else from the store.
func (s *Server) serveList(w http.ResponseWriter, r *http.Request, req *request) {
	out, err := negotiate(r)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	o, err := s.parseListOptions(req)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	page, reason := s.listCached(r.Context(), req, o, out)
	if page != nil {
		s.metrics.listServed(req.res, "cache", "")
	} else {
		s.metrics.listServed(req.res, "store", reason)
		if page, err = s.listObjects(r.Context(), req.res, req.namespace, o); err != nil {
			s.writeError(w, r, req, s.listError(err, req, o))
			return
		}
	}
	if out != outJSON && out != outYAML {
		s.writeDecodedList(w, r, req, out, page)
		return
	}
	data, err := listJSON(req.res, page)
	if err == nil && out == outYAML {
		data, err = yaml.JSONToYAML(data)
	}
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	if out == outJSON {
		writeRawJSON(w, http.StatusOK, data)
		return
	}
	w.Header().Set("Content-Type", mediaYAML)
	_, _ = w.Write(data)
}

// listCached serves a list from the watch cache, or returns nil and the
// reason the store must serve it: a continue token or an exact
// resourceVersion (store snapshots), plain JSON or YAML without selectors
// (the store's bytes are sent undecoded, which is cheaper), a cache that
// is not live or has not caught up within cacheFreshWait, or a limit that
// would cut the list (its continue token would have to name a store
// snapshot, and the cache's revision may lie inside a commit group, which
// the store cannot read at). A consistent list (resourceVersion "") waits
// for the cache to reach the store's current revision.
func (s *Server) listCached(ctx context.Context, req *request, o listOptions, out output) (*listPage, string) {
	switch {
	case o.startKey != "":
		return nil, reasonContinue
	case o.exact:
		return nil, reasonExact
	case out == outYAML:
		return nil, reasonYAML
	case out == outJSON && o.sel.empty():
		return nil, reasonJSON
	}
	want := o.minRev
	if o.consistent {
		want = s.store.Revision()
	}
	items, rev, reason := s.cache.list(ctx, req.res, objectPrefix(req.res, req.namespace), want)
	if reason != "" {
		return nil, reason
	}
	if o.limit > 0 && o.sel.empty() && len(items) > o.limit {
		return nil, reasonLimit
	}
	objs := make([]runtime.Object, 0, len(items))
	for _, it := range items {
		if !o.sel.matches(req.res, it.obj) {
			continue
		}
		if o.limit > 0 && len(objs) == o.limit {
			return nil, reasonLimit
		}
		objs = append(objs, it.obj)
	}
	return &listPage{objs: objs, cached: true, rev: rev}, ""
}

// listError turns an expired continue token into Kubernetes' 410 with a
// fresh token that continues at the latest revision.
func (s *Server) listError(err error, req *request, o listOptions) error {
	if !errors.Is(err, errdefs.ErrGone) || req.query.Get("continue") == "" {
		return err
	}
	se := apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. " +
		"You can start a new list without the continue parameter, or use the continue token in this response to retrieve " +
		"the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that " +
		"were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
	se.ErrStatus.ListMeta.Continue = encodeContinue(-1, strings.TrimPrefix(o.startKey, objectPrefix(req.res, req.namespace)))
	return se
}

// listJSON renders a list: stored values without decoding them, or the
// cache's typed objects encoded.
func listJSON(res *resource, page *listPage) ([]byte, error) {
	size := 128 + len(page.cont)
	for _, kv := range page.kvs {
		size += len(kv.Value) + 32
	}
	buf := make([]byte, 0, size)
	buf = append(buf, `{"kind":"`...)
	buf = append(buf, res.listKind()...)
	buf = append(buf, `","apiVersion":"`...)
	buf = append(buf, res.apiVersion()...)
	buf = append(buf, `","metadata":{"resourceVersion":"`...)
	buf = strconv.AppendInt(buf, page.rev, 10)
	buf = append(buf, '"')
	if page.cont != "" {
		buf = append(buf, `,"continue":"`...)
		buf = append(buf, page.cont...)
		buf = append(buf, '"')
	}
	buf = append(buf, `},"items":[`...)
	for i, kv := range page.kvs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendWithRV(buf, kv.Value, kv.ModRevision)
	}
	if page.cached {
		// Typed objects encode to their stored form with the
		// resourceVersion in place.
		for i, obj := range page.objs {
			if i > 0 {
				buf = append(buf, ',')
			}
			data, err := json.Marshal(obj)
			if err != nil {
				return nil, fmt.Errorf("encode cached %s: %w", res.plural, err)
			}
			buf = append(buf, data...)
		}
	}
	return append(buf, "]}"...), nil
}

// writeDecodedList writes a protobuf list, a Table or a
// PartialObjectMetadataList.
func (s *Server) writeDecodedList(w http.ResponseWriter, r *http.Request, req *request, out output, page *listPage) {
	objs, err := s.pageObjects(req.res, page)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	meta := metav1.ListMeta{ResourceVersion: formatRV(page.rev), Continue: page.cont}
	switch out {
	case outProto:
		if err := writeProtoList(w, req.res.apiVersion(), req.res.listKind(), meta, objs); err != nil {
			s.log.Warn("write protobuf list", "resource", req.res.plural, "err", err)
		}
		return
	case outTable:
		t, err := s.tableFor(req, objs, r)
		if err != nil {
			s.writeError(w, r, req, err)
			return
		}
		t.ListMeta = meta
		writeJSON(w, http.StatusOK, t)
		return
	}
	list := &metav1.PartialObjectMetadataList{
		TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"},
		ListMeta: meta,
		Items:    make([]metav1.PartialObjectMetadata, 0, len(objs)),
	}
	for _, obj := range objs {
		list.Items = append(list.Items, *partialMetadata(obj))
	}
	writeJSON(w, http.StatusOK, list)
}

// pageObjects returns a page's typed objects (read-only): those it has,
// else its stored values decoded, reusing the watch cache's objects where
// it holds the same revision.
func (s *Server) pageObjects(res *resource, page *listPage) ([]runtime.Object, error) {
	if page.objs != nil || page.cached {
		return page.objs, nil
	}
	objs := make([]runtime.Object, 0, len(page.kvs))
	for _, kv := range page.kvs {
		obj, err := s.objectAt(res, kv.Key, kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// objectAt returns the object stored under key at revision rev (data is
// its stored form): the watch cache's shared object if it holds that
// revision, else a new decoding. Callers must not modify it.
func (s *Server) objectAt(res *resource, key string, data []byte, rev int64) (runtime.Object, error) {
	if obj := s.cache.lookup(res, key, rev); obj != nil {
		return obj, nil
	}
	return decodeStored(res, data, rev)
}
