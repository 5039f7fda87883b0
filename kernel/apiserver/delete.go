package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// Deletion follows Kubernetes' generic registry:
//   - Preconditions (uid, resourceVersion) must hold (409 otherwise).
//   - The propagation policy edits the finalizers: Orphan adds "orphan",
//     Foreground adds "foregroundDeletion", Background removes both. The
//     garbage collector that honours them (orphaning or deleting dependents
//     and then removing the finalizer) comes with the controllers; until
//     then such objects stay in deletion until a client removes the
//     finalizer.
//   - An object with finalizers, or a pod bound to a node deleted with a
//     grace period, gets deletionTimestamp (and deletionGracePeriodSeconds)
//     and stays; an update that leaves it with no finalizers and a zero
//     grace period deletes it. Unbound pods and pods in a terminal phase are
//     deleted at once, as in Kubernetes; bound pods wait for their node
//     agent (a later issue) or a delete with gracePeriodSeconds=0.
//   - Anything else is removed with one store delete.

// deleteOptions are a delete's options from the body or the query.
type deleteOptions struct {
	metav1.DeleteOptions
	dryRun bool
}

// parseDeleteOptions reads DeleteOptions from a JSON body, or else from
// the query parameters.
func (s *Server) parseDeleteOptions(w http.ResponseWriter, r *http.Request, req *request) (deleteOptions, error) {
	var o deleteOptions
	body, err := s.readBody(w, r)
	if err != nil {
		return o, err
	}
	if len(body) > 0 {
		media, err := bodyMediaType(r)
		if err != nil {
			return o, err
		}
		gvk := metav1.SchemeGroupVersion.WithKind("DeleteOptions")
		obj, _, err := decodeBody(body, media, gvk, func() runtime.Object { return &metav1.DeleteOptions{} }, validationIgnore)
		if err != nil {
			return o, err
		}
		o.DeleteOptions = *obj.(*metav1.DeleteOptions)
	}
	q := req.query
	if v := q.Get("gracePeriodSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return o, apierrors.NewBadRequest(fmt.Sprintf("gracePeriodSeconds: invalid value %q", v))
		}
		o.GracePeriodSeconds = &n
	}
	if v := q.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		o.PropagationPolicy = &p
	}
	if v := q.Get("orphanDependents"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, apierrors.NewBadRequest(fmt.Sprintf("orphanDependents: invalid value %q", v))
		}
		o.OrphanDependents = &b
	}
	o.DryRun = append(o.DryRun, q["dryRun"]...)
	for _, d := range o.DryRun {
		if d != metav1.DryRunAll {
			return o, apierrors.NewBadRequest(fmt.Sprintf("dryRun: unsupported value %q", d))
		}
		o.dryRun = true
	}
	if p := o.PropagationPolicy; p != nil && o.OrphanDependents != nil {
		return o, apierrors.NewBadRequest("orphanDependents and propagationPolicy cannot both be set")
	}
	if p := o.PropagationPolicy; p != nil && *p != metav1.DeletePropagationOrphan &&
		*p != metav1.DeletePropagationBackground && *p != metav1.DeletePropagationForeground {
		return o, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy: unsupported value %q", *p))
	}
	if g := o.GracePeriodSeconds; g != nil && *g < 0 {
		return o, apierrors.NewBadRequest("gracePeriodSeconds: must be >= 0")
	}
	return o, nil
}

// serveDelete serves a DELETE of one object. An object removed at once
// gets a Success Status; one that stays in deletion is returned as is.
func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request, req *request) {
	o, err := s.parseDeleteOptions(w, r, req)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	st, gone, err := s.deleteObject(r.Context(), req, o)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	if gone {
		writeJSON(w, http.StatusOK, successStatus(req, string(accessor(st.obj).GetUID())))
		return
	}
	code := http.StatusOK
	if o.OrphanDependents != nil && !*o.OrphanDependents {
		code = http.StatusAccepted
	}
	s.writeObject(w, r, req, code, outJSON, st)
}

