package sdk

import (
	"encoding/base64"
	"errors"
	"strconv"
	"unsafe"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Operation is the kind of write being admitted.
type Operation string

// Operations an AdmissionRequest may carry.
const (
	Create  Operation = "CREATE"
	Update  Operation = "UPDATE"
	Delete  Operation = "DELETE"
	Connect Operation = "CONNECT"
)

// GroupVersionKind names an object's type.
type GroupVersionKind struct {
	Group, Version, Kind string
}

// GroupVersionResource names a resource.
type GroupVersionResource struct {
	Group, Version, Resource string
}

// UserInfo is the caller of a request.
type UserInfo struct {
	Username string
	UID      string
	Groups   []string
}

// AdmissionRequest mirrors the fields of admission.k8s.io/v1
// AdmissionRequest that policies use. Object, OldObject and Options alias
// the input buffer, and in a Wasm guest the SDK reuses the request value
// for the next call: both are valid only during Admit (copy what you keep;
// strings stay valid).
type AdmissionRequest struct {
	UID         string
	Kind        GroupVersionKind
	Resource    GroupVersionResource
	SubResource string
	Name        string
	Namespace   string
	Operation   Operation
	UserInfo    UserInfo
	// Object is the new object (empty for DELETE).
	Object rawjson.Value
	// OldObject is the existing object (empty for CREATE).
	OldObject rawjson.Value
	DryRun    bool
	// Options is the operation's options object (CreateOptions, ...).
	Options rawjson.Value

	// The objects' labels and annotations as the host extracted them
	// (ObjectLabels and friends read them).
	objectMeta, oldObjectMeta objectMeta
}

// PatchTypeJSONPatch is the only patch type admission responses carry.
const PatchTypeJSONPatch = "JSONPatch"

// AdmissionResponse mirrors admission.k8s.io/v1 AdmissionResponse. Build it
// with Allowed, Denied or Patched; the SDK fills in the request's UID.
type AdmissionResponse struct {
	UID     string
	Allowed bool
	// Result explains a denial (the message kubectl shows).
	Result *Status
	// Patch is an RFC 6902 JSON patch document for mutating plugins.
	Patch []byte
	// PatchType is PatchTypeJSONPatch when Patch is set (filled in by the SDK).
	PatchType        string
	Warnings         []string
	AuditAnnotations map[string]string
}

// Status is the subset of metav1.Status a response carries.
type Status struct {
	Message string
	Reason  string
	Code    int32
}

// Allowed admits the request unchanged. The SDK never writes to a
// response a plugin returns, so a plugin may create one Allowed response
// and return it from every call (in a Wasm guest, an allocation costs a few
// hundred ns).
func Allowed() *AdmissionResponse { return &AdmissionResponse{Allowed: true} }

// Denied rejects the request with msg (HTTP 403 Forbidden, like a
// Kubernetes webhook denial).
func Denied(msg string) *AdmissionResponse {
	return &AdmissionResponse{Result: &Status{Message: msg, Reason: "Forbidden", Code: 403}}
}

// Patched admits the request with the changes in p; an empty patch is a
// plain Allowed.
func Patched(p *Patch) *AdmissionResponse {
	r := Allowed()
	if p != nil && p.Len() > 0 {
		r.Patch = p.Bytes()
		r.PatchType = PatchTypeJSONPatch
	}
	return r
}

// failed is the response for a plugin error: a denial with code 500 that the
// host recognises as a failure of the plugin.
func failed(uid string, err error) *AdmissionResponse {
	return &AdmissionResponse{UID: uid, Result: &Status{Message: err.Error(), Reason: "InternalError", Code: 500}}
}

// errBadRequest reports an input that is not an AdmissionRequest.
var errBadRequest = errors.New("sdk: malformed admission request")

// DecodeAdmissionRequest parses an admission request in either layout the
// host sends (hostapi.AdmitLayoutJSON: admission.k8s.io/v1
// AdmissionRequest JSON, or hostapi.AdmitLayoutBinary). Fields outside the
// mirror are skipped; Object, OldObject and Options alias in.
func DecodeAdmissionRequest(in []byte) (*AdmissionRequest, error) {
	return decodeRequest(in, nil)
}

// decodeRequest is DecodeAdmissionRequest; strings of a binary request
// come from last when they repeat (nil: always new strings).
func decodeRequest(in []byte, last *lastStrings) (*AdmissionRequest, error) {
	if len(in) > 0 && in[0] == hostapi.AdmitBinaryMagic[0] {
		return decodeBinaryRequest(in, last)
	}
	v := rawjson.Value(in)
	if v.Kind() != rawjson.Object {
		return nil, errBadRequest
	}
	req := &AdmissionRequest{}
	var bad string
	err := v.EachMember(func(key []byte, val rawjson.Value) bool {
		ok := true
		switch string(key) {
		case "uid":
			req.UID, ok = optString(val)
		case "kind":
			g, v, k := triple(val, "kind")
			req.Kind = GroupVersionKind{g, v, k}
		case "resource":
			g, v, r := triple(val, "resource")
			req.Resource = GroupVersionResource{g, v, r}
		case "subResource":
			req.SubResource, ok = optString(val)
		case "name":
			req.Name, ok = optString(val)
		case "namespace":
			req.Namespace, ok = optString(val)
		case "operation":
			var s string
			s, ok = optString(val)
			req.Operation = Operation(s)
		case "userInfo":
			req.UserInfo = decodeUserInfo(val)
		case "object":
			req.Object = nonNull(val)
		case "oldObject":
			req.OldObject = nonNull(val)
		case "dryRun":
			req.DryRun, _ = val.Bool()
		case "options":
			req.Options = nonNull(val)
		}
		if !ok {
			bad = string(key)
		}
		return ok
	})
	if bad != "" {
		return nil, errors.New("sdk: admission request field " + strconv.Quote(bad) + " is not a string")
	}
	if err != nil {
		return nil, errBadRequest
	}
	return req, nil
}

// lastStrings holds the previous binary request of a Wasm guest: the
// request value, which the next call reuses, and its strings field by
// field. Kinds, resources, namespaces and users repeat from call to call,
// and a Wasm guest saves an allocation (hundreds of ns) for each one that
// does.
type lastStrings struct {
	req    AdmissionRequest
	fields [hostapi.AdmitFieldCount]string
	groups []string
	// arena holds the bytes of new short strings: one allocation for many
	// requests' strings (UIDs change every call). A string keeps its
	// whole chunk alive, so strings stay valid after the call.
	arena []byte
}

// arenaChunk is the size of a string arena chunk; longer strings get
// their own allocation.
const arenaChunk = 4 << 10

// str returns b as a string, the previous one of field f if equal.
func (l *lastStrings) str(f int, b []byte) string {
	if l == nil {
		return string(b)
	}
	if string(b) != l.fields[f] {
		l.fields[f] = l.fresh(b)
	}
	return l.fields[f]
}

// fresh returns b as a new string (with l, from the arena).
func (l *lastStrings) fresh(b []byte) string {
	switch {
	case len(b) == 0:
		return ""
	case l == nil || len(b) > arenaChunk/16:
		return string(b)
	}
	if cap(l.arena)-len(l.arena) < len(b) {
		l.arena = make([]byte, 0, arenaChunk)
	}
	start := len(l.arena)
	l.arena = append(l.arena, b...)
	return unsafe.String(&l.arena[start], len(b))
}

// decodeGroups reads the groups field; with last, the previous request's
// slice when the groups are the same.
func decodeGroups(b []byte, last *lastStrings) ([]string, error) {
	n := 0
	same := last != nil
	for g := b; len(g) > 0; n++ {
		v, r, ok := cutField(g)
		if !ok {
			return nil, errBadRequest
		}
		same = same && n < len(last.groups) && string(v) == last.groups[n]
		g = r
	}
	if n == 0 {
		return nil, nil
	}
	if same && n == len(last.groups) {
		return last.groups[:n:n], nil
	}
	groups := make([]string, n)
	for i := range groups {
		v, r, _ := cutField(b)
		groups[i] = string(v)
		b = r
	}
	if last != nil {
		last.groups = groups
	}
	return groups, nil
}

// decodeBinaryRequest parses a hostapi.AdmitLayoutBinary request.
func decodeBinaryRequest(in []byte, last *lastStrings) (*AdmissionRequest, error) {
	const head = len(hostapi.AdmitBinaryMagic) + 8
	if len(in) < head || string(in[:len(hostapi.AdmitBinaryMagic)]) != hostapi.AdmitBinaryMagic {
		return nil, errBadRequest
	}
	flags := le32(in[head-8:])
	n := le32(in[head-4:])
	var f [hostapi.AdmitFieldCount][]byte
	rest := in[head:]
	for i := uint32(0); i < n; i++ {
		b, r, ok := cutField(rest)
		if !ok {
			return nil, errBadRequest
		}
		if i < uint32(len(f)) {
			f[i] = b
		}
		rest = r
	}
	var req *AdmissionRequest
	if last != nil {
		req = &last.req
	} else {
		req = new(AdmissionRequest)
	}
	*req = AdmissionRequest{
		UID: last.fresh(f[hostapi.AdmitFieldUID]),
		Kind: GroupVersionKind{
			last.str(hostapi.AdmitFieldKindGroup, f[hostapi.AdmitFieldKindGroup]),
			last.str(hostapi.AdmitFieldKindVersion, f[hostapi.AdmitFieldKindVersion]),
			last.str(hostapi.AdmitFieldKind, f[hostapi.AdmitFieldKind]),
		},
		Resource: GroupVersionResource{
			last.str(hostapi.AdmitFieldResourceGroup, f[hostapi.AdmitFieldResourceGroup]),
			last.str(hostapi.AdmitFieldResourceVersion, f[hostapi.AdmitFieldResourceVersion]),
			last.str(hostapi.AdmitFieldResource, f[hostapi.AdmitFieldResource]),
		},
		SubResource: last.str(hostapi.AdmitFieldSubResource, f[hostapi.AdmitFieldSubResource]),
		Name:        last.str(hostapi.AdmitFieldName, f[hostapi.AdmitFieldName]),
		Namespace:   last.str(hostapi.AdmitFieldNamespace, f[hostapi.AdmitFieldNamespace]),
		Operation:   Operation(last.str(hostapi.AdmitFieldOperation, f[hostapi.AdmitFieldOperation])),
		UserInfo: UserInfo{
			Username: last.str(hostapi.AdmitFieldUsername, f[hostapi.AdmitFieldUsername]),
			UID:      last.str(hostapi.AdmitFieldUserUID, f[hostapi.AdmitFieldUserUID]),
		},
		Object:    nonEmpty(f[hostapi.AdmitFieldObject]),
		OldObject: nonEmpty(f[hostapi.AdmitFieldOldObject]),
		DryRun:    flags&hostapi.AdmitFlagDryRun != 0,
		Options:   nonEmpty(f[hostapi.AdmitFieldOptions]),
		objectMeta: objectMeta{
			labels:      nilIfEmpty(f[hostapi.AdmitFieldObjectLabels]),
			annotations: nilIfEmpty(f[hostapi.AdmitFieldObjectAnnotations]),
			ok:          flags&hostapi.AdmitFlagObjectMeta != 0 && n > hostapi.AdmitFieldObjectAnnotations,
		},
		oldObjectMeta: objectMeta{
			labels:      nilIfEmpty(f[hostapi.AdmitFieldOldObjectLabels]),
			annotations: nilIfEmpty(f[hostapi.AdmitFieldOldObjectAnnotations]),
			ok:          flags&hostapi.AdmitFlagOldObjectMeta != 0 && n > hostapi.AdmitFieldOldObjectAnnotations,
		},
	}
	groups, err := decodeGroups(f[hostapi.AdmitFieldGroups], last)
	if err != nil {
		return nil, err
	}
	req.UserInfo.Groups = groups
	return req, nil
}

// cutField splits off one length-prefixed field.
func cutField(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := le32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n : 4+n], b[4+n:], true
}

