package runtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/tetratelabs/wazero/api"
	admissionv1 "k8s.io/api/admission/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// AppendAdmissionRequest appends req in layout (hostapi.AdmitLayoutJSON or
// hostapi.AdmitLayoutBinary), the input of hostapi.ExportAdmit. It fails
// only when an object without Raw bytes does not encode, or for an unknown
// layout.
func AppendAdmissionRequest(dst []byte, layout int32, req *admissionv1.AdmissionRequest) ([]byte, error) {
	switch layout {
	case hostapi.AdmitLayoutJSON:
		b, err := json.Marshal(req)
		if err != nil {
			return dst, fmt.Errorf("encode admission request: %w", err)
		}
		return append(dst, b...), nil
	case hostapi.AdmitLayoutBinary:
		return appendAdmissionBinary(dst, req)
	}
	return dst, fmt.Errorf("admission request layout %d: %w", layout, errdefs.ErrInvalid)
}

// appendAdmissionBinary appends req in hostapi.AdmitLayoutBinary.
func appendAdmissionBinary(dst []byte, req *admissionv1.AdmissionRequest) ([]byte, error) {
	var raws [3][]byte // object, old object, options
	for i, x := range []struct {
		name string
		raw  *kruntime.RawExtension
	}{{"object", &req.Object}, {"oldObject", &req.OldObject}, {"options", &req.Options}} {
		b := bytes.TrimSpace(x.raw.Raw)
		if x.raw.Raw == nil && x.raw.Object != nil {
			var err error
			if b, err = json.Marshal(x.raw.Object); err != nil {
				return dst, fmt.Errorf("encode admission request %s: %w", x.name, err)
			}
		}
		if string(b) == "null" {
			b = nil
		}
		raws[i] = b
	}
	var flags uint32
	if req.DryRun != nil && *req.DryRun {
		flags |= hostapi.AdmitFlagDryRun
	}
	dst = append(dst, hostapi.AdmitBinaryMagic...)
	flagsAt := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, flags)
	dst = binary.LittleEndian.AppendUint32(dst, hostapi.AdmitFieldCount)
	for _, s := range [...]string{
		hostapi.AdmitFieldUID:             string(req.UID),
		hostapi.AdmitFieldKindGroup:       req.Kind.Group,
		hostapi.AdmitFieldKindVersion:     req.Kind.Version,
		hostapi.AdmitFieldKind:            req.Kind.Kind,
		hostapi.AdmitFieldResourceGroup:   req.Resource.Group,
		hostapi.AdmitFieldResourceVersion: req.Resource.Version,
		hostapi.AdmitFieldResource:        req.Resource.Resource,
		hostapi.AdmitFieldSubResource:     req.SubResource,
		hostapi.AdmitFieldName:            req.Name,
		hostapi.AdmitFieldNamespace:       req.Namespace,
		hostapi.AdmitFieldOperation:       string(req.Operation),
		hostapi.AdmitFieldUsername:        req.UserInfo.Username,
		hostapi.AdmitFieldUserUID:         req.UserInfo.UID,
	} {
		dst = appendField(dst, s)
	}
	n := 0
	for _, g := range req.UserInfo.Groups {
		n += 4 + len(g)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	for _, g := range req.UserInfo.Groups {
		dst = appendField(dst, g)
	}
	for _, b := range raws {
		dst = appendField(dst, b)
	}
	var ok bool
	if dst, ok = appendObjectMeta(dst, raws[0]); ok {
		flags |= hostapi.AdmitFlagObjectMeta
	}
	if dst, ok = appendObjectMeta(dst, raws[1]); ok {
		flags |= hostapi.AdmitFlagOldObjectMeta
	}
	binary.LittleEndian.PutUint32(dst[flagsAt:], flags)
	return dst, nil
}

// appendObjectMeta appends the labels and annotations fields of the
// binary layout for the object JSON obj (empty: no object). It reads obj
// with the guest SDK's reader, so that a guest finds the same members in
// the fields as in the JSON; ok is false, and both fields are empty, when
// the metadata is malformed (a guest then reads the JSON).
func appendObjectMeta(dst, obj []byte) ([]byte, bool) {
	start := len(dst)
	labels, annotations, ok := findMeta(obj)
	if ok {
		dst, ok = appendMapField(dst, labels)
	}
	if ok {
		dst, ok = appendMapField(dst, annotations)
	}
	if !ok {
		dst = append(dst[:start], 0, 0, 0, 0, 0, 0, 0, 0)
	}
	return dst, ok
}

// findMeta returns metadata.labels and metadata.annotations of the object
// JSON obj (nil when absent); ok is false when obj or its metadata is not
// an object.
func findMeta(obj []byte) (labels, annotations rawjson.Value, ok bool) {
	if len(obj) == 0 {
		return nil, nil, true
	}
	v := rawjson.Value(obj)
	if v.Kind() != rawjson.Object {
		return nil, nil, false
	}
	md, found := v.Get("metadata")
	if !found || md.IsNull() {
		return nil, nil, true
	}
	var seenL, seenA bool
	err := md.EachMember(func(key []byte, val rawjson.Value) bool {
		// The first of duplicate keys, as rawjson's Get.
		switch {
		case !seenL && string(key) == "labels":
			labels, seenL = val, true
		case !seenA && string(key) == "annotations":
			annotations, seenA = val, true
		}
		return !seenL || !seenA
	})
	return labels, annotations, err == nil
}