// deleteObject deletes (or starts deleting) req's object. gone reports
// whether it was removed from the store.
func (s *Server) deleteObject(ctx context.Context, req *request, o deleteOptions) (st *stored, gone bool, err error) {
	if req.res.plural == "namespaces" && slices.Contains(undeletableNamespaces, req.name) {
		return nil, false, apierrors.NewForbidden(req.res.groupResource(), req.name, errors.New("this namespace may not be deleted"))
	}
	explicit := o.Preconditions != nil && o.Preconditions.ResourceVersion != nil
	for attempt := 0; attempt <= maxUpdateRetries; attempt++ {
		kv, err := s.store.Get(ctx, req.key())
		if err != nil {
			return nil, false, err
		}
		obj, err := decodeStored(req.res, kv.Value, kv.ModRevision)
		if err != nil {
			return nil, false, err
		}
		if err := checkPreconditions(req, obj, o.Preconditions); err != nil {
			return nil, false, err
		}
		if err := s.admitDelete(ctx, req, obj, o); err != nil {
			return nil, false, err
		}
		st, gone, err = s.deleteOnce(ctx, req, o, obj, kv)
		if errors.Is(err, errRetry) {
			if explicit {
				return nil, false, apierrors.NewConflict(req.res.groupResource(), req.name, errors.New(conflictMessage))
			}
			continue
		}
		return st, gone, err
	}
	return nil, false, fmt.Errorf("delete %s: too many concurrent writers: %w", req.key(), errdefs.ErrConflict)
}

func (s *Server) admitDelete(ctx context.Context, req *request, obj runtime.Object, o deleteOptions) error {
	attrs := admissionAttrs{op: admissionv1.Delete, req: req, old: obj, dryRun: o.dryRun}
	if _, err := s.admitMutating(ctx, attrs); err != nil {
		return err
	}
	return s.admitValidating(ctx, attrs)
}

// checkPreconditions applies DeleteOptions.Preconditions.
func checkPreconditions(req *request, obj runtime.Object, p *metav1.Preconditions) error {
	if p == nil {
		return nil
	}
	m := accessor(obj)
	if p.UID != nil && *p.UID != m.GetUID() {
		return apierrors.NewConflict(req.res.groupResource(), req.name,
			fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID()))
	}
	if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
		return apierrors.NewConflict(req.res.groupResource(), req.name,
			fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
	}
	return nil
}

// deleteOnce decides between graceful and immediate deletion of obj (read
// at kv) and writes the result with kv's revision as precondition.
func (s *Server) deleteOnce(ctx context.Context, req *request, o deleteOptions, obj runtime.Object, kv store.KV) (*stored, bool, error) {
	m := accessor(obj)
	next := obj.DeepCopyObject()
	nm := accessor(next)
	nm.SetFinalizers(propagationFinalizers(m.GetFinalizers(), o))
	grace, graceful := gracePeriod(obj, o)
	if req.res.plural == "namespaces" {
		return s.deleteNamespace(ctx, req, o, next, kv)
	}
	if len(nm.GetFinalizers()) == 0 && !graceful {
		return s.removeObject(ctx, req, o.dryRun, obj, kv)
	}
	if m.GetDeletionTimestamp() == nil {
		now := metav1.NewTime(time.Now().Add(time.Duration(grace) * time.Second).Truncate(time.Second))
		nm.SetDeletionTimestamp(&now)
		nm.SetDeletionGracePeriodSeconds(&grace)
		if nm.GetGeneration() > 0 {
			nm.SetGeneration(nm.GetGeneration() + 1)
		}
	} else if cur := m.GetDeletionGracePeriodSeconds(); cur != nil && grace < *cur {
		// A second delete may shorten the grace period.
		nm.SetDeletionGracePeriodSeconds(&grace)
		t := metav1.NewTime(time.Now().Add(time.Duration(grace) * time.Second).Truncate(time.Second))
		nm.SetDeletionTimestamp(&t)
	}
	return s.writeDeleting(ctx, req, o.dryRun, next, kv)
}

// writeDeleting stores an object that stays in deletion.
func (s *Server) writeDeleting(ctx context.Context, req *request, dryRun bool, obj runtime.Object, kv store.KV) (*stored, bool, error) {
	data, err := encodeStored(req.res, obj)
	if err != nil {
		return nil, false, err
	}
	if dryRun || string(data) == string(kv.Value) {
		return &stored{obj: obj, data: data, rev: kv.ModRevision}, false, nil
	}
	nkv, err := s.store.Update(ctx, kv.Key, data, kv.ModRevision, store.WriteOptions{Lease: kv.Lease})
	if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrNotFound) {
		return nil, false, errRetry
	}
	if err != nil {
		return nil, false, fmt.Errorf("delete %s: %w", kv.Key, err)
	}
	setResourceVersion(obj, nkv.ModRevision)
	return &stored{obj: obj, data: data, rev: nkv.ModRevision}, false, nil
}

