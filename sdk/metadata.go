package sdk

import "github.com/tugboat-dev/tugboat/sdk/rawjson"

// StringMap is a read-only view of an object's labels or annotations. From
// a binary request (hostapi.AdmitLayoutBinary) it reads the key/value list
// the host extracted, without scanning JSON or allocating; otherwise it
// reads the object's JSON. The zero StringMap is empty. Like the request,
// it is valid only during the call.
type StringMap struct {
	pairs []byte        // binary: key, value, key, value... length-prefixed
	json  rawjson.Value // otherwise: the JSON object (nil: none)
	bin   bool
}

// ObjectLabels returns metadata.labels of the new object.
func (r *AdmissionRequest) ObjectLabels() StringMap {
	return metaMap(r.objectMeta.ok, r.objectMeta.labels, r.Object, "labels")
}

// ObjectAnnotations returns metadata.annotations of the new object.
func (r *AdmissionRequest) ObjectAnnotations() StringMap {
	return metaMap(r.objectMeta.ok, r.objectMeta.annotations, r.Object, "annotations")
}

// OldObjectLabels returns metadata.labels of the old object.
func (r *AdmissionRequest) OldObjectLabels() StringMap {
	return metaMap(r.oldObjectMeta.ok, r.oldObjectMeta.labels, r.OldObject, "labels")
}

// OldObjectAnnotations returns metadata.annotations of the old object.
func (r *AdmissionRequest) OldObjectAnnotations() StringMap {
	return metaMap(r.oldObjectMeta.ok, r.oldObjectMeta.annotations, r.OldObject, "annotations")
}

// objectMeta is what the host extracted from one object of a binary
// request: ok when the host set the object's metadata flag.
type objectMeta struct {
	labels, annotations []byte
	ok                  bool
}

func metaMap(extracted bool, pairs []byte, obj rawjson.Value, member string) StringMap {
	if extracted {
		return StringMap{pairs: pairs, bin: true}
	}
	if len(obj) == 0 {
		return StringMap{}
	}
	m, _ := obj.Get("metadata", member)
	return StringMap{json: m}
}

// Each calls fn with every key and value in document order until fn
// returns false. The slices are valid only during the call. Values that
// are not strings (malformed objects) are passed as empty.
func (m StringMap) Each(fn func(key, value []byte) bool) {
	if m.bin {
		for b := m.pairs; len(b) > 0; {
			k, r, ok := cutField(b)
			if !ok {
				return
			}
			v, r, ok := cutField(r)
			if !ok || !fn(k, v) {
				return
			}
			b = r
		}
		return
	}
	_ = m.json.EachMember(func(key []byte, val rawjson.Value) bool {
		v, _ := val.StringBytes()
		return fn(key, v)
	})
}

// lookup returns the value of key.
func (m StringMap) lookup(key string) (value []byte, found bool) {
	if !m.bin {
		v, ok := m.json.Get(key)
		if !ok {
			return nil, false
		}
		s, _ := v.StringBytes()
		return s, true
	}
	for b := m.pairs; len(b) > 0; {
		k, r, ok := cutField(b)
		if !ok {
			return nil, false
		}
		v, r, ok := cutField(r)
		if !ok {
			return nil, false
		}
		if string(k) == key {
			return v, true
		}
		b = r
	}
	return nil, false
}

// Has reports whether key is present (with any value, empty too).
func (m StringMap) Has(key string) bool {
	_, ok := m.lookup(key)
	return ok
}

// Get returns the value of key and whether it is present.
func (m StringMap) Get(key string) (string, bool) {
	v, ok := m.lookup(key)
	return string(v), ok
}

// Equals reports whether key is present with value, without allocating.
func (m StringMap) Equals(key, value string) bool {
	v, ok := m.lookup(key)
	return ok && string(v) == value
}

// Len returns the number of entries.
func (m StringMap) Len() int {
	n := 0
	m.Each(func(_, _ []byte) bool { n++; return true })
	return n
}

// Map returns the entries as a new map.
func (m StringMap) Map() map[string]string {
	out := map[string]string{}
	m.Each(func(k, v []byte) bool { out[string(k)] = string(v); return true })
	return out
}
