package apiserver

import (
	"context"
	"fmt"
	"net/http"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The scale subresource reads and writes spec.replicas of deployments,
// replicasets, replicationcontrollers and statefulsets as an autoscaling/v1 Scale; the binding
// subresource assigns a pod to a node; pods/log is served by the node
// agent (nodeproxy.go).

var scaleGVK = gvAutoscalingV1.WithKind("Scale")

// replicasOf returns a pointer to spec.replicas, the observed
// status.replicas and the label selector of a scalable object.
func replicasOf(obj runtime.Object) (spec **int32, status int32, sel *metav1.LabelSelector, ok bool) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.Spec.Replicas, o.Status.Replicas, o.Spec.Selector, true
	case *appsv1.ReplicaSet:
		return &o.Spec.Replicas, o.Status.Replicas, o.Spec.Selector, true
	case *appsv1.StatefulSet:
		return &o.Spec.Replicas, o.Status.Replicas, o.Spec.Selector, true
	case *corev1.ReplicationController:
		return &o.Spec.Replicas, o.Status.Replicas, &metav1.LabelSelector{MatchLabels: o.Spec.Selector}, true
	}
	return nil, 0, nil, false
}

// scaleOf builds the Scale view of a scalable object.
func scaleOf(obj runtime.Object) (*autoscalingv1.Scale, error) {
	spec, status, sel, ok := replicasOf(obj)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("%T has no scale", obj))
	}
	m := accessor(obj)
	sc := &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{Kind: scaleGVK.Kind, APIVersion: scaleGVK.GroupVersion().String()},
		ObjectMeta: metav1.ObjectMeta{
			Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
			ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp(),
		},
		Status: autoscalingv1.ScaleStatus{Replicas: status},
	}
	if *spec != nil {
		sc.Spec.Replicas = **spec
	}
	if sel != nil {
		if s, err := metav1.LabelSelectorAsSelector(sel); err == nil {
			sc.Status.Selector = s.String()
		}
	}
	return sc, nil
}

// currentScale reads the scaled object and returns its Scale view.
func (s *Server) currentScale(ctx context.Context, req *request) (*autoscalingv1.Scale, error) {
	kv, err := s.store.Get(ctx, req.key())
	if err != nil {
		return nil, err
	}
	obj, err := decodeStored(req.res, kv.Value, kv.ModRevision)
	if err != nil {
		return nil, err
	}
	return scaleOf(obj)
}

func (s *Server) serveGetScale(w http.ResponseWriter, r *http.Request, req *request) {
	sc, err := s.currentScale(r.Context(), req)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	writeJSON(w, http.StatusOK, sc)
}

// serveUpdateScale serves a PUT of a Scale.
func (s *Server) serveUpdateScale(w http.ResponseWriter, r *http.Request, req *request) {
	opts, err := parseWriteOptions(req.query)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	obj, _, err := s.readObject(w, r, scaleGVK, func() runtime.Object { return &autoscalingv1.Scale{} }, validationIgnore)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	s.applyScale(w, r, req, opts, obj.(*autoscalingv1.Scale))
}

// applyScale writes a Scale's replicas into the scaled object and replies
// with the resulting Scale.
func (s *Server) applyScale(w http.ResponseWriter, r *http.Request, req *request, opts writeOptions, sc *autoscalingv1.Scale) {
	if sc.Name != "" && sc.Name != req.name {
		s.writeError(w, r, req, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", sc.Name, req.name)))
		return
	}
	if sc.Spec.Replicas < 0 {
		s.writeError(w, r, req, apierrors.NewInvalid(scaleGVK.GroupKind(), req.name,
			field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), sc.Spec.Replicas, "must be greater than or equal to 0")}))
		return
	}
	st, err := s.guaranteedUpdate(r.Context(), req, opts, func(cur runtime.Object) (runtime.Object, error) {
		spec, _, _, ok := replicasOf(cur)
		if !ok {
			return nil, apierrors.NewNotFound(req.res.groupResource(), req.name)
		}
		n := sc.Spec.Replicas
		*spec = &n
		accessor(cur).SetResourceVersion(sc.ResourceVersion)
		return cur, nil
	})
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	out, err := scaleOf(st.obj)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// serveBinding assigns a pod to a node: 409 if it is already assigned or
// being deleted.
func (s *Server) serveBinding(w http.ResponseWriter, r *http.Request, req *request) {
	opts, err := parseWriteOptions(req.query)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	obj, _, err := s.readObject(w, r, gvCore.WithKind("Binding"), func() runtime.Object { return &corev1.Binding{} }, validationIgnore)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	b := obj.(*corev1.Binding)
	if err := s.bindPod(r.Context(), req, opts, b); err != nil {
		s.writeError(w, r, req, err)
		return
	}
	writeJSON(w, http.StatusCreated, metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated,
	})
}

func (s *Server) bindPod(ctx context.Context, req *request, opts writeOptions, b *corev1.Binding) error {
	if b.Name != "" && b.Name != req.name {
		return apierrors.NewBadRequest(fmt.Sprintf("the name of the binding (%s) does not match the pod (%s)", b.Name, req.name))
	}
	if b.Namespace != "" && b.Namespace != req.namespace {
		return apierrors.NewBadRequest("the namespace of the binding does not match the namespace sent on the request")
	}
	if (b.Target.Kind != "" && b.Target.Kind != "Node") || b.Target.Name == "" {
		return apierrors.NewInvalid(gvCore.WithKind("Binding").GroupKind(), req.name,
			field.ErrorList{field.Invalid(field.NewPath("target"), b.Target, "must name a Node")})
	}
	_, err := s.guaranteedUpdate(ctx, req, opts, func(cur runtime.Object) (runtime.Object, error) {
		pod := cur.(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(req.res.groupResource(), req.name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", pod.Name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(req.res.groupResource(), req.name, fmt.Errorf("pod %v is already assigned to node %q", pod.Name, pod.Spec.NodeName))
		}
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(req.res.groupResource(), req.name, fmt.Errorf("precondition failed: uid %s", b.UID))
		}
		pod.Spec.NodeName = b.Target.Name
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodScheduled(pod)
		return pod, nil
	})
	return err
}

func setPodScheduled(pod *corev1.Pod) {
	cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}
	for i, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			pod.Status.Conditions[i] = cond
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, cond)
}

// serveLog answers pods/log from the pod's node agent (nodeproxy.go).
func (s *Server) serveLog(w http.ResponseWriter, r *http.Request, req *request) {
	s.serveNodeLog(w, r, req)
}
