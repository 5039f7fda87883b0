package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// Namespace lifecycle. Kubernetes' namespace controller is folded into the
// server: deleting a namespace marks it Terminating (deletionTimestamp,
// status.phase) and then deletes every namespaced object in it; once none
// is left (objects with finalizers or pods in graceful deletion may hold it
// up), the "kubernetes" spec finalizer is dropped and the namespace is
// removed. The removal of the last blocking object completes it.

// undeletableNamespaces cannot be deleted, as in Kubernetes.
var undeletableNamespaces = []string{"default", "kube-system", "kube-public"}

var namespaceGR = schema.GroupResource{Resource: "namespaces"}

// nsState is the part of a stored namespace the lifecycle needs.
type nsState struct {
	Metadata struct {
		DeletionTimestamp *metav1.Time `json:"deletionTimestamp"`
	} `json:"metadata"`
	Status struct {
		Phase corev1.NamespacePhase `json:"phase"`
	} `json:"status"`
}

func (s *Server) namespaceState(ctx context.Context, ns string) (*nsState, error) {
	kv, err := s.store.Get(ctx, store.Key("namespaces", "", ns))
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, apierrors.NewNotFound(namespaceGR, ns)
	}
	if err != nil {
		return nil, err
	}
	var st nsState
	if err := json.Unmarshal(kv.Value, &st); err != nil {
		return nil, fmt.Errorf("decode namespace %s: %w", ns, err)
	}
	return &st, nil
}

// namespaceAccepts checks that new objects may be created in ns: it exists
// (404 otherwise, as Kubernetes' NamespaceLifecycle admission) and is not
// terminating (403).
func (s *Server) namespaceAccepts(ctx context.Context, res *resource, ns, name string) error {
	st, err := s.namespaceState(ctx, ns)
	if err != nil {
		return err
	}
	if st.Metadata.DeletionTimestamp != nil || st.Status.Phase == corev1.NamespaceTerminating {
		return apierrors.NewForbidden(res.groupResource(), name,
			fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
	}
	return nil
}

// deleteNamespace marks a namespace Terminating and finalizes it.
func (s *Server) deleteNamespace(ctx context.Context, req *request, o deleteOptions, obj runtime.Object, kv store.KV) (*stored, bool, error) {
	ns := obj.(*corev1.Namespace)
	if ns.DeletionTimestamp == nil {
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		ns.DeletionTimestamp = &now
		ns.DeletionGracePeriodSeconds = new(int64)
	}
	ns.Status.Phase = corev1.NamespaceTerminating
	st, _, err := s.writeDeleting(ctx, req, o.dryRun, ns, kv)
	if err != nil || o.dryRun {
		return st, false, err
	}
	gone, err := s.finalizeNamespace(ctx, ns.Name)
	if err != nil {
		return nil, false, err
	}
	return st, gone, nil
}

type finalizingKey struct{}

// finalizeNamespace deletes the content of a terminating namespace and,
// when nothing is left, the namespace itself. It reports whether the
// namespace is gone.
func (s *Server) finalizeNamespace(ctx context.Context, name string) (bool, error) {
	ctx = context.WithValue(ctx, finalizingKey{}, true)
	left := 0
	for _, res := range s.reg.all {
		if !res.namespaced {
			continue
		}
		page, err := s.listObjects(ctx, res, name, listOptions{})
		if err != nil {
			return false, err
		}
		bg := metav1.DeletePropagationBackground
		for _, kv := range page.kvs {
			req := &request{verb: verbDelete, res: res, namespace: name, name: objectName(kv.Key)}
			_, gone, err := s.deleteObject(ctx, req, deleteOptions{DeleteOptions: metav1.DeleteOptions{PropagationPolicy: &bg}})
			if err != nil && !errors.Is(err, errdefs.ErrNotFound) && !apierrors.IsNotFound(err) {
				return false, err
			}
			if err == nil && !gone {
				left++
			}
		}
	}
	if left > 0 {
		return false, nil
	}
	return s.removeNamespace(ctx, name)
}

// removeNamespace drops the "kubernetes" finalizer of an empty terminating
// namespace and deletes it unless metadata finalizers remain.
func (s *Server) removeNamespace(ctx context.Context, name string) (bool, error) {
	res := s.reg.lookup("", "v1", "namespaces")
	req := &request{verb: verbDelete, res: res, name: name}
	for attempt := 0; attempt <= maxUpdateRetries; attempt++ {
		kv, err := s.store.Get(ctx, req.key())
		if errors.Is(err, errdefs.ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		obj, err := decodeStored(res, kv.Value, kv.ModRevision)
		if err != nil {
			return false, err
		}
		ns := obj.(*corev1.Namespace)
		ns.Spec.Finalizers = slices.DeleteFunc(ns.Spec.Finalizers, func(f corev1.FinalizerName) bool { return f == corev1.FinalizerKubernetes })
		var gone bool
		if len(ns.Finalizers) == 0 && len(ns.Spec.Finalizers) == 0 {
			_, gone, err = s.removeObject(ctx, req, false, ns, kv)
		} else {
			_, gone, err = s.writeDeleting(ctx, req, false, ns, kv)
		}
		if errors.Is(err, errRetry) {
			continue
		}
		return gone, err
	}
	return false, fmt.Errorf("finalize namespace %s: too many concurrent writers: %w", name, errdefs.ErrConflict)
}

// namespaceContentGone is called after an object in ns was removed: if ns
// is terminating, its finalization continues (unless this removal is part
// of it).
func (s *Server) namespaceContentGone(ctx context.Context, ns string) {
	if ctx.Value(finalizingKey{}) != nil {
		return
	}
	st, err := s.namespaceState(ctx, ns)
	if err != nil || st.Metadata.DeletionTimestamp == nil {
		return
	}
	if _, err := s.finalizeNamespace(ctx, ns); err != nil {
		s.log.Warn("finalize namespace", "namespace", ns, "err", err)
	}
}

// objectName is the last segment of a key.
func objectName(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return key[i+1:]
		}
	}
	return key
}

// finalizersPending reports whether an object in deletion must stay:
// metadata finalizers, a namespace's spec finalizers, or a grace period.
func finalizersPending(obj runtime.Object) bool {
	m := accessor(obj)
	if len(m.GetFinalizers()) > 0 {
		return true
	}
	if g := m.GetDeletionGracePeriodSeconds(); g != nil && *g > 0 {
		return true
	}
	ns, ok := obj.(*corev1.Namespace)
	return ok && len(ns.Spec.Finalizers) > 0
}
