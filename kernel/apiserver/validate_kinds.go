package apiserver

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func validateService(obj runtime.Object) field.ErrorList {
	s := obj.(*corev1.Service)
	p := field.NewPath("spec")
	errs := oneOf(s.Spec.Type, p.Child("type"), corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort,
		corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName)
	headless := s.Spec.ClusterIP == corev1.ClusterIPNone
	switch {
	case s.Spec.Type == corev1.ServiceTypeExternalName:
		errs = append(errs, requireString(s.Spec.ExternalName, p.Child("externalName"))...)
	case len(s.Spec.Ports) == 0 && !headless:
		errs = append(errs, field.Required(p.Child("ports"), ""))
	}
	names := sets.New[string]()
	for i, port := range s.Spec.Ports {
		pp := p.Child("ports").Index(i)
		if len(s.Spec.Ports) > 1 {
			errs = append(errs, requireString(port.Name, pp.Child("name"))...)
		}
		if port.Name != "" {
			errs = append(errs, msgs(pp.Child("name"), port.Name, utilvalidation.IsDNS1123Label(port.Name))...)
			if names.Has(port.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		errs = append(errs, msgs(pp.Child("port"), port.Port, utilvalidation.IsValidPortNum(int(port.Port)))...)
		errs = append(errs, oneOf(port.Protocol, pp.Child("protocol"), corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)...)
		// The node port range is configurable: the allocator checks it.
		if port.NodePort != 0 && s.Spec.Type == corev1.ServiceTypeClusterIP {
			errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(s.Spec.Selector, p.Child("selector"))...)
	errs = append(errs, oneOf(s.Spec.SessionAffinity, p.Child("sessionAffinity"), corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP)...)
	return errs
}

func validateServiceUpdate(obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*corev1.Service), old.(*corev1.Service)
	if o.Spec.ClusterIP != "" && n.Spec.ClusterIP != o.Spec.ClusterIP && n.Spec.Type != corev1.ServiceTypeExternalName {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "clusterIPs").Index(0), n.Spec.ClusterIP, "may not change once set")}
	}
	return nil
}

func validateDataKeys[V any](data map[string]V, p *field.Path, seen sets.Set[string]) field.ErrorList {
	var errs field.ErrorList
	for k := range data {
		errs = append(errs, msgs(p.Key(k), k, utilvalidation.IsConfigMapKey(k))...)
		if seen.Has(k) {
			errs = append(errs, field.Invalid(p, k, "duplicate of key present in another data field"))
		}
		seen.Insert(k)
	}
	return errs
}

func validateConfigMap(obj runtime.Object) field.ErrorList {
	c := obj.(*corev1.ConfigMap)
	seen := sets.New[string]()
	errs := validateDataKeys(c.Data, field.NewPath("data"), seen)
	return append(errs, validateDataKeys(c.BinaryData, field.NewPath("binaryData"), seen)...)
}

func validateConfigMapUpdate(obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap)
	if o.Immutable == nil || !*o.Immutable {
		return nil
	}
	var errs field.ErrorList
	if n.Immutable == nil || !*n.Immutable {
		errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
	}
	if !apiequality.Semantic.DeepEqual(n.Data, o.Data) {
		errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
	}
	if !apiequality.Semantic.DeepEqual(n.BinaryData, o.BinaryData) {
		errs = append(errs, field.Forbidden(field.NewPath("binaryData"), "field is immutable when `immutable` is set"))
	}
	return errs
}

func validateSecret(obj runtime.Object) field.ErrorList {
	s := obj.(*corev1.Secret)
	seen := sets.New[string]()
	errs := validateDataKeys(s.Data, field.NewPath("data"), seen)
	return append(errs, validateDataKeys(s.StringData, field.NewPath("stringData"), seen)...)
}

func validateSecretUpdate(obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*corev1.Secret), old.(*corev1.Secret)
	errs := immutable(n.Type, o.Type, field.NewPath("type"))
	if o.Immutable != nil && *o.Immutable && !apiequality.Semantic.DeepEqual(n.Data, o.Data) {
		errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
	}
	return errs
}

