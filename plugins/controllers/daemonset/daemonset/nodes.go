package daemonset

import (
	"slices"
	"strconv"

	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// node is what the controller reads of a Node.
type node struct {
	name   string
	labels map[string]string
	taints []taint
}

type taint struct{ key, value, effect string }

type toleration struct{ key, operator, value, effect string }

func readNode(v rawjson.Value) node {
	m := kube.ReadMeta(v)
	n := node{name: m.Name, labels: m.Labels}
	if ts, ok := v.Get("spec", "taints"); ok {
		for _, t := range ts.Elems() {
			n.taints = append(n.taints, taint{kube.Str(t, "key"), kube.Str(t, "value"), kube.Str(t, "effect")})
		}
	}
	return n
}

// daemonTolerations are the tolerations Kubernetes adds to every daemon
// pod (AddOrUpdateDaemonPodTolerations): daemons keep running on
// not-ready, unreachable, pressured and cordoned nodes.
var daemonTolerations = []toleration{
	{"node.kubernetes.io/not-ready", "Exists", "", "NoExecute"},
	{"node.kubernetes.io/unreachable", "Exists", "", "NoExecute"},
	{"node.kubernetes.io/disk-pressure", "Exists", "", "NoSchedule"},
	{"node.kubernetes.io/memory-pressure", "Exists", "", "NoSchedule"},
	{"node.kubernetes.io/pid-pressure", "Exists", "", "NoSchedule"},
	{"node.kubernetes.io/unschedulable", "Exists", "", "NoSchedule"},
}

// networkToleration is added for hostNetwork daemons.
var networkToleration = toleration{"node.kubernetes.io/network-unavailable", "Exists", "", "NoSchedule"}

// podTolerations are the template's tolerations plus the daemon ones it
// lacks.
func podTolerations(spec rawjson.Value) []toleration {
	var out []toleration
	if ts, ok := spec.Get("tolerations"); ok {
		for _, t := range ts.Elems() {
			out = append(out, toleration{kube.Str(t, "key"), kube.Str(t, "operator"), kube.Str(t, "value"), kube.Str(t, "effect")})
		}
	}
	add := slices.Clone(daemonTolerations)
	if kube.Bool(spec, "hostNetwork") {
		add = append(add, networkToleration)
	}
	for _, d := range add {
		if !slices.ContainsFunc(out, func(t toleration) bool { return t.key == d.key && t.effect == d.effect }) {
			out = append(out, d)
		}
	}
	return out
}

// tolerates reports whether t tolerates taint (Kubernetes' ToleratesTaint).
func (t toleration) tolerates(tn taint) bool {
	if t.effect != "" && t.effect != tn.effect {
		return false
	}
	if t.key == "" {
		return t.operator == "Exists"
	}
	if t.key != tn.key {
		return false
	}
	switch t.operator {
	case "Exists":
		return true
	case "", "Equal":
		return t.value == tn.value
	}
	return false
}

// placement says whether a daemon pod should run on a node: run (a pod
// should be created there) and keep (an existing pod may stay: a
// NoSchedule taint keeps running pods, a NoExecute one does not).
func placement(n *node, spec rawjson.Value, tols []toleration) (run, keep bool) {
	if !selectorMatches(n, spec) {
		return false, false
	}
	run, keep = true, true
	for _, tn := range n.taints {
		if tn.effect != "NoSchedule" && tn.effect != "NoExecute" {
			continue
		}
		if slices.ContainsFunc(tols, func(t toleration) bool { return t.tolerates(tn) }) {
			continue
		}
		run = false
		if tn.effect == "NoExecute" {
			keep = false
		}
	}
	return run, keep
}

// selectorMatches checks the pod's nodeSelector and required node
// affinity against the node.
func selectorMatches(n *node, spec rawjson.Value) bool {
	if sel, ok := spec.Get("nodeSelector"); ok {
		for k, v := range kube.StringMap(sel) {
			if lv, ok := n.labels[k]; !ok || lv != v {
				return false
			}
		}
	}
	terms, ok := spec.Get("affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
	if !ok || terms.IsNull() {
		return true
	}
	for _, term := range terms.Elems() {
		if termMatches(n, term) {
			return true
		}
	}
	return false
}

// termMatches: one nodeSelectorTerm (an empty term matches nothing).
func termMatches(n *node, term rawjson.Value) bool {
	any := false
	for _, field := range []string{"matchExpressions", "matchFields"} {
		reqs, ok := term.Get(field)
		if !ok {
			continue
		}
		for _, r := range reqs.Elems() {
			any = true
			key := kube.Str(r, "key")
			var val string
			var has bool
			if field == "matchFields" {
				if key != "metadata.name" {
					return false
				}
				val, has = n.name, true
			} else {
				val, has = n.labels[key]
			}
			var values []string
			if vs, ok := r.Get("values"); ok {
				for _, x := range vs.Elems() {
					s, _ := x.String()
					values = append(values, s)
				}
			}
			if !requirementMatches(kube.Str(r, "operator"), val, has, values) {
				return false
			}
		}
	}
	return any
}

func requirementMatches(op, val string, has bool, values []string) bool {
	switch op {
	case "In":
		return has && slices.Contains(values, val)
	case "NotIn":
		return !has || !slices.Contains(values, val)
	case "Exists":
		return has
	case "DoesNotExist":
		return !has
	case "Gt", "Lt":
		if !has || len(values) != 1 {
			return false
		}
		a, err1 := strconv.ParseInt(val, 10, 64)
		b, err2 := strconv.ParseInt(values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if op == "Gt" {
			return a > b
		}
		return a < b
	}
	return false
}

// targetNode is the node a daemon pod is for: spec.nodeName once bound,
// else the single metadata.name of its required node affinity.
func targetNode(pod rawjson.Value) string {
	if n := kube.Str(pod, "spec", "nodeName"); n != "" {
		return n
	}
	terms, ok := pod.Get("spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
	if !ok {
		return ""
	}
	for _, term := range terms.Elems() {
		fields, _ := term.Get("matchFields")
		for _, f := range fields.Elems() {
			if kube.Str(f, "key") == "metadata.name" && kube.Str(f, "operator") == "In" {
				if vs, ok := f.Get("values"); ok && vs.Len() == 1 {
					for _, v := range vs.Elems() {
						s, _ := v.String()
						return s
					}
				}
			}
		}
	}
	return ""
}

// podSpec is the template's pod spec for nodeName: its required node
// affinity replaced by a matchFields term on the node's name (preferred
// terms and pod (anti-)affinity kept) and the daemon tolerations added,
// as Kubernetes' daemon controller does; the scheduler binds it.
func podSpec(spec rawjson.Value, nodeName string) []byte {
	b := []byte{'{'}
	sep := false
	member := func(k string) {
		if sep {
			b = append(b, ',')
		}
		sep = true
		b = rawjson.AppendString(b, k)
		b = append(b, ':')
	}
	for k, v := range spec.Members() {
		if k == "affinity" || k == "tolerations" {
			continue
		}
		member(k)
		b = append(b, v...)
	}
	member("affinity")
	b = append(b, `{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"In","values":[`...)
	b = rawjson.AppendString(b, nodeName)
	b = append(b, `]}]}]}`...)
	if pref, ok := spec.Get("affinity", "nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution"); ok {
		b = append(b, `,"preferredDuringSchedulingIgnoredDuringExecution":`...)
		b = append(b, pref...)
	}
	b = append(b, '}')
	if aff, ok := spec.Get("affinity"); ok {
		for k, v := range aff.Members() {
			if k != "nodeAffinity" {
				b = append(b, ',')
				b = rawjson.AppendString(b, k)
				b = append(b, ':')
				b = append(b, v...)
			}
		}
	}
	b = append(b, '}')
	member("tolerations")
	b = append(b, '[')
	n := 0
	if ts, ok := spec.Get("tolerations"); ok {
		for _, t := range ts.Elems() {
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, t...)
			n++
		}
	}
	tols := podTolerations(spec)
	for _, t := range tols[n:] {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, `{"key":`...)
		b = rawjson.AppendString(b, t.key)
		b = append(b, `,"operator":"Exists","effect":`...)
		b = rawjson.AppendString(b, t.effect)
		b = append(b, '}')
	}
	b = append(b, ']', '}')
	return b
}
