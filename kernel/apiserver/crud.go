package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// maxUpdateRetries bounds the retries of an unconditional update (or patch)
// that lost a race with another writer.
const maxUpdateRetries = 16

// writeOptions are the query options common to writes.
type writeOptions struct {
	dryRun       bool
	fieldManager string
	// internal writes (bootstrap, server-side bookkeeping) skip admission.
	internal bool
	// apply: the write records its own Apply managedFields entry.
	apply bool
}

func parseWriteOptions(q url.Values) (writeOptions, error) {
	var o writeOptions
	for _, d := range q["dryRun"] {
		if d != metav1.DryRunAll {
			return o, apierrors.NewBadRequest(fmt.Sprintf("dryRun: unsupported value %q (only %q)", d, metav1.DryRunAll))
		}
		o.dryRun = true
	}
	o.fieldManager = q.Get("fieldManager")
	if len(o.fieldManager) > 128 {
		return o, apierrors.NewBadRequest("fieldManager: must be at most 128 characters")
	}
	return o, nil
}

// stored is the result of a read or write: the typed object (with its
// resourceVersion), its stored form and its revision (0 for dry runs).
type stored struct {
	obj  runtime.Object
	data []byte
	rev  int64
}

// serveGet serves a get of an object or its status.
func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, req *request) {
	out, err := negotiate(r)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	if err := s.checkReadRV(req.query.Get("resourceVersion")); err != nil {
		s.writeError(w, r, req, err)
		return
	}
	kv, err := s.store.Get(r.Context(), req.key())
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	st := &stored{data: kv.Value, rev: kv.ModRevision}
	if out != outJSON && out != outYAML {
		// The read is the store's; the decoding may be the cache's.
		if st.obj, err = s.objectAt(req.res, kv.Key, kv.Value, kv.ModRevision); err != nil {
			s.writeError(w, r, req, err)
			return
		}
	}
	s.writeObject(w, r, req, http.StatusOK, out, st)
}

// checkReadRV applies a get's resourceVersion: "" and "0" read the latest
// state, which is never older than any other revision; a revision the store
// has not reached is the 504 "Too large resource version".
func (s *Server) checkReadRV(v string) error {
	rv, err := parseRV(v)
	if err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	if cur := s.store.Revision(); rv > cur {
		return tooLargeResourceVersion(fmt.Sprintf("%d, current: %d", rv, cur))
	}
	return nil
}

// serveCreate serves a POST of a new object.
func (s *Server) serveCreate(w http.ResponseWriter, r *http.Request, req *request) {
	obj, warnings, opts, err := s.decodeWrite(w, r, req)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	st, err := s.createObject(r.Context(), req, obj, opts)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	addWarnings(w, warnings)
	s.writeObject(w, r, req, http.StatusCreated, outJSON, st)
}

