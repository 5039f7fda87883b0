package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/kernel/store"
)

// gvScheduling serves PriorityClasses.
var gvScheduling = schedulingv1.SchemeGroupVersion

// Kubernetes' system priority classes, resolved even when no object of
// that name is stored (kube-apiserver creates them at start).
var systemPriorityClasses = map[string]int32{
	"system-cluster-critical": 2000000000,
	"system-node-critical":    2000001000,
}

// highestUserPriority is the highest value of a user PriorityClass.
const highestUserPriority = 1000000000

func schedulingResources() []*resource {
	return []*resource{
		{gvk: gvScheduling.WithKind("PriorityClass"), plural: "priorityclasses", singular: "priorityclass", shortNames: []string{"pc"},
			newObj:   func() runtime.Object { return &schedulingv1.PriorityClass{} },
			newList:  func() runtime.Object { return &schedulingv1.PriorityClassList{} },
			defaults: defaultPriorityClass, validate: validatePriorityClass},
	}
}

func defaultPriorityClass(obj runtime.Object) {
	pc := obj.(*schedulingv1.PriorityClass)
	if pc.PreemptionPolicy == nil {
		p := corev1.PreemptLowerPriority
		pc.PreemptionPolicy = &p
	}
}

func validatePriorityClass(obj runtime.Object) field.ErrorList {
	pc := obj.(*schedulingv1.PriorityClass)
	var errs field.ErrorList
	if strings.HasPrefix(pc.Name, "system-") {
		if _, ok := systemPriorityClasses[pc.Name]; !ok {
			errs = append(errs, field.Forbidden(field.NewPath("metadata", "name"), "priority class names with 'system-' prefix are reserved"))
		}
	} else if pc.Value > highestUserPriority {
		errs = append(errs, field.Forbidden(field.NewPath("value"), fmt.Sprintf("maximum allowed value of a user defined priority is %d", highestUserPriority)))
	}
	if p := pc.PreemptionPolicy; p != nil && *p != corev1.PreemptLowerPriority && *p != corev1.PreemptNever {
		errs = append(errs, field.NotSupported(field.NewPath("preemptionPolicy"), *p, []string{string(corev1.PreemptLowerPriority), string(corev1.PreemptNever)}))
	}
	return errs
}

// resolvePodPriority is Kubernetes' Priority admission for a new pod: a
// spec.priorityClassName sets spec.priority and spec.preemptionPolicy
// from the PriorityClass (403 when it does not exist); without one the
// priority stays 0. (A globalDefault class is not looked up: that would
// list the classes on every pod create.)
func (s *Server) resolvePodPriority(ctx context.Context, obj runtime.Object) error {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.PriorityClassName == "" {
		return nil
	}
	name := pod.Spec.PriorityClassName
	value, policy, err := s.priorityClass(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return apierrors.NewForbidden(corev1.Resource("pods"), pod.Name, fmt.Errorf("no PriorityClass with name %s was found", name))
	}
	if err != nil {
		return err
	}
	pod.Spec.Priority = &value
	if policy != nil {
		p := *policy
		pod.Spec.PreemptionPolicy = &p
	}
	return nil
}

// priorityClass returns the value and preemption policy of the named
// class.
func (s *Server) priorityClass(ctx context.Context, name string) (int32, *corev1.PreemptionPolicy, error) {
	kv, err := s.store.Get(ctx, store.Key("priorityclasses", "", name))
	if errors.Is(err, errdefs.ErrNotFound) {
		if v, ok := systemPriorityClasses[name]; ok {
			p := corev1.PreemptLowerPriority
			return v, &p, nil
		}
		return 0, nil, err
	}
	if err != nil {
		return 0, nil, err
	}
	var pc schedulingv1.PriorityClass
	if err := json.Unmarshal(kv.Value, &pc); err != nil {
		return 0, nil, fmt.Errorf("decode priorityclass %s: %w", name, err)
	}
	return pc.Value, pc.PreemptionPolicy, nil
}