func le32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func nonEmpty(b []byte) rawjson.Value {
	if len(b) == 0 {
		return nil
	}
	return rawjson.Value(b)
}

func decodeUserInfo(v rawjson.Value) UserInfo {
	u := UserInfo{Username: member(v, "username"), UID: member(v, "uid")}
	if g, ok := v.Get("groups"); ok {
		for _, e := range g.Elems() {
			if s, ok := e.String(); ok {
				u.Groups = append(u.Groups, s)
			}
		}
	}
	return u
}

// triple reads {"group", "version", third} in one pass.
func triple(v rawjson.Value, third string) (group, version, name string) {
	_ = v.EachMember(func(key []byte, val rawjson.Value) bool {
		switch string(key) {
		case "group":
			group, _ = val.String()
		case "version":
			version, _ = val.String()
		case third:
			name, _ = val.String()
		}
		return true
	})
	return group, version, name
}

// member returns the string member key of object v, or "".
func member(v rawjson.Value, key string) string {
	m, ok := v.Get(key)
	if !ok {
		return ""
	}
	s, _ := m.String()
	return s
}

// optString returns a string value; null counts as "".
func optString(v rawjson.Value) (string, bool) {
	if v.IsNull() {
		return "", true
	}
	return v.String()
}

func nonNull(v rawjson.Value) rawjson.Value {
	if v.IsNull() {
		return nil
	}
	return v
}