// serveUpdate serves a PUT of an object or its status.
func (s *Server) serveUpdate(w http.ResponseWriter, r *http.Request, req *request) {
	obj, warnings, opts, err := s.decodeWrite(w, r, req)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	if name := accessor(obj).GetName(); name != req.name {
		s.writeError(w, r, req, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", name, req.name)))
		return
	}
	code := http.StatusOK
	st, err := s.guaranteedUpdate(r.Context(), req, opts, func(runtime.Object) (runtime.Object, error) {
		return obj.DeepCopyObject(), nil
	})
	if errors.Is(err, errdefs.ErrNotFound) && req.res.createOnUpdate && req.subresource == "" {
		code = http.StatusCreated
		st, err = s.createObject(r.Context(), req, obj, opts)
	}
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	addWarnings(w, warnings)
	s.writeObject(w, r, req, code, outJSON, st)
}

// decodeWrite reads and decodes the body of a create or update and checks
// its namespace against the URL.
func (s *Server) decodeWrite(w http.ResponseWriter, r *http.Request, req *request) (runtime.Object, []string, writeOptions, error) {
	opts, err := parseWriteOptions(req.query)
	if err != nil {
		return nil, nil, opts, err
	}
	mode, err := parseFieldValidation(req.query)
	if err != nil {
		return nil, nil, opts, err
	}
	obj, warnings, err := s.readObject(w, r, req.res.gvk, req.res.newObj, mode)
	if err != nil {
		return nil, nil, opts, err
	}
	if err := checkNamespace(req, obj); err != nil {
		return nil, nil, opts, err
	}
	return obj, warnings, opts, nil
}

// readObject reads the request body (checking its media type and size) and
// decodes it as gvk.
func (s *Server) readObject(w http.ResponseWriter, r *http.Request, gvk schema.GroupVersionKind, newObj func() runtime.Object, mode string) (runtime.Object, []string, error) {
	media, err := bodyMediaType(r)
	if err != nil {
		return nil, nil, err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return nil, nil, err
	}
	return decodeBody(body, media, gvk, newObj, mode)
}

// checkNamespace fills an object's namespace from the URL or rejects a
// mismatch; cluster-scoped objects lose any namespace.
func checkNamespace(req *request, obj runtime.Object) error {
	m := accessor(obj)
	if !req.res.namespaced {
		m.SetNamespace("")
		return nil
	}
	switch ns := m.GetNamespace(); {
	case ns == "":
		m.SetNamespace(req.namespace)
	case ns != req.namespace:
		return apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	return nil
}

// createObject runs the create pipeline: defaulting, mutating admission,
// system fields, validation, namespace checks, validating admission, and
// one store write (none for a dry run). A name generated from generateName
// is retried on collision.
func (s *Server) createObject(ctx context.Context, req *request, obj runtime.Object, opts writeOptions) (*stored, error) {
	res := req.res
	if err := checkNamespace(req, obj); err != nil {
		return nil, err
	}
	if res.defaults != nil {
		res.defaults(obj)
	}
	if !opts.internal {
		var err error
		if obj, err = s.admitMutating(ctx, admissionAttrs{op: admissionv1.Create, req: req, obj: obj, dryRun: opts.dryRun}); err != nil {
			return nil, err
		}
		if res.defaults != nil {
			res.defaults(obj)
		}
	}
	if res.plural == "pods" {
		if err := s.resolvePodPriority(ctx, obj); err != nil {
			return nil, err
		}
	}
	m := accessor(obj)
	generated := m.GetName() == "" && m.GetGenerateName() != ""
	for attempt := 0; ; attempt++ {
		if generated {
			m.SetName(m.GetGenerateName() + rand.String(5))
		}
		st, err := s.createOnce(ctx, req, obj, opts)
		switch {
		case !errors.Is(err, errdefs.ErrAlreadyExists):
			return st, err
		case generated && attempt < 8:
			continue
		case generated:
			return nil, apierrors.NewGenerateNameConflict(res.groupResource(), m.GetName(), 1)
		}
		return nil, apierrors.NewAlreadyExists(res.groupResource(), m.GetName())
	}
}

func (s *Server) createOnce(ctx context.Context, req *request, obj runtime.Object, opts writeOptions) (*stored, error) {
	res := req.res
	m := accessor(obj)
	m.SetUID(uuid.NewUUID())
	m.SetCreationTimestamp(metav1.NewTime(time.Now().Truncate(time.Second)))
	m.SetResourceVersion("")
	m.SetSelfLink("")
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetGeneration(0)
	if res.generation {
		m.SetGeneration(1)
	}
	if res.prepareCreate != nil {
		res.prepareCreate(obj)
	}
	if opts.fieldManager != "" && !opts.apply {
		recordManager(obj, opts.fieldManager, "")
	}
	if errs := validateObject(res, obj); len(errs) > 0 {
		return nil, apierrors.NewInvalid(res.gvk.GroupKind(), m.GetName(), errs)
	}
	if res.namespaced {
		if err := s.namespaceAccepts(ctx, res, m.GetNamespace(), m.GetName()); err != nil {
			return nil, err
		}
	}
	var written int64 // the revision of the store write, if any
	if res.plural == "services" {
		resv, err := s.allocateService(ctx, obj, nil)
		if err != nil {
			return nil, err
		}
		defer func() { resv.settle(written) }()
	}
	if !opts.internal {
		if err := s.admitValidating(ctx, admissionAttrs{op: admissionv1.Create, req: req, obj: obj, dryRun: opts.dryRun}); err != nil {
			return nil, err
		}
	}
	data, err := encodeStored(res, obj)
	if err != nil {
		return nil, err
	}
	if opts.dryRun {
		return &stored{obj: obj, data: data}, nil
	}
	kv, err := s.store.Create(ctx, objectKey(res, m.GetNamespace(), m.GetName()), data, store.WriteOptions{})
	if err != nil {
		return nil, fmt.Errorf("create %s %s: %w", res.plural, m.GetName(), err)
	}
	written = kv.ModRevision
	setResourceVersion(obj, kv.ModRevision)
	return &stored{obj: obj, data: data, rev: kv.ModRevision}, nil
}

// updateFunc computes the desired object from a private copy of the
// current one. It may be called more than once (after a lost race).
type updateFunc func(cur runtime.Object) (runtime.Object, error)

// errRetry says an update lost a race and should be recomputed.
var errRetry = errors.New("retry update")

// guaranteedUpdate reads the object, computes the update with fn and
// commits it with the read revision as precondition, retrying lost races
// unless the desired object named a resourceVersion (then 409).
func (s *Server) guaranteedUpdate(ctx context.Context, req *request, opts writeOptions, fn updateFunc) (*stored, error) {
	key := req.key()
	for attempt := 0; ; attempt++ {
		kv, err := s.store.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		cur, err := decodeStored(req.res, kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		obj, err := fn(cur.DeepCopyObject())
		if err != nil {
			return nil, err
		}
		st, err := s.commitUpdate(ctx, req, opts, obj, cur, kv)
		if errors.Is(err, errRetry) {
			if attempt < maxUpdateRetries {
				continue
			}
			err = fmt.Errorf("update %s: too many concurrent writers: %w", key, errdefs.ErrConflict)
		}
		return st, err
	}
}

// commitUpdate turns obj into the next version of cur and writes it. An
// unchanged object is not written (its resourceVersion stays); an object
// with deletionTimestamp and no finalizers left is deleted.
func (s *Server) commitUpdate(ctx context.Context, req *request, opts writeOptions, obj, cur runtime.Object, kv store.KV) (*stored, error) {
	res := req.res
	m := accessor(obj)
	explicitRV := m.GetResourceVersion() != ""
	if explicitRV && m.GetResourceVersion() != formatRV(kv.ModRevision) {
		return nil, apierrors.NewConflict(res.groupResource(), req.name, errors.New(conflictMessage))
	}
	if err := checkNamespace(req, obj); err != nil {
		return nil, err
	}
	if res.defaults != nil {
		res.defaults(obj)
	}
	attrs := admissionAttrs{op: admissionv1.Update, req: req, obj: obj, old: cur, dryRun: opts.dryRun}
	if !opts.internal {
		var err error
		if obj, err = s.admitMutating(ctx, attrs); err != nil {
			return nil, err
		}
		if res.defaults != nil {
			res.defaults(obj)
		}
	}
	obj = prepareUpdate(req, obj, cur)
	if opts.fieldManager != "" && !opts.apply {
		recordManager(obj, opts.fieldManager, req.subresource)
	}
	if errs := validateObjectUpdate(req, obj, cur); len(errs) > 0 {
		return nil, apierrors.NewInvalid(res.gvk.GroupKind(), req.name, errs)
	}
	var written int64 // the revision of the store write, if any
	if res.plural == "services" && req.subresource == "" {
		resv, err := s.allocateService(ctx, obj, cur)
		if err != nil {
			return nil, err
		}
		defer func() { resv.settle(written) }()
	}
	if !opts.internal {
		attrs.obj = obj
		if err := s.admitValidating(ctx, attrs); err != nil {
			return nil, err
		}
	}
	m = accessor(obj)
	if m.GetDeletionTimestamp() != nil && !finalizersPending(obj) {
		return s.finalizeDelete(ctx, req, opts, obj, kv)
	}
	data, err := encodeStored(res, obj)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(data, kv.Value) || opts.dryRun {
		setResourceVersion(obj, kv.ModRevision)
		return &stored{obj: obj, data: data, rev: kv.ModRevision}, nil
	}
	nkv, err := s.store.Update(ctx, kv.Key, data, kv.ModRevision, store.WriteOptions{Lease: kv.Lease})
	if errors.Is(err, errdefs.ErrConflict) {
		if explicitRV {
			return nil, apierrors.NewConflict(res.groupResource(), req.name, errors.New(conflictMessage))
		}
		return nil, errRetry
	}
	if errors.Is(err, errdefs.ErrNotFound) && !explicitRV {
		return nil, errRetry
	}
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", kv.Key, err)
	}
	written = nkv.ModRevision
	setResourceVersion(obj, nkv.ModRevision)
	return &stored{obj: obj, data: data, rev: nkv.ModRevision}, nil
}

// prepareUpdate carries the system fields over from cur, applies the
// status/main-resource split and counts spec changes in generation. It
// returns the object to validate and write.
func prepareUpdate(req *request, obj, cur runtime.Object) runtime.Object {
	res := req.res
	if req.subresource == subStatus {
		// A status write changes .status only.
		next := cur.DeepCopyObject()
		copyStatus(next, obj)
		obj = next
	} else if res.hasSub(subStatus) && req.subresource != subBinding {
		copyStatus(obj, cur)
	}
	m, om := accessor(obj), accessor(cur)
	if m.GetUID() == "" {
		m.SetUID(om.GetUID())
	}
	m.SetCreationTimestamp(om.GetCreationTimestamp())
	m.SetDeletionTimestamp(om.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
	m.SetGeneration(om.GetGeneration())
	m.SetResourceVersion(om.GetResourceVersion())
	m.SetSelfLink("")
	if m.GetManagedFields() == nil {
		m.SetManagedFields(om.GetManagedFields())
	}
	if res.prepareUpdate != nil && req.subresource == "" {
		res.prepareUpdate(obj, cur)
	}
	if res.generation && specChanged(obj, cur) {
		m.SetGeneration(om.GetGeneration() + 1)
	}
	return obj
}
