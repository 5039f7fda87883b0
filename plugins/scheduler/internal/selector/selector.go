// Package selector matches Kubernetes label selectors (metav1.LabelSelector)
// and node selector requirements (v1.NodeSelectorRequirement) against label
// sets, reading them from JSON with sdk/rawjson so that scheduler plugins
// stay free of encoding/json and k8s.io/api in the guest.
//
// Semantics follow k8s.io/apimachinery/pkg/labels: In needs the key with one
// of the values, NotIn matches when the key is absent or has none of the
// values, Gt/Lt compare the label value parsed as an integer (a value that
// does not parse never matches). A nil selector matches nothing, an empty one
// everything.
//
// Values are immutable once parsed and safe for concurrent reads.
package selector

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Label is one key/value pair.
type Label struct {
	Key, Value string
}

// Labels is a label set sorted by key (see MakeLabels). Lookups scan short
// sets linearly and binary-search long ones, which is cheaper than a map for
// the handful of labels objects usually carry.
type Labels []Label

// MakeLabels returns the labels of m sorted by key.
func MakeLabels(m map[string]string) Labels {
	l := make(Labels, 0, len(m))
	for k, v := range m {
		l = append(l, Label{k, v})
	}
	slices.SortFunc(l, func(a, b Label) int { return strings.Compare(a.Key, b.Key) })
	return l
}

// ParseLabels reads a JSON object of string values (metadata.labels). A
// missing or null value is an empty set; a non-string value is an error.
func ParseLabels(v rawjson.Value) (Labels, error) {
	if v.IsNull() {
		return nil, nil
	}
	var l Labels
	var bad bool
	err := v.EachMember(func(key []byte, val rawjson.Value) bool {
		s, ok := val.String()
		if !ok {
			bad = true
			return false
		}
		l = append(l, Label{string(key), s})
		return true
	})
	if err != nil || bad {
		return nil, errors.New("labels must be an object of strings")
	}
	slices.SortStableFunc(l, func(a, b Label) int { return strings.Compare(a.Key, b.Key) })
	// A duplicated key keeps its last value, like encoding/json.
	out := l[:0]
	for i, kv := range l {
		if i+1 < len(l) && l[i+1].Key == kv.Key {
			continue
		}
		out = append(out, kv)
	}
	return out, nil
}

// Get returns the value of key.
func (l Labels) Get(key string) (string, bool) {
	if len(l) <= 8 {
		for i := range l {
			if l[i].Key == key {
				return l[i].Value, true
			}
		}
		return "", false
	}
	lo, hi := 0, len(l)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l[m].Key < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(l) && l[lo].Key == key {
		return l[lo].Value, true
	}
	return "", false
}

// Has reports whether key is present.
func (l Labels) Has(key string) bool {
	_, ok := l.Get(key)
	return ok
}

// Map returns the labels as a map.
func (l Labels) Map() map[string]string {
	m := make(map[string]string, len(l))
	for _, kv := range l {
		m[kv.Key] = kv.Value
	}
	return m
}

// Op is a requirement's operator.
type Op uint8

// Operators of label and node selector requirements.
const (
	In Op = iota
	NotIn
	Exists
	DoesNotExist
	Gt
	Lt
)

