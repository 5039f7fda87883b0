package apiserver

import (
	"fmt"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validation follows Kubernetes' pkg/apis/*/validation for the rules users
// hit in practice: metadata (names, labels, annotations, finalizers, owner
// references), required fields, enumerations, selector/template agreement
// and immutable fields. It is not exhaustive; everything it rejects,
// Kubernetes rejects too, with the same field paths.

// validateObject runs the metadata and kind validation of a create.
func validateObject(res *resource, obj runtime.Object) field.ErrorList {
	m, err := meta.Accessor(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	errs := validation.ValidateObjectMetaAccessor(m, res.namespaced, res.nameFn, field.NewPath("metadata"))
	if res.validate != nil {
		errs = append(errs, res.validate(obj)...)
	}
	return errs
}

// validateObjectUpdate runs the validation of an update; obj already carries
// the system fields copied from old.
// A binding may set a pod's nodeName, which the spec rules forbid.
func validateObjectUpdate(req *request, obj, old runtime.Object) field.ErrorList {
	res := req.res
	m, err := meta.Accessor(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	om, err := meta.Accessor(old)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	errs := validation.ValidateObjectMetaAccessorUpdate(m, om, field.NewPath("metadata"))
	errs = append(errs, validation.ValidateFinalizers(m.GetFinalizers(), field.NewPath("metadata", "finalizers"))...)
	if res.validate != nil {
		errs = append(errs, res.validate(obj)...)
	}
	if res.validateUpdate != nil && req.subresource != subBinding {
		errs = append(errs, res.validateUpdate(obj, old)...)
	}
	return errs
}

func immutable(newVal, oldVal any, p *field.Path) field.ErrorList {
	return validation.ValidateImmutableField(newVal, oldVal, p)
}

func requireString(v string, p *field.Path) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	return nil
}

func oneOf[T ~string](v T, p *field.Path, allowed ...T) field.ErrorList {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	vals := make([]string, len(allowed))
	for i, a := range allowed {
		vals[i] = string(a)
	}
	if v == "" {
		return field.ErrorList{field.Required(p, fmt.Sprintf("supported values: %q", vals))}
	}
	return field.ErrorList{field.NotSupported(p, v, vals)}
}

func msgs(p *field.Path, v any, ms []string) field.ErrorList {
	var errs field.ErrorList
	for _, m := range ms {
		errs = append(errs, field.Invalid(p, v, m))
	}
	return errs
}

// validatePod validates a pod's spec.
func validatePod(obj runtime.Object) field.ErrorList {
	return validatePodSpec(&obj.(*corev1.Pod).Spec, field.NewPath("spec"))
}

func validatePodSpec(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	volumes := sets.New[string]()
	for i, v := range s.Volumes {
		vp := p.Child("volumes").Index(i).Child("name")
		errs = append(errs, msgs(vp, v.Name, utilvalidation.IsDNS1123Label(v.Name))...)
		if volumes.Has(v.Name) {
			errs = append(errs, field.Duplicate(vp, v.Name))
		}
		volumes.Insert(v.Name)
	}
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), ""))
	}
	names := sets.New[string]()
	errs = append(errs, validateContainers(s.InitContainers, p.Child("initContainers"), names, volumes)...)
	errs = append(errs, validateContainers(s.Containers, p.Child("containers"), names, volumes)...)
	errs = append(errs, oneOf(s.RestartPolicy, p.Child("restartPolicy"),
		corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever)...)
	errs = append(errs, oneOf(s.DNSPolicy, p.Child("dnsPolicy"),
		corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone)...)
	if s.NodeName != "" {
		errs = append(errs, msgs(p.Child("nodeName"), s.NodeName, validation.NameIsDNSSubdomain(s.NodeName, false))...)
	}
	errs = append(errs, metav1validation.ValidateLabels(s.NodeSelector, p.Child("nodeSelector"))...)
	if s.TerminationGracePeriodSeconds != nil && *s.TerminationGracePeriodSeconds < 0 {
		errs = append(errs, field.Invalid(p.Child("terminationGracePeriodSeconds"), *s.TerminationGracePeriodSeconds, "must be >= 0"))
	}
	if s.ActiveDeadlineSeconds != nil && *s.ActiveDeadlineSeconds <= 0 {
		errs = append(errs, field.Invalid(p.Child("activeDeadlineSeconds"), *s.ActiveDeadlineSeconds, "must be greater than 0"))
	}
	return errs
}

