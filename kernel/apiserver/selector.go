package apiserver

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// selector filters objects by label and field selectors. The zero value
// (both nil) matches everything.
type selector struct {
	labels labels.Selector
	fields fields.Selector
}

// parseSelector reads labelSelector and fieldSelector. Syntax errors and
// fields the resource cannot select on are 400, as in Kubernetes.
func parseSelector(res *resource, q url.Values) (selector, error) {
	var sel selector
	if ls := q.Get("labelSelector"); ls != "" {
		parsed, err := labels.Parse(ls)
		if err != nil {
			return sel, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
		}
		if !parsed.Empty() {
			sel.labels = parsed
		}
	}
	if fs := q.Get("fieldSelector"); fs != "" {
		parsed, err := fields.ParseSelector(fs)
		if err != nil {
			return sel, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
		}
		for _, r := range parsed.Requirements() {
			if r.Field != "metadata.name" && r.Field != "metadata.namespace" && !slices.Contains(res.fieldNames, r.Field) {
				return sel, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", r.Field))
			}
		}
		if !parsed.Empty() {
			sel.fields = parsed
		}
	}
	return sel, nil
}

func (s selector) empty() bool { return s.labels == nil && s.fields == nil }

// matches reports whether obj passes the selector.
func (s selector) matches(res *resource, obj runtime.Object) bool {
	if s.empty() {
		return true
	}
	m := accessor(obj)
	if s.labels != nil && !s.labels.Matches(labels.Set(m.GetLabels())) {
		return false
	}
	if s.fields == nil {
		return true
	}
	set := fields.Set{"metadata.name": m.GetName()}
	if res.namespaced {
		set["metadata.namespace"] = m.GetNamespace()
	}
	if res.fields != nil {
		for k, v := range res.fields(obj) {
			set[k] = v
		}
	}
	return s.fields.Matches(set)
}

// matchesStored decodes a stored value and matches it.
func (s selector) matchesStored(res *resource, data []byte) (bool, error) {
	if s.empty() {
		return true, nil
	}
	obj, err := decodeStored(res, data, 0)
	if err != nil {
		return false, err
	}
	return s.matches(res, obj), nil
}

// withName narrows the selector to one object name (a watch of a named
// object).
func (s selector) withName(name string) selector {
	req := fields.OneTermEqualSelector("metadata.name", name)
	if s.fields == nil {
		s.fields = req
	} else {
		s.fields = fields.AndSelectors(s.fields, req)
	}
	return s
}

// Selectable fields beyond metadata.name and metadata.namespace, as in
// Kubernetes' per-kind field label conversion functions.

var podFieldNames = []string{"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
	"spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"}

func podFields(obj runtime.Object) map[string]string {
	p := obj.(*corev1.Pod)
	podIP := ""
	if len(p.Status.PodIPs) > 0 {
		podIP = p.Status.PodIPs[0].IP
	} else {
		podIP = p.Status.PodIP
	}
	return map[string]string{
		"spec.nodeName":            p.Spec.NodeName,
		"spec.restartPolicy":       string(p.Spec.RestartPolicy),
		"spec.schedulerName":       p.Spec.SchedulerName,
		"spec.serviceAccountName":  p.Spec.ServiceAccountName,
		"spec.hostNetwork":         strconv.FormatBool(p.Spec.HostNetwork),
		"status.phase":             string(p.Status.Phase),
		"status.podIP":             podIP,
		"status.nominatedNodeName": p.Status.NominatedNodeName,
	}
}

var eventFieldNames = []string{"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
	"involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
	"reason", "reportingComponent", "source", "type"}

func eventFields(obj runtime.Object) map[string]string {
	e := obj.(*corev1.Event)
	source := e.Source.Component
	if source == "" {
		source = e.ReportingController
	}
	return map[string]string{
		"involvedObject.kind":            e.InvolvedObject.Kind,
		"involvedObject.namespace":       e.InvolvedObject.Namespace,
		"involvedObject.name":            e.InvolvedObject.Name,
		"involvedObject.uid":             string(e.InvolvedObject.UID),
		"involvedObject.apiVersion":      e.InvolvedObject.APIVersion,
		"involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
		"involvedObject.fieldPath":       e.InvolvedObject.FieldPath,
		"reason":                         e.Reason,
		"reportingComponent":             e.ReportingController,
		"source":                         source,
		"type":                           e.Type,
	}
}

func namespaceFields(obj runtime.Object) map[string]string {
	return map[string]string{"status.phase": string(obj.(*corev1.Namespace).Status.Phase)}
}

func nodeFields(obj runtime.Object) map[string]string {
	return map[string]string{"spec.unschedulable": strconv.FormatBool(obj.(*corev1.Node).Spec.Unschedulable)}
}

func secretFields(obj runtime.Object) map[string]string {
	return map[string]string{"type": string(obj.(*corev1.Secret).Type)}
}

func replicaSetFields(obj runtime.Object) map[string]string {
	return map[string]string{"status.replicas": strconv.Itoa(int(obj.(*appsv1.ReplicaSet).Status.Replicas))}
}

func jobFields(obj runtime.Object) map[string]string {
	return map[string]string{"status.successful": strconv.Itoa(int(obj.(*batchv1.Job).Status.Succeeded))}
}
