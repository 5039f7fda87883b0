// Package kube holds what Tugboat's built-in controllers share: reading
// object metadata, owner references and label selectors from raw JSON
// (sdk/rawjson, no reflection), pod state, and small JSON builders. It is
// guest code: no encoding/json or fmt.
package kube

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Meta is the metadata of an object.
type Meta struct {
	Name, Namespace, UID, ResourceVersion string
	Generation                            int64
	Labels, Annotations                   map[string]string
	Owners                                []OwnerRef
	Finalizers                            []string
	Deleting                              bool
	Created                               time.Time
}

// OwnerRef is one metadata.ownerReferences entry.
type OwnerRef struct {
	APIVersion, Kind, Name, UID    string
	Controller, BlockOwnerDeletion bool
}

// ReadMeta reads obj's metadata.
func ReadMeta(obj rawjson.Value) Meta {
	var m Meta
	md, ok := obj.Get("metadata")
	if !ok {
		return m
	}
	_ = md.EachMember(func(k []byte, v rawjson.Value) bool {
		switch string(k) {
		case "name":
			m.Name, _ = v.String()
		case "namespace":
			m.Namespace, _ = v.String()
		case "uid":
			m.UID, _ = v.String()
		case "resourceVersion":
			m.ResourceVersion, _ = v.String()
		case "generation":
			m.Generation, _ = v.Int()
		case "labels":
			m.Labels = StringMap(v)
		case "annotations":
			m.Annotations = StringMap(v)
		case "deletionTimestamp":
			m.Deleting = !v.IsNull()
		case "creationTimestamp":
			m.Created = Time(v)
		case "finalizers":
			_ = v.EachElem(func(_ int, e rawjson.Value) bool {
				if s, ok := e.String(); ok {
					m.Finalizers = append(m.Finalizers, s)
				}
				return true
			})
		case "ownerReferences":
			_ = v.EachElem(func(_ int, e rawjson.Value) bool {
				m.Owners = append(m.Owners, readOwner(e))
				return true
			})
		}
		return true
	})
	return m
}

func readOwner(e rawjson.Value) OwnerRef {
	var r OwnerRef
	_ = e.EachMember(func(k []byte, v rawjson.Value) bool {
		switch string(k) {
		case "apiVersion":
			r.APIVersion, _ = v.String()
		case "kind":
			r.Kind, _ = v.String()
		case "name":
			r.Name, _ = v.String()
		case "uid":
			r.UID, _ = v.String()
		case "controller":
			r.Controller, _ = v.Bool()
		case "blockOwnerDeletion":
			r.BlockOwnerDeletion, _ = v.Bool()
		}
		return true
	})
	return r
}

// ControllerRef returns the owner reference with controller: true.
func (m *Meta) ControllerRef() (OwnerRef, bool) {
	for _, r := range m.Owners {
		if r.Controller {
			return r, true
		}
	}
	return OwnerRef{}, false
}

// HasFinalizer reports whether m lists finalizer f.
func (m *Meta) HasFinalizer(f string) bool { return slices.Contains(m.Finalizers, f) }

// StringMap reads a JSON object of strings.
func StringMap(v rawjson.Value) map[string]string {
	if v.Kind() != rawjson.Object {
		return nil
	}
	m := make(map[string]string)
	_ = v.EachMember(func(k []byte, val rawjson.Value) bool {
		s, _ := val.String()
		m[string(k)] = s
		return true
	})
	return m
}

// Time reads an RFC 3339 timestamp (zero if absent or malformed).
func Time(v rawjson.Value) time.Time {
	s, ok := v.String()
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Int reads an integer at path, or def.
func Int(obj rawjson.Value, def int64, path ...string) int64 {
	v, ok := obj.Get(path...)
	if !ok {
		return def
	}
	n, ok := v.Int()
	if !ok {
		return def
	}
	return n
}

// Str reads a string at path ("" if absent).
func Str(obj rawjson.Value, path ...string) string {
	v, ok := obj.Get(path...)
	if !ok {
		return ""
	}
	s, _ := v.String()
	return s
}

// Bool reads a boolean at path (false if absent).
func Bool(obj rawjson.Value, path ...string) bool {
	v, ok := obj.Get(path...)
	if !ok {
		return false
	}
	b, _ := v.Bool()
	return b
}

// ScaledValue resolves an int-or-string ("25%") against total, rounding
// up or down like Kubernetes' GetScaledValueFromIntOrPercent.
func ScaledValue(v rawjson.Value, ok bool, def string, total int64, roundUp bool) int64 {
	if !ok || v.IsNull() {
		v = rawjson.Value(strconv.Quote(def))
	}
	if n, ok := v.Int(); ok {
		return n
	}
	s, _ := v.String()
	if p, found := strings.CutSuffix(s, "%"); found {
		pct, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return 0
		}
		if roundUp {
			return (pct*total + 99) / 100
		}
		return pct * total / 100
	}
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// FormatTime renders t as Kubernetes does (RFC 3339, seconds, UTC).
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Itoa formats n.
func Itoa(n int64) string { return strconv.FormatInt(n, 10) }