func validateContainers(cs []corev1.Container, p *field.Path, names, volumes sets.Set[string]) field.ErrorList {
	var errs field.ErrorList
	for i := range cs {
		c := &cs[i]
		cp := p.Index(i)
		if c.Name == "" {
			errs = append(errs, field.Required(cp.Child("name"), ""))
		} else {
			errs = append(errs, msgs(cp.Child("name"), c.Name, utilvalidation.IsDNS1123Label(c.Name))...)
			if names.Has(c.Name) {
				errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
			}
			names.Insert(c.Name)
		}
		if c.Image == "" {
			errs = append(errs, field.Required(cp.Child("image"), ""))
		}
		errs = append(errs, validatePorts(c.Ports, cp.Child("ports"))...)
		for j, e := range c.Env {
			ep := cp.Child("env").Index(j).Child("name")
			errs = append(errs, msgs(ep, e.Name, utilvalidation.IsRelaxedEnvVarName(e.Name))...)
		}
		for j, m := range c.VolumeMounts {
			mp := cp.Child("volumeMounts").Index(j)
			if !volumes.Has(m.Name) {
				errs = append(errs, field.NotFound(mp.Child("name"), m.Name))
			}
			errs = append(errs, requireString(m.MountPath, mp.Child("mountPath"))...)
		}
		for name, lim := range c.Resources.Limits {
			if req, ok := c.Resources.Requests[name]; ok && req.Cmp(lim) > 0 {
				errs = append(errs, field.Invalid(cp.Child("resources", "requests").Key(string(name)), req.String(),
					fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
			}
		}
		if c.ImagePullPolicy != "" {
			errs = append(errs, oneOf(c.ImagePullPolicy, cp.Child("imagePullPolicy"), corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever)...)
		}
	}
	return errs
}

func validatePorts(ports []corev1.ContainerPort, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, port := range ports {
		pp := p.Index(i)
		errs = append(errs, msgs(pp.Child("containerPort"), port.ContainerPort, utilvalidation.IsValidPortNum(int(port.ContainerPort)))...)
		if port.HostPort != 0 {
			errs = append(errs, msgs(pp.Child("hostPort"), port.HostPort, utilvalidation.IsValidPortNum(int(port.HostPort)))...)
		}
		if port.Name != "" {
			errs = append(errs, msgs(pp.Child("name"), port.Name, utilvalidation.IsValidPortName(port.Name))...)
		}
		errs = append(errs, oneOf(port.Protocol, pp.Child("protocol"), corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)...)
	}
	return errs
}

// podUpdateForbidden is Kubernetes' message for changes to a pod's
// immutable spec.
const podUpdateForbidden = "pod updates may not change fields other than `spec.containers[*].image`," +
	"`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations)," +
	"`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"

// validatePodUpdate enforces pod spec immutability: only container images,
// activeDeadlineSeconds, added tolerations and removed scheduling gates may
// change.
func validatePodUpdate(obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*corev1.Pod), old.(*corev1.Pod)
	spec := n.Spec.DeepCopy()
	for i := range spec.Containers {
		if i < len(o.Spec.Containers) {
			spec.Containers[i].Image = o.Spec.Containers[i].Image
		}
	}
	for i := range spec.InitContainers {
		if i < len(o.Spec.InitContainers) {
			spec.InitContainers[i].Image = o.Spec.InitContainers[i].Image
		}
	}
	var errs field.ErrorList
	if n.Spec.ActiveDeadlineSeconds != nil {
		if o.Spec.ActiveDeadlineSeconds != nil && *n.Spec.ActiveDeadlineSeconds > *o.Spec.ActiveDeadlineSeconds {
			errs = append(errs, field.Invalid(field.NewPath("spec", "activeDeadlineSeconds"), *n.Spec.ActiveDeadlineSeconds, "must be less than or equal to previous value"))
		}
		spec.ActiveDeadlineSeconds = o.Spec.ActiveDeadlineSeconds
	}
	if tolerationsAdded(n.Spec.Tolerations, o.Spec.Tolerations) {
		spec.Tolerations = o.Spec.Tolerations
	}
	if len(n.Spec.SchedulingGates) <= len(o.Spec.SchedulingGates) {
		spec.SchedulingGates = o.Spec.SchedulingGates
	}
	if !apiequality.Semantic.DeepEqual(*spec, o.Spec) {
		errs = append(errs, field.Forbidden(field.NewPath("spec"), podUpdateForbidden))
	}
	return errs
}

// tolerationsAdded reports whether every old toleration is still present.
func tolerationsAdded(cur, old []corev1.Toleration) bool {
	for _, o := range old {
		found := false
		for _, c := range cur {
			if apiequality.Semantic.DeepEqual(o, c) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// validateSelectorTemplate checks a workload's selector: present, not
// empty, valid, and matching the template's labels.
func validateSelectorTemplate(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, p *field.Path) field.ErrorList {
	if sel == nil {
		return field.ErrorList{field.Required(p.Child("selector"), "")}
	}
	errs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, p.Child("selector"))
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(p.Child("selector"), sel, "empty selector is invalid for deployment"))
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err == nil && !selector.Empty() && !selector.Matches(labels.Set(tmpl.Labels)) {
		errs = append(errs, field.Invalid(p.Child("template", "metadata", "labels"), tmpl.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, metav1validation.ValidateLabels(tmpl.Labels, p.Child("template", "metadata", "labels"))...)
	errs = append(errs, validation.ValidateAnnotations(tmpl.Annotations, p.Child("template", "metadata", "annotations"))...)
	return errs
}

// validateTemplate validates a pod template whose restart policy is
// restricted to allowed.
func validateTemplate(t *corev1.PodTemplateSpec, p *field.Path, allowed ...corev1.RestartPolicy) field.ErrorList {
	errs := validatePodSpec(&t.Spec, p.Child("spec"))
	if len(errs) == 0 || t.Spec.RestartPolicy != "" {
		errs = append(errs, restartPolicyIn(t.Spec.RestartPolicy, p.Child("spec", "restartPolicy"), allowed...)...)
	}
	return errs
}

func restartPolicyIn(rp corev1.RestartPolicy, p *field.Path, allowed ...corev1.RestartPolicy) field.ErrorList {
	for _, a := range allowed {
		if rp == a {
			return nil
		}
	}
	vals := make([]string, len(allowed))
	for i, a := range allowed {
		vals[i] = string(a)
	}
	if rp == "" {
		return field.ErrorList{field.Required(p, fmt.Sprintf("valid values: %q", vals))}
	}
	return field.ErrorList{field.NotSupported(p, rp, vals)}
}

func nonNegative(v *int32, p *field.Path) field.ErrorList {
	if v != nil && *v < 0 {
		return field.ErrorList{field.Invalid(p, *v, "must be greater than or equal to 0")}
	}
	return nil
}

// specOf returns the Spec field of a typed object, if it has one.
func specOf(obj runtime.Object) (reflect.Value, bool) {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	f := v.Elem().FieldByName("Spec")
	return f, f.IsValid()
}

// statusOf returns the Status field of a typed object, if it has one.
func statusOf(obj runtime.Object) (reflect.Value, bool) {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	f := v.Elem().FieldByName("Status")
	return f, f.IsValid()
}

// clearStatus resets an object's status on create.
func clearStatus(obj runtime.Object) {
	if st, ok := statusOf(obj); ok && st.CanSet() {
		st.Set(reflect.Zero(st.Type()))
	}
}

// specChanged reports whether two objects' specs differ.
func specChanged(obj, old runtime.Object) bool {
	a, ok1 := specOf(obj)
	b, ok2 := specOf(old)
	if !ok1 || !ok2 {
		return false
	}
	return !apiequality.Semantic.DeepEqual(a.Interface(), b.Interface())
}

// copyStatus sets dst's status to src's.
func copyStatus(dst, src runtime.Object) {
	d, ok1 := statusOf(dst)
	s, ok2 := statusOf(src)
	if ok1 && ok2 && d.CanSet() {
		d.Set(s)
	}
}
