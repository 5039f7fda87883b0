package podtopologyspread

import (
	"errors"
	"slices"
	"strconv"

	"github.com/tugboat-dev/tugboat/sdk/rawjson"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

// Defaulting types of the settings (kube's PodTopologySpreadArgs).
const (
	DefaultingSystem = "System"
	DefaultingList   = "List"
)

// DefaultConstraint is a cluster-level default constraint: it applies to
// pods without spec.topologySpreadConstraints, with a selector derived
// from the pod (see defaultsFor).
type DefaultConstraint struct {
	MaxSkew     int64
	TopologyKey string
	// Hard is whenUnsatisfiable DoNotSchedule (else ScheduleAnyway).
	Hard bool
}

// SystemDefaults are kube-scheduler's system default constraints.
var SystemDefaults = []DefaultConstraint{
	{MaxSkew: 3, TopologyKey: hostnameKey},
	{MaxSkew: 5, TopologyKey: "topology.kubernetes.io/zone"},
}

// perPodLabels are labels a workload controller gives each pod its own
// value of; they are left out of the derived selector.
var perPodLabels = []string{"statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index", "controller-revision-hash"}

// defaultOwners are the controller kinds whose pods get the default
// constraints (kube derives their selector from these workloads and from
// Services).
var defaultOwners = []string{"ReplicaSet", "ReplicationController", "StatefulSet"}

// Configure reads the settings, as kube's PodTopologySpreadArgs:
//
//	{"defaultingType": "System" | "List",
//	 "defaultConstraints": [{"maxSkew": 1, "topologyKey": "...", "whenUnsatisfiable": "DoNotSchedule"}]}
//
// System (the default) uses SystemDefaults; List uses defaultConstraints
// (an empty list turns defaulting off).
func (p *Plugin) Configure(settings rawjson.Value) error {
	p.defaults, p.system = SystemDefaults, true
	if settings == nil {
		return nil
	}
	if settings.Kind() != rawjson.Object {
		return errors.New("settings must be an object")
	}
	typ := DefaultingSystem
	if t, ok := settings.Get("defaultingType"); ok {
		typ, _ = t.String()
	}
	list, hasList := settings.Get("defaultConstraints")
	switch typ {
	case DefaultingSystem:
		if hasList && list.Len() > 0 {
			return errors.New("defaultConstraints must be empty with defaultingType System")
		}
		return nil
	case DefaultingList:
	default:
		return errors.New(`defaultingType must be "System" or "List"`)
	}
	p.defaults, p.system = nil, false
	if !hasList {
		return nil
	}
	var perr error
	err := list.EachElem(func(i int, e rawjson.Value) bool {
		var d DefaultConstraint
		if v, ok := e.Get("maxSkew"); ok {
			d.MaxSkew, _ = v.Int()
		}
		if v, ok := e.Get("topologyKey"); ok {
			d.TopologyKey, _ = v.String()
		}
		when := ""
		if v, ok := e.Get("whenUnsatisfiable"); ok {
			when, _ = v.String()
		}
		_, hasSelector := e.Get("labelSelector")
		switch {
		case d.MaxSkew < 1 || d.TopologyKey == "":
			perr = errors.New("defaultConstraints[" + strconv.Itoa(i) + "]: maxSkew must be at least 1 and topologyKey set")
		case when != "DoNotSchedule" && when != "ScheduleAnyway":
			perr = errors.New("defaultConstraints[" + strconv.Itoa(i) + "]: whenUnsatisfiable must be DoNotSchedule or ScheduleAnyway")
		case hasSelector:
			perr = errors.New("defaultConstraints[" + strconv.Itoa(i) + "]: labelSelector is not allowed (it is derived from the pod)")
		}
		d.Hard = when == "DoNotSchedule"
		p.defaults = append(p.defaults, d)
		return perr == nil
	})
	if perr != nil {
		return perr
	}
	if err != nil || list.Kind() != rawjson.Array {
		return errors.New("defaultConstraints must be a list")
	}
	return nil
}

// hardDefaults reports whether a default constraint is DoNotSchedule.
func (p *Plugin) hardDefaults() bool {
	return slices.ContainsFunc(p.defaults, func(d DefaultConstraint) bool { return d.Hard })
}

// defaultsFor returns the default constraints for pod as
// topologySpreadConstraints JSON, or nil when they do not apply: the pod
// has its own constraints, is not controlled by a ReplicaSet,
// ReplicationController or StatefulSet, or has no labels to select its
// siblings by. kube-scheduler derives the selector from the Services and
// workloads selecting the pod; this plugin sees neither, and uses the
// pod's labels without the per-pod ones (a ReplicaSet's pods carry exactly
// its selector's labels, pod-template-hash included).
func (p *Plugin) defaultsFor(pod *sched.Pod) []byte {
	if len(p.defaults) == 0 || len(pod.TopologySpreadConstraints) > 0 || !controlled(pod.Raw) {
		return nil
	}
	keys := make([]string, 0, len(pod.Labels))
	for k := range pod.Labels {
		if !slices.Contains(perPodLabels, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	sel := []byte(`{"matchLabels":{`)
	for i, k := range keys {
		if i > 0 {
			sel = append(sel, ',')
		}
		sel = strconv.AppendQuote(sel, k)
		sel = append(sel, ':')
		sel = strconv.AppendQuote(sel, pod.Labels[k])
	}
	sel = append(sel, "}}"...)
	out := []byte{'['}
	for i, d := range p.defaults {
		if i > 0 {
			out = append(out, ',')
		}
		when := "ScheduleAnyway"
		if d.Hard {
			when = "DoNotSchedule"
		}
		out = append(out, `{"maxSkew":`...)
		out = strconv.AppendInt(out, d.MaxSkew, 10)
		out = append(out, `,"topologyKey":`...)
		out = strconv.AppendQuote(out, d.TopologyKey)
		out = append(out, `,"whenUnsatisfiable":"`+when+`","labelSelector":`...)
		out = append(out, sel...)
		out = append(out, '}')
	}
	return append(out, ']')
}

// controlled reports whether the pod JSON has a controller
// ownerReference of one of defaultOwners.
func controlled(raw rawjson.Value) bool {
	refs, ok := raw.Get("metadata", "ownerReferences")
	if !ok {
		return false
	}
	found := false
	_ = refs.EachElem(func(_ int, r rawjson.Value) bool {
		c, _ := r.Get("controller")
		isCtrl, _ := c.Bool()
		kind, _ := r.Get("kind")
		k, _ := kind.String()
		found = isCtrl && slices.Contains(defaultOwners, k)
		return !found
	})
	return found
}