var opNames = [...]string{"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

// Requirement is one condition on a label.
type Requirement struct {
	Key    string
	Op     Op
	Values []string // In, NotIn
	Num    int64    // Gt, Lt
}

// Matches reports whether labels satisfy r.
func (r *Requirement) Matches(l Labels) bool {
	v, ok := l.Get(r.Key)
	return r.MatchesValue(v, ok)
}

// MatchesValue reports whether a label whose value is v (present tells
// whether the key exists at all) satisfies r.
func (r *Requirement) MatchesValue(v string, present bool) bool {
	switch r.Op {
	case In:
		return present && slices.Contains(r.Values, v)
	case NotIn:
		return !present || !slices.Contains(r.Values, v)
	case Exists:
		return present
	case DoesNotExist:
		return !present
	case Gt, Lt:
		if !present {
			return false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return false
		}
		if r.Op == Gt {
			return n > r.Num
		}
		return n < r.Num
	}
	return false
}

// Selector is a conjunction of requirements. The zero value matches
// everything; Nothing matches nothing.
type Selector struct {
	Reqs    []Requirement
	Nothing bool
}

// NothingSelector matches no label set (a nil metav1.LabelSelector).
var NothingSelector = Selector{Nothing: true}

// Matches reports whether l satisfies every requirement.
func (s *Selector) Matches(l Labels) bool {
	if s.Nothing {
		return false
	}
	for i := range s.Reqs {
		if !s.Reqs[i].Matches(l) {
			return false
		}
	}
	return true
}

// Empty reports whether s has no requirements and is not Nothing: it
// selects everything (labels.Selector.Empty).
func (s *Selector) Empty() bool { return !s.Nothing && len(s.Reqs) == 0 }

// With returns a copy of s with r added (an empty selector becomes a
// one-requirement selector; Nothing stays Nothing).
func (s Selector) With(r Requirement) Selector {
	if s.Nothing {
		return s
	}
	s.Reqs = append(slices.Clip(s.Reqs), r)
	return s
}

// AppendKey appends a canonical encoding of s to dst: equal selectors give
// equal keys, so callers can group and cache by selector.
func (s *Selector) AppendKey(dst []byte) []byte {
	if s.Nothing {
		return append(dst, '!')
	}
	dst = append(dst, '{')
	for i := range s.Reqs {
		r := &s.Reqs[i]
		dst = appendQuoted(dst, r.Key)
		dst = append(dst, byte('0'+r.Op))
		for _, v := range r.Values {
			dst = appendQuoted(dst, v)
		}
		if r.Op == Gt || r.Op == Lt {
			dst = strconv.AppendInt(dst, r.Num, 10)
		}
		dst = append(dst, ';')
	}
	return append(dst, '}')
}

// appendQuoted appends s with its length, so that keys of different
// selectors cannot collide.
func appendQuoted(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// ParseLabelSelector reads a metav1.LabelSelector: matchLabels and
// matchExpressions (In, NotIn, Exists, DoesNotExist). An absent or null
// selector is NothingSelector; {} selects everything. Requirements are
// sorted by key, like labels.Selector.
func ParseLabelSelector(v rawjson.Value) (Selector, error) {
	if v.IsNull() {
		return NothingSelector, nil
	}
	if v.Kind() != rawjson.Object {
		return Selector{}, errors.New("labelSelector must be an object")
	}
	var s Selector
	if ml, ok := v.Get("matchLabels"); ok && !ml.IsNull() {
		l, err := ParseLabels(ml)
		if err != nil {
			return Selector{}, errors.New("matchLabels must be an object of strings")
		}
		for _, kv := range l {
			s.Reqs = append(s.Reqs, Requirement{Key: kv.Key, Op: In, Values: []string{kv.Value}})
		}
	}
	if me, ok := v.Get("matchExpressions"); ok && !me.IsNull() {
		reqs, err := parseRequirements(me, false)
		if err != nil {
			return Selector{}, err
		}
		s.Reqs = append(s.Reqs, reqs...)
	}
	sortReqs(s.Reqs)
	return s, nil
}

// ParseNodeSelectorRequirements reads a list of v1.NodeSelectorRequirement
// (matchExpressions of a node selector term): In, NotIn, Exists,
// DoesNotExist, Gt and Lt.
func ParseNodeSelectorRequirements(v rawjson.Value) ([]Requirement, error) {
	reqs, err := parseRequirements(v, true)
	if err != nil {
		return nil, err
	}
	sortReqs(reqs)
	return reqs, nil
}

func sortReqs(reqs []Requirement) {
	slices.SortStableFunc(reqs, func(a, b Requirement) int { return strings.Compare(a.Key, b.Key) })
}

func parseRequirements(v rawjson.Value, node bool) ([]Requirement, error) {
	var reqs []Requirement
	var perr error
	err := v.EachElem(func(_ int, e rawjson.Value) bool {
		r, err := ParseRequirement(e, node)
		if err != nil {
			perr = err
			return false
		}
		reqs = append(reqs, r)
		return true
	})
	if perr != nil {
		return nil, perr
	}
	if err != nil {
		return nil, errors.New("matchExpressions must be a list")
	}
	return reqs, nil
}

// ParseRequirement reads one {key, operator, values} requirement; Gt and Lt
// are accepted only when node is true (node selector requirements). Values
// are validated like labels.NewRequirement: In and NotIn need at least one
// value, Exists and DoesNotExist none, Gt and Lt exactly one integer.
func ParseRequirement(e rawjson.Value, node bool) (Requirement, error) {
	var r Requirement
	kv, _ := e.Get("key")
	key, ok := kv.String()
	if !ok || key == "" {
		return r, errors.New("requirement key must be a non-empty string")
	}
	r.Key = key
	ov, _ := e.Get("operator")
	switch {
	case ov.StringEquals("In"):
		r.Op = In
	case ov.StringEquals("NotIn"):
		r.Op = NotIn
	case ov.StringEquals("Exists"):
		r.Op = Exists
	case ov.StringEquals("DoesNotExist"):
		r.Op = DoesNotExist
	case node && ov.StringEquals("Gt"):
		r.Op = Gt
	case node && ov.StringEquals("Lt"):
		r.Op = Lt
	default:
		s, _ := ov.String()
		return r, errors.New("requirement on " + key + ": unsupported operator " + strconv.Quote(s))
	}
	if vv, ok := e.Get("values"); ok && !vv.IsNull() {
		bad := false
		err := vv.EachElem(func(_ int, x rawjson.Value) bool {
			s, ok := x.String()
			if !ok {
				bad = true
				return false
			}
			r.Values = append(r.Values, s)
			return true
		})
		if err != nil || bad {
			return r, errors.New("requirement on " + key + ": values must be a list of strings")
		}
	}
	switch r.Op {
	case In, NotIn:
		if len(r.Values) == 0 {
			return r, errors.New("requirement on " + key + ": values must be non-empty for " + r.Op.String())
		}
	case Exists, DoesNotExist:
		if len(r.Values) != 0 {
			return r, errors.New("requirement on " + key + ": values must be empty for " + r.Op.String())
		}
	case Gt, Lt:
		if len(r.Values) != 1 {
			return r, errors.New("requirement on " + key + ": values must have exactly one element for " + r.Op.String())
		}
		n, err := strconv.ParseInt(r.Values[0], 10, 64)
		if err != nil {
			return r, errors.New("requirement on " + key + ": value " + strconv.Quote(r.Values[0]) + " is not an integer")
		}
		r.Num = n
		r.Values = nil
	}
	return r, nil
}

// ParseStrings reads a JSON list of strings (absent or null: nil).
func ParseStrings(v rawjson.Value) ([]string, error) {
	if v.IsNull() {
		return nil, nil
	}
	var out []string
	bad := false
	err := v.EachElem(func(_ int, x rawjson.Value) bool {
		s, ok := x.String()
		if !ok {
			bad = true
			return false
		}
		out = append(out, s)
		return true
	})
	if err != nil || bad {
		return nil, errors.New("must be a list of strings")
	}
	return out, nil
}
