// Package podspec finds the pod spec inside workload objects (Pods and the
// pod templates of Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs,
// CronJobs, ReplicationControllers and PodTemplates), so that admission
// policies about containers apply the same way to every kind that makes
// pods.
package podspec

import "github.com/tugboat-dev/tugboat/sdk/rawjson"

// Path returns the JSON pointer tokens of the pod spec in objects of the
// given API group and kind, or nil if the kind holds no pod spec.
func Path(group, kind string) []string {
	switch group {
	case "":
		switch kind {
		case "Pod":
			return []string{"spec"}
		case "ReplicationController":
			return []string{"spec", "template", "spec"}
		case "PodTemplate":
			return []string{"template", "spec"}
		}
	case "apps":
		switch kind {
		case "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet":
			return []string{"spec", "template", "spec"}
		}
	case "batch":
		switch kind {
		case "Job":
			return []string{"spec", "template", "spec"}
		case "CronJob":
			return []string{"spec", "jobTemplate", "spec", "template", "spec"}
		}
	}
	return nil
}

// Find returns the pod spec of obj, an object of the given group and kind,
// with its path; ok is false if the kind holds no pod spec or obj lacks it.
func Find(group, kind string, obj rawjson.Value) (spec rawjson.Value, path []string, ok bool) {
	path = Path(group, kind)
	if path == nil {
		return nil, nil, false
	}
	spec, ok = obj.Get(path...)
	if !ok || spec.Kind() != rawjson.Object {
		return nil, nil, false
	}
	return spec, path, true
}

// containerFields are the pod spec fields that hold containers, in the
// order policies report them.
var containerFields = [...]string{"initContainers", "containers", "ephemeralContainers"}

// Container is one container of a pod spec.
type Container struct {
	// Field is "initContainers", "containers" or "ephemeralContainers".
	Field string
	// Index is the container's position in Field.
	Index int
	// Name is the container's name.
	Name string
	// Value is the container object.
	Value rawjson.Value
}

// EachContainer calls fn for every container of spec in initContainers,
// containers and then ephemeralContainers (only the fields listed in
// fields, or all three if fields is empty), until fn returns false.
func EachContainer(spec rawjson.Value, fields []string, fn func(Container) bool) {
	for _, f := range containerFields {
		if len(fields) > 0 && !contains(fields, f) {
			continue
		}
		list, ok := spec.Get(f)
		if !ok {
			continue
		}
		stop := false
		_ = list.EachElem(func(i int, c rawjson.Value) bool {
			name := ""
			if n, ok := c.Get("name"); ok {
				name, _ = n.String()
			}
			if !fn(Container{Field: f, Index: i, Name: name, Value: c}) {
				stop = true
			}
			return !stop
		})
		if stop {
			return
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