func validateDeployment(obj runtime.Object) field.ErrorList {
	d := obj.(*appsv1.Deployment)
	p := field.NewPath("spec")
	errs := validateSelectorTemplate(d.Spec.Selector, &d.Spec.Template, p)
	errs = append(errs, nonNegative(d.Spec.Replicas, p.Child("replicas"))...)
	errs = append(errs, validateTemplate(&d.Spec.Template, p.Child("template"), corev1.RestartPolicyAlways)...)
	st := d.Spec.Strategy
	errs = append(errs, oneOf(st.Type, p.Child("strategy", "type"), appsv1.RecreateDeploymentStrategyType, appsv1.RollingUpdateDeploymentStrategyType)...)
	if st.Type == appsv1.RecreateDeploymentStrategyType && st.RollingUpdate != nil {
		errs = append(errs, field.Forbidden(p.Child("strategy", "rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
	}
	return errs
}

func validateDeploymentUpdate(obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
	return immutable(n.Spec.Selector, o.Spec.Selector, field.NewPath("spec", "selector"))
}

func validateReplicaSet(obj runtime.Object) field.ErrorList {
	rs := obj.(*appsv1.ReplicaSet)
	p := field.NewPath("spec")
	errs := validateSelectorTemplate(rs.Spec.Selector, &rs.Spec.Template, p)
	errs = append(errs, nonNegative(rs.Spec.Replicas, p.Child("replicas"))...)
	return append(errs, validateTemplate(&rs.Spec.Template, p.Child("template"), corev1.RestartPolicyAlways)...)
}

func validateReplicaSetUpdate(obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
	return immutable(n.Spec.Selector, o.Spec.Selector, field.NewPath("spec", "selector"))
}

func validateReplicationController(obj runtime.Object) field.ErrorList {
	rc := obj.(*corev1.ReplicationController)
	p := field.NewPath("spec")
	errs := nonNegative(rc.Spec.Replicas, p.Child("replicas"))
	if len(rc.Spec.Selector) == 0 {
		errs = append(errs, field.Required(p.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabels(rc.Spec.Selector, p.Child("selector"))...)
	}
	if rc.Spec.Template == nil {
		return append(errs, field.Required(p.Child("template"), ""))
	}
	if len(rc.Spec.Selector) > 0 && !labels.SelectorFromSet(rc.Spec.Selector).Matches(labels.Set(rc.Spec.Template.Labels)) {
		errs = append(errs, field.Invalid(p.Child("template", "metadata", "labels"), rc.Spec.Template.Labels, "`selector` does not match template `labels`"))
	}
	return append(errs, validateTemplate(rc.Spec.Template, p.Child("template"), corev1.RestartPolicyAlways)...)
}

func validateReplicationControllerUpdate(obj, old runtime.Object) field.ErrorList {
	return validateReplicationController(obj)
}

func validateStatefulSet(obj runtime.Object) field.ErrorList {
	s := obj.(*appsv1.StatefulSet)
	p := field.NewPath("spec")
	errs := validateSelectorTemplate(s.Spec.Selector, &s.Spec.Template, p)
	errs = append(errs, nonNegative(s.Spec.Replicas, p.Child("replicas"))...)
	errs = append(errs, oneOf(s.Spec.PodManagementPolicy, p.Child("podManagementPolicy"), appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)...)
	return append(errs, validateTemplate(&s.Spec.Template, p.Child("template"), corev1.RestartPolicyAlways)...)
}

// validateStatefulSetUpdate allows only Kubernetes' mutable spec fields.
func validateStatefulSetUpdate(obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet)
	spec := n.Spec.DeepCopy()
	spec.Replicas, spec.Ordinals, spec.Template = o.Spec.Replicas, o.Spec.Ordinals, o.Spec.Template
	spec.UpdateStrategy, spec.RevisionHistoryLimit = o.Spec.UpdateStrategy, o.Spec.RevisionHistoryLimit
	spec.PersistentVolumeClaimRetentionPolicy, spec.MinReadySeconds = o.Spec.PersistentVolumeClaimRetentionPolicy, o.Spec.MinReadySeconds
	if !apiequality.Semantic.DeepEqual(*spec, o.Spec) {
		return field.ErrorList{field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than "+
			"'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")}
	}
	return nil
}

func validateDaemonSet(obj runtime.Object) field.ErrorList {
	d := obj.(*appsv1.DaemonSet)
	p := field.NewPath("spec")
	errs := validateSelectorTemplate(d.Spec.Selector, &d.Spec.Template, p)
	return append(errs, validateTemplate(&d.Spec.Template, p.Child("template"), corev1.RestartPolicyAlways)...)
}

func validateDaemonSetUpdate(obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*appsv1.DaemonSet), old.(*appsv1.DaemonSet)
	return immutable(n.Spec.Selector, o.Spec.Selector, field.NewPath("spec", "selector"))
}

// Job selector labels generated on create, as Kubernetes does.
const (
	jobControllerUIDLabel       = "batch.kubernetes.io/controller-uid"
	jobNameLabel                = "batch.kubernetes.io/job-name"
	legacyJobControllerUIDLabel = "controller-uid"
	legacyJobNameLabel          = "job-name"
)

// prepareJob runs on create: status cleared and, unless manualSelector,
// the selector generated from the job's uid.
func prepareJob(obj runtime.Object) {
	j := obj.(*batchv1.Job)
	j.Status = batchv1.JobStatus{}
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return
	}
	uid := string(j.UID)
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	for k, v := range map[string]string{jobControllerUIDLabel: uid, jobNameLabel: j.Name,
		legacyJobControllerUIDLabel: uid, legacyJobNameLabel: j.Name} {
		j.Spec.Template.Labels[k] = v
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{jobControllerUIDLabel: uid}}
	}
}

