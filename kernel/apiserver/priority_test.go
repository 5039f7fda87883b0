package apiserver_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodPriorityFromClass: a pod's priorityClassName sets its priority
// and preemption policy from the PriorityClass (kube's Priority
// admission); an unknown class is refused with 403; the system classes
// resolve without objects; user classes above 1e9 are invalid.
func TestPodPriorityFromClass(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	never := corev1.PreemptNever
	for _, pc := range []*schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 1000},
		{ObjectMeta: metav1.ObjectMeta{Name: "polite"}, Value: 500, PreemptionPolicy: &never},
	} {
		if _, err := e.client.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.client.SchedulingV1().PriorityClasses().Get(ctx, "high", metav1.GetOptions{})
	if err != nil || got.PreemptionPolicy == nil || *got.PreemptionPolicy != corev1.PreemptLowerPriority {
		t.Fatalf("class high: %+v, %v; want preemptionPolicy defaulted to PreemptLowerPriority", got, err)
	}
	_, err = e.client.SchedulingV1().PriorityClasses().Create(ctx,
		&schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "too-high"}, Value: 1000000001}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Errorf("class above 1e9: %v, want invalid", err)
	}
	for _, tc := range []struct {
		class    string
		priority int32
		policy   corev1.PreemptionPolicy
		refused  bool
	}{
		{class: "", priority: 0},
		{class: "high", priority: 1000, policy: corev1.PreemptLowerPriority},
		{class: "polite", priority: 500, policy: corev1.PreemptNever},
		{class: "system-node-critical", priority: 2000001000, policy: corev1.PreemptLowerPriority},
		{class: "missing", refused: true},
	} {
		t.Run("class="+tc.class, func(t *testing.T) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "p-"},
				Spec:       corev1.PodSpec{PriorityClassName: tc.class, Containers: []corev1.Container{{Name: "c", Image: "i"}}},
			}
			out, err := e.client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
			if tc.refused {
				if !apierrors.IsForbidden(err) {
					t.Fatalf("create: %v, want forbidden", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.Spec.Priority == nil || *out.Spec.Priority != tc.priority {
				t.Errorf("priority %v, want %d", out.Spec.Priority, tc.priority)
			}
			if tc.policy != "" && (out.Spec.PreemptionPolicy == nil || *out.Spec.PreemptionPolicy != tc.policy) {
				t.Errorf("preemptionPolicy %v, want %s", out.Spec.PreemptionPolicy, tc.policy)
			}
		})
	}
}
