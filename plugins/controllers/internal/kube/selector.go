package kube

import (
	"errors"
	"slices"
	"sort"
	"strings"

	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Requirement is one term of a label selector.
type Requirement struct {
	Key      string
	Operator string // In, NotIn, Exists, DoesNotExist
	Values   []string
}

// Selector is a metav1.LabelSelector (or a plain map selector). The zero
// Selector matches nothing, as Kubernetes treats a nil selector; Empty
// (selector {}) matches everything.
type Selector struct {
	Reqs  []Requirement
	Empty bool
	set   bool
}

// ErrBadSelector: a selector Kubernetes would reject.
var ErrBadSelector = errors.New("invalid label selector")

// LabelSelector reads a metav1.LabelSelector (matchLabels,
// matchExpressions).
func LabelSelector(v rawjson.Value, ok bool) (Selector, error) {
	if !ok || v.IsNull() {
		return Selector{}, nil
	}
	s := Selector{set: true}
	var bad error
	_ = v.EachMember(func(k []byte, val rawjson.Value) bool {
		switch string(k) {
		case "matchLabels":
			for lk, lv := range StringMap(val) {
				s.Reqs = append(s.Reqs, Requirement{Key: lk, Operator: "In", Values: []string{lv}})
			}
		case "matchExpressions":
			_ = val.EachElem(func(_ int, e rawjson.Value) bool {
				r := Requirement{Key: Str(e, "key"), Operator: Str(e, "operator")}
				if vs, ok := e.Get("values"); ok {
					_ = vs.EachElem(func(_ int, x rawjson.Value) bool {
						str, _ := x.String()
						r.Values = append(r.Values, str)
						return true
					})
				}
				switch r.Operator {
				case "In", "NotIn":
					if len(r.Values) == 0 {
						bad = ErrBadSelector
					}
				case "Exists", "DoesNotExist":
				default:
					bad = ErrBadSelector
				}
				s.Reqs = append(s.Reqs, r)
				return true
			})
		}
		return true
	})
	if bad != nil {
		return Selector{}, bad
	}
	s.Empty = len(s.Reqs) == 0
	sort.Slice(s.Reqs, func(i, j int) bool { return s.Reqs[i].Key < s.Reqs[j].Key })
	return s, nil
}

// MapSelector is a ReplicationController's or Service's selector: a plain
// map; an empty map selects nothing here (as for RCs and services).
func MapSelector(m map[string]string) Selector {
	if len(m) == 0 {
		return Selector{}
	}
	s := Selector{set: true}
	for k, v := range m {
		s.Reqs = append(s.Reqs, Requirement{Key: k, Operator: "In", Values: []string{v}})
	}
	sort.Slice(s.Reqs, func(i, j int) bool { return s.Reqs[i].Key < s.Reqs[j].Key })
	return s
}

// Valid reports whether the selector selects anything at all.
func (s Selector) Valid() bool { return s.set }

// Matches reports whether labels satisfy the selector.
func (s Selector) Matches(labels map[string]string) bool {
	if !s.set {
		return false
	}
	for _, r := range s.Reqs {
		v, ok := labels[r.Key]
		switch r.Operator {
		case "In":
			if !ok || !slices.Contains(r.Values, v) {
				return false
			}
		case "NotIn":
			if ok && slices.Contains(r.Values, v) {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		}
	}
	return true
}

// String renders the selector in the API's labelSelector syntax.
func (s Selector) String() string {
	var b strings.Builder
	for i, r := range s.Reqs {
		if i > 0 {
			b.WriteByte(',')
		}
		switch {
		case r.Operator == "In" && len(r.Values) == 1:
			b.WriteString(r.Key + "=" + r.Values[0])
		case r.Operator == "In" || r.Operator == "NotIn":
			op := " in ("
			if r.Operator == "NotIn" {
				op = " notin ("
			}
			b.WriteString(r.Key + op + strings.Join(r.Values, ",") + ")")
		case r.Operator == "Exists":
			b.WriteString(r.Key)
		case r.Operator == "DoesNotExist":
			b.WriteString("!" + r.Key)
		}
	}
	return b.String()
}
