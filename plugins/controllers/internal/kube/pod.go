package kube

import (
	"time"

	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Pod is what controllers read of a pod.
type Pod struct {
	Raw      rawjson.Value
	Meta     Meta
	Phase    string
	NodeName string
	// Ready: the Ready condition is True, since ReadySince.
	Ready      bool
	ReadySince time.Time
	Restarts   int64
	PodIP      string
}

// ReadPod reads pod.
func ReadPod(pod rawjson.Value) Pod {
	p := Pod{Raw: pod, Meta: ReadMeta(pod), Phase: Str(pod, "status", "phase"), NodeName: Str(pod, "spec", "nodeName"),
		PodIP: Str(pod, "status", "podIP")}
	if conds, ok := pod.Get("status", "conditions"); ok {
		_ = conds.EachElem(func(_ int, c rawjson.Value) bool {
			if Str(c, "type") == "Ready" {
				p.Ready = Str(c, "status") == "True"
				if v, ok := c.Get("lastTransitionTime"); ok {
					p.ReadySince = Time(v)
				}
				return false
			}
			return true
		})
	}
	if cs, ok := pod.Get("status", "containerStatuses"); ok {
		_ = cs.EachElem(func(_ int, c rawjson.Value) bool {
			p.Restarts += Int(c, 0, "restartCount")
			return true
		})
	}
	return p
}

// Active reports whether the pod counts toward a controller's replicas:
// not terminated and not being deleted.
func (p *Pod) Active() bool {
	return p.Phase != "Succeeded" && p.Phase != "Failed" && !p.Meta.Deleting
}

// Available reports whether the pod has been ready for minReady at now;
// if it is ready but not yet available, wait is the time left.
func (p *Pod) Available(minReady time.Duration, now time.Time) (ok bool, wait time.Duration) {
	if !p.Ready {
		return false, 0
	}
	if minReady <= 0 || p.ReadySince.IsZero() {
		return true, 0
	}
	left := p.ReadySince.Add(minReady).Sub(now)
	if left <= 0 {
		return true, 0
	}
	return false, left
}

// phaseRank orders phases for scale-down: Pending < Unknown < Running.
func phaseRank(phase string) int {
	switch phase {
	case "Pending", "":
		return 0
	case "Unknown":
		return 1
	case "Running":
		return 2
	}
	return 3
}

// DeleteFirst reports whether a should be deleted before b when scaling
// down (Kubernetes' ActivePods order, simplified): unscheduled, then
// pending, then not ready, then more restarts, then newer.
func DeleteFirst(a, b *Pod) bool {
	if (a.NodeName == "") != (b.NodeName == "") {
		return a.NodeName == ""
	}
	if ra, rb := phaseRank(a.Phase), phaseRank(b.Phase); ra != rb {
		return ra < rb
	}
	if a.Ready != b.Ready {
		return !a.Ready
	}
	if a.Restarts != b.Restarts {
		return a.Restarts > b.Restarts
	}
	if !a.Meta.Created.Equal(b.Meta.Created) {
		return a.Meta.Created.After(b.Meta.Created)
	}
	return a.Meta.Name > b.Meta.Name
}

// AppendOwnerRefs appends refs as a JSON array.
func AppendOwnerRefs(dst []byte, refs []OwnerRef) []byte {
	dst = append(dst, '[')
	for i, r := range refs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendOwnerRef(dst, r)
	}
	return append(dst, ']')
}

// AppendOwnerRef appends one owner reference.
func AppendOwnerRef(dst []byte, r OwnerRef) []byte {
	dst = append(dst, `{"apiVersion":`...)
	dst = rawjson.AppendString(dst, r.APIVersion)
	dst = append(dst, `,"kind":`...)
	dst = rawjson.AppendString(dst, r.Kind)
	dst = append(dst, `,"name":`...)
	dst = rawjson.AppendString(dst, r.Name)
	dst = append(dst, `,"uid":`...)
	dst = rawjson.AppendString(dst, r.UID)
	if r.Controller {
		dst = append(dst, `,"controller":true`...)
	}
	if r.BlockOwnerDeletion {
		dst = append(dst, `,"blockOwnerDeletion":true`...)
	}
	return append(dst, '}')
}

// OwnerRefsPatch returns a merge patch that sets metadata.ownerReferences
// to refs, with the object's uid as a precondition.
func OwnerRefsPatch(uid string, refs []OwnerRef) []byte {
	b := []byte(`{"metadata":{"ownerReferences":`)
	if len(refs) == 0 {
		b = append(b, "null"...)
	} else {
		b = AppendOwnerRefs(b, refs)
	}
	b = append(b, `,"uid":`...)
	b = rawjson.AppendString(b, uid)
	return append(b, "}}"...)
}

// AppendStringMap appends m as a JSON object with sorted keys.
func AppendStringMap(dst []byte, m map[string]string) []byte {
	return append(dst, rawjson.StringMap(m)...)
}

// WithoutOwner returns refs without the reference to uid.
func WithoutOwner(refs []OwnerRef, uid string) []OwnerRef {
	out := make([]OwnerRef, 0, len(refs))
	for _, r := range refs {
		if r.UID != uid {
			out = append(out, r)
		}
	}
	return out
}