// removeObject deletes obj's key (read at kv) from the store.
func (s *Server) removeObject(ctx context.Context, req *request, dryRun bool, obj runtime.Object, kv store.KV) (*stored, bool, error) {
	if dryRun {
		return &stored{obj: obj, data: kv.Value, rev: kv.ModRevision}, true, nil
	}
	_, _, err := s.store.Delete(ctx, kv.Key, kv.ModRevision)
	if errors.Is(err, errdefs.ErrConflict) {
		return nil, false, errRetry
	}
	if err != nil {
		return nil, false, fmt.Errorf("delete %s: %w", kv.Key, err)
	}
	if ns := accessor(obj).GetNamespace(); ns != "" {
		s.namespaceContentGone(ctx, ns)
	}
	return &stored{obj: obj, data: kv.Value, rev: kv.ModRevision}, true, nil
}

// finalizeDelete removes an object an update left with deletionTimestamp,
// no finalizers and no grace period (commitUpdate calls it).
func (s *Server) finalizeDelete(ctx context.Context, req *request, opts writeOptions, obj runtime.Object, kv store.KV) (*stored, error) {
	st, _, err := s.removeObject(ctx, req, opts.dryRun, obj, kv)
	if err != nil {
		return nil, err
	}
	st.data, err = encodeStored(req.res, obj)
	return st, err
}

// propagationFinalizers applies the propagation policy to finalizers.
func propagationFinalizers(fins []string, o deleteOptions) []string {
	policy := metav1.DeletePropagationBackground
	switch {
	case o.PropagationPolicy != nil:
		policy = *o.PropagationPolicy
	case o.OrphanDependents != nil && *o.OrphanDependents:
		policy = metav1.DeletePropagationOrphan
	case o.OrphanDependents == nil && o.PropagationPolicy == nil:
		return fins // no explicit policy: finalizers as they are
	}
	out := slices.DeleteFunc(slices.Clone(fins), func(f string) bool {
		return f == metav1.FinalizerOrphanDependents || f == metav1.FinalizerDeleteDependents
	})
	switch policy {
	case metav1.DeletePropagationOrphan:
		out = append(out, metav1.FinalizerOrphanDependents)
	case metav1.DeletePropagationForeground:
		out = append(out, metav1.FinalizerDeleteDependents)
	}
	return out
}

// gracePeriod returns the grace period for obj and whether the deletion is
// graceful (the object stays with deletionTimestamp). Only pods bound to a
// node and not terminated are deleted gracefully.
func gracePeriod(obj runtime.Object, o deleteOptions) (int64, bool) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return 0, false
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if o.GracePeriodSeconds != nil {
		grace = *o.GracePeriodSeconds
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0, false
	}
	return grace, grace > 0
}

// serveDeleteCollection deletes every object matching the selectors, one
// by one (each delete is atomic; the collection is not).
func (s *Server) serveDeleteCollection(w http.ResponseWriter, r *http.Request, req *request) {
	o, err := s.parseDeleteOptions(w, r, req)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	lo, err := s.parseListOptions(req)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	page, err := s.listObjects(r.Context(), req.res, req.namespace, lo)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	for _, kv := range page.kvs {
		obj, err := decodeStored(req.res, kv.Value, kv.ModRevision)
		if err != nil {
			s.writeError(w, r, req, err)
			return
		}
		m := accessor(obj)
		one := &request{verb: verbDelete, res: req.res, namespace: m.GetNamespace(), name: m.GetName(), query: req.query}
		if _, _, err := s.deleteObject(r.Context(), one, o); err != nil && !apierrors.IsNotFound(err) && !errors.Is(err, errdefs.ErrNotFound) {
			s.writeError(w, r, one, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusSuccess,
		Details:  &metav1.StatusDetails{Group: req.res.gvk.Group, Kind: req.res.plural},
	})
}