// AppendJSON appends r as admission.k8s.io/v1 AdmissionResponse JSON.
func (r *AdmissionResponse) AppendJSON(dst []byte) []byte { return r.appendJSON(dst, "") }

// appendJSON is AppendJSON with uid standing in for an empty r.UID (so a
// shared response value is never written to).
func (r *AdmissionResponse) appendJSON(dst []byte, uid string) []byte {
	if r.UID != "" {
		uid = r.UID
	}
	dst = append(dst, `{"uid":`...)
	dst = rawjson.AppendString(dst, uid)
	if r.Allowed {
		dst = append(dst, `,"allowed":true`...)
	} else {
		dst = append(dst, `,"allowed":false`...)
	}
	if s := r.Result; s != nil {
		dst = append(dst, `,"status":{"metadata":{}`...)
		if s.Message != "" {
			dst = append(dst, `,"message":`...)
			dst = rawjson.AppendString(dst, s.Message)
		}
		if s.Reason != "" {
			dst = append(dst, `,"reason":`...)
			dst = rawjson.AppendString(dst, s.Reason)
		}
		if s.Code != 0 {
			dst = append(dst, `,"code":`...)
			dst = strconv.AppendInt(dst, int64(s.Code), 10)
		}
		dst = append(dst, '}')
	}
	if len(r.Patch) > 0 {
		dst = append(dst, `,"patch":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, r.Patch)
		dst = append(dst, `","patchType":`...)
		pt := r.PatchType
		if pt == "" {
			pt = PatchTypeJSONPatch
		}
		dst = rawjson.AppendString(dst, pt)
	}
	if len(r.AuditAnnotations) > 0 {
		dst = append(dst, `,"auditAnnotations":{`...)
		first := true
		for k, v := range r.AuditAnnotations {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = rawjson.AppendString(dst, k)
			dst = append(dst, ':')
			dst = rawjson.AppendString(dst, v)
		}
		dst = append(dst, '}')
	}
	if len(r.Warnings) > 0 {
		dst = append(dst, `,"warnings":[`...)
		for i, w := range r.Warnings {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = rawjson.AppendString(dst, w)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}