func validateJob(obj runtime.Object) field.ErrorList {
	j := obj.(*batchv1.Job)
	p := field.NewPath("spec")
	errs := validateSelectorTemplate(j.Spec.Selector, &j.Spec.Template, p)
	errs = append(errs, nonNegative(j.Spec.Parallelism, p.Child("parallelism"))...)
	errs = append(errs, nonNegative(j.Spec.Completions, p.Child("completions"))...)
	errs = append(errs, nonNegative(j.Spec.BackoffLimit, p.Child("backoffLimit"))...)
	return append(errs, validateTemplate(&j.Spec.Template, p.Child("template"), corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever)...)
}

func validateJobUpdate(obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*batchv1.Job), old.(*batchv1.Job)
	p := field.NewPath("spec")
	errs := immutable(n.Spec.Selector, o.Spec.Selector, p.Child("selector"))
	errs = append(errs, immutable(n.Spec.Completions, o.Spec.Completions, p.Child("completions"))...)
	if o.Spec.Suspend == nil || !*o.Spec.Suspend {
		errs = append(errs, immutable(n.Spec.Template, o.Spec.Template, p.Child("template"))...)
	}
	return errs
}

func validateCronJob(obj runtime.Object) field.ErrorList {
	c := obj.(*batchv1.CronJob)
	p := field.NewPath("spec")
	errs := validateSchedule(c.Spec.Schedule, p.Child("schedule"))
	errs = append(errs, oneOf(c.Spec.ConcurrencyPolicy, p.Child("concurrencyPolicy"), batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent)...)
	t := &c.Spec.JobTemplate.Spec.Template
	return append(errs, validateTemplate(t, p.Child("jobTemplate", "spec", "template"), corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever)...)
}

// validateSchedule accepts the five-field cron syntax and the @ macros.
func validateSchedule(s string, p *field.Path) field.ErrorList {
	if s == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	if strings.HasPrefix(s, "@") {
		switch s {
		case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly":
			return nil
		}
		if strings.HasPrefix(s, "@every ") {
			return nil
		}
		return field.ErrorList{field.Invalid(p, s, "unrecognized descriptor")}
	}
	f := strings.Fields(s)
	if strings.HasPrefix(f[0], "TZ=") || strings.HasPrefix(f[0], "CRON_TZ=") {
		return field.ErrorList{field.Invalid(p, s, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")}
	}
	if len(f) != 5 {
		return field.ErrorList{field.Invalid(p, s, fmt.Sprintf("expected exactly 5 fields, found %d", len(f)))}
	}
	for _, x := range f {
		if strings.Trim(x, "0123456789*/,-?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != "" {
			return field.ErrorList{field.Invalid(p, s, fmt.Sprintf("invalid field %q", x))}
		}
	}
	return nil
}

func validateEndpointSlice(obj runtime.Object) field.ErrorList {
	e := obj.(*discoveryv1.EndpointSlice)
	return oneOf(e.AddressType, field.NewPath("addressType"), discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN)
}

func validateHPA(obj runtime.Object) field.ErrorList {
	h := obj.(*autoscalingv2.HorizontalPodAutoscaler)
	p := field.NewPath("spec")
	errs := requireString(h.Spec.ScaleTargetRef.Kind, p.Child("scaleTargetRef", "kind"))
	errs = append(errs, requireString(h.Spec.ScaleTargetRef.Name, p.Child("scaleTargetRef", "name"))...)
	if h.Spec.MaxReplicas < 1 {
		errs = append(errs, field.Invalid(p.Child("maxReplicas"), h.Spec.MaxReplicas, "must be greater than or equal to 1"))
	}
	if m := h.Spec.MinReplicas; m != nil && (*m < 1 || *m > h.Spec.MaxReplicas) {
		errs = append(errs, field.Invalid(p.Child("minReplicas"), *m, "must be between 1 and maxReplicas"))
	}
	return errs
}

func validateIngress(obj runtime.Object) field.ErrorList {
	ing := obj.(*networkingv1.Ingress)
	p := field.NewPath("spec")
	var errs field.ErrorList
	if ing.Spec.DefaultBackend == nil && len(ing.Spec.Rules) == 0 {
		errs = append(errs, field.Invalid(p, ing.Spec, "either `defaultBackend` or `rules` must be specified"))
	}
	for i, r := range ing.Spec.Rules {
		rp := p.Child("rules").Index(i)
		if r.Host != "" {
			check := utilvalidation.IsDNS1123Subdomain
			if strings.HasPrefix(r.Host, "*.") {
				check = utilvalidation.IsWildcardDNS1123Subdomain
			}
			errs = append(errs, msgs(rp.Child("host"), r.Host, check(r.Host))...)
		}
		if r.HTTP == nil {
			continue
		}
		for j, hp := range r.HTTP.Paths {
			pp := rp.Child("http", "paths").Index(j)
			if hp.PathType == nil {
				errs = append(errs, field.Required(pp.Child("pathType"), "pathType must be specified"))
			}
			if hp.Backend.Service == nil && hp.Backend.Resource == nil {
				errs = append(errs, field.Invalid(pp.Child("backend"), hp.Backend, "one backend (service or resource) must be specified"))
			}
		}
	}
	return errs
}