// appendMapField appends the JSON object of strings m as one field of
// key, value pairs; ok is false if m is not such an object.
func appendMapField(dst []byte, m rawjson.Value) ([]byte, bool) {
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst, ok := appendStringMap(dst, m)
	binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst, ok
}

// appendStringMap appends the members of JSON object m (absent or null:
// none) as key, value pairs; ok is false if m is not an object of strings.
func appendStringMap(dst []byte, m rawjson.Value) (_ []byte, ok bool) {
	if len(m) == 0 || m.IsNull() {
		return dst, true
	}
	ok = true
	err := m.EachMember(func(key []byte, val rawjson.Value) bool {
		var s []byte
		if s, ok = val.StringBytes(); ok {
			dst = appendField(appendField(dst, key), s)
		}
		return ok
	})
	return dst, ok && err == nil
}

// appendField appends one field of the binary layout: length, then bytes.
func appendField[T string | []byte](dst []byte, b T) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// ParseAdmissionResponse decodes and checks what an admission plugin
// returned: an AdmissionResponse whose patch, if any, is a JSON patch. A
// denial with a code of 500 or more is how the SDK reports a plugin's own
// error, so it comes back as an error.
func ParseAdmissionResponse(out []byte) (*admissionv1.AdmissionResponse, error) {
	var resp admissionv1.AdmissionResponse
	if err := json.Unmarshal(out, &resp); err != nil || len(out) == 0 {
		return nil, fmt.Errorf("returned an invalid admission response: %w", errdefs.ErrInvalid)
	}
	if !resp.Allowed && resp.Result != nil && resp.Result.Code >= http.StatusInternalServerError {
		return nil, fmt.Errorf("reported an error: %s", resp.Result.Message)
	}
	if resp.PatchType != nil && *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		return nil, fmt.Errorf("returned patch type %q: %w", *resp.PatchType, errdefs.ErrInvalid)
	}
	return &resp, nil
}

// requestBuffers recycles encoded requests: the runtime copies each into
// guest memory, so the buffer is free again when the call returns.
var requestBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledRequest: larger encodings are not kept for reuse.
const maxPooledRequest = 64 << 10

// AdmitWith is the plugin layer around one admission call: it encodes req
// in layout with AppendAdmissionRequest, passes the bytes to call (valid
// only during the call) and decodes call's output with
// ParseAdmissionResponse. Admission uses it for Wasm plugins; benchmarks
// use it to run the same plugin compiled natively behind the same
// encoding.
func AdmitWith(layout int32, req *admissionv1.AdmissionRequest, call func(in []byte) ([]byte, error)) (*admissionv1.AdmissionResponse, error) {
	return admitView(layout, req, func(in []byte, use func(out []byte)) error {
		out, err := call(in)
		if err == nil {
			use(out)
		}
		return err
	})
}

// admitView is AdmitWith for a call that passes its output to use (valid
// only during use) instead of returning it: the Wasm path parses the
// response in guest memory, without a copy. An error of call is returned
// as it is.
func admitView(layout int32, req *admissionv1.AdmissionRequest, call func(in []byte, use func(out []byte)) error) (*admissionv1.AdmissionResponse, error) {
	bp := requestBuffers.Get().(*[]byte)
	in, err := AppendAdmissionRequest((*bp)[:0], layout, req)
	if err != nil {
		requestBuffers.Put(bp)
		return nil, err
	}
	var resp *admissionv1.AdmissionResponse
	var parseErr error
	err = call(in, func(out []byte) { resp, parseErr = ParseAdmissionResponse(out) })
	if cap(in) <= maxPooledRequest {
		*bp = in
		requestBuffers.Put(bp)
	}
	if err != nil {
		return nil, err
	}
	return resp, parseErr
}

// AdmitLayout returns the admission request layout the host uses for the
// plugin: the highest it knows that the module reads
// (hostapi.ExportAdmitLayout), hostapi.AdmitLayoutJSON without the export.
func (p *Plugin) AdmitLayout() int32 { return p.admitLayout }

// readAdmitLayout asks the first instance of an admission plugin which
// request layout it reads.
func (p *Plugin) readAdmitLayout(ctx context.Context, in *instance) error {
	fn := in.function(hostapi.ExportAdmitLayout)
	if fn == nil || !slices.ContainsFunc(p.manifest.Kinds, isAdmissionKind) {
		return nil
	}
	def := fn.Definition()
	if len(def.ParamTypes()) != 0 || !slices.Equal(def.ResultTypes(), []api.ValueType{api.ValueTypeI32}) {
		return fmt.Errorf("export %s has signature %v -> %v, want () -> i32: %w",
			hostapi.ExportAdmitLayout, def.ParamTypes(), def.ResultTypes(), errdefs.ErrInvalid)
	}
	v, err := in.run(ctx, fn, p.deadline(ctx))
	if err != nil {
		return fmt.Errorf("%s: %w", hostapi.ExportAdmitLayout, err)
	}
	p.admitLayout = min(max(int32(v), hostapi.AdmitLayoutJSON), hostapi.AdmitLayoutBinary)
	return nil
}

func isAdmissionKind(k string) bool {
	return k == hostapi.KindMutatingAdmission || k == hostapi.KindValidatingAdmission
}
