package sdk

import (
	"encoding/base64"
	"errors"
	"strconv"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Requests to the host's cache and API (hostapi types).
type (
	GetRequest   = hostapi.GetRequest
	ListRequest  = hostapi.ListRequest
	WriteRequest = hostapi.WriteRequest
)

// Level is a log level for Log.
type Level int32

// Log levels (hostapi.Level*).
const (
	LevelDebug Level = hostapi.LevelDebug
	LevelInfo  Level = hostapi.LevelInfo
	LevelWarn  Level = hostapi.LevelWarn
	LevelError Level = hostapi.LevelError
)

// Errors of host calls, one per hostapi error code; test with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrPermission    = errors.New("permission denied")
	ErrInvalid       = errors.New("invalid request")
	ErrTooLarge      = errors.New("too large")
	ErrInternal      = errors.New("host internal error")
	ErrConflict      = errors.New("conflict")
	ErrAlreadyExists = errors.New("already exists")
	ErrNoResult      = errors.New("no pending result")
	// ErrNoHost: natively, no Host was set with SetHost.
	ErrNoHost = errors.New("no host (native build without sdk.SetHost)")
)

var codeErrors = map[int32]error{
	hostapi.ErrCodeNotFound:      ErrNotFound,
	hostapi.ErrCodePermission:    ErrPermission,
	hostapi.ErrCodeInvalid:       ErrInvalid,
	hostapi.ErrCodeTooLarge:      ErrTooLarge,
	hostapi.ErrCodeInternal:      ErrInternal,
	hostapi.ErrCodeConflict:      ErrConflict,
	hostapi.ErrCodeAlreadyExists: ErrAlreadyExists,
	hostapi.ErrCodeNoResult:      ErrNoResult,
}

// CodeError returns the error for a negative hostapi error code.
func CodeError(code int32) error {
	if err, ok := codeErrors[code]; ok {
		return err
	}
	return errors.New("host error code " + strconv.Itoa(int(code)))
}

// ErrorCode returns the hostapi error code for err (ErrCodeInternal for
// errors that are none of the sentinels).
func ErrorCode(err error) int32 {
	for code, e := range codeErrors {
		if errors.Is(err, e) {
			return code
		}
	}
	return hostapi.ErrCodeInternal
}

// Host is what the SDK's host calls go to. In a Wasm guest the default Host
// calls the Tugboat runtime through the tugboat_v1 imports; natively the
// default answers ErrNoHost and tests install a fake (sdk/plugintest).
// Errors are the Err* sentinels above.
type Host interface {
	Log(level Level, msg string)
	Get(req GetRequest) ([]byte, error)
	List(req ListRequest) ([][]byte, error)
	Write(req WriteRequest) ([]byte, error)
	// Now returns wall-clock Unix nanoseconds (needs the clock grant).
	Now() (int64, error)
}

// host is the current Host; set by SetHost, defaulting per platform.
var host Host = defaultHost()

// SetHost replaces the Host and returns the previous one. Tests use it
// (through sdk/plugintest) to serve Get and List from a fake cache; it is
// not safe to call while plugin calls are running.
func SetHost(h Host) (previous Host) {
	previous = host
	if h == nil {
		h = defaultHost()
	}
	host = h
	return previous
}

// Log writes msg to the host log, tagged with the plugin's name. The host
// rate-limits plugin logs.
func Log(level Level, msg string) { host.Log(level, msg) }

// Get reads one object from the host's cache; ErrNotFound if absent,
// ErrPermission if the manifest does not grant get on the resource.
// Resources are plural names with group ("pods", "deployments.apps").
func Get(resource, namespace, name string) (rawjson.Value, error) {
	b, err := host.Get(GetRequest{Resource: resource, Namespace: namespace, Name: name})
	return rawjson.Value(b), err
}

// List lists objects of one resource from the host's cache, in key order.
func List(req ListRequest) ([]rawjson.Value, error) {
	items, err := host.List(req)
	if err != nil {
		return nil, err
	}
	out := make([]rawjson.Value, len(items))
	for i, it := range items {
		out[i] = rawjson.Value(it)
	}
	return out, nil
}

// Write creates, updates, patches or deletes an object (controllers, within
// the manifest's rules) and returns the resulting object (empty for delete).
func Write(req WriteRequest) (rawjson.Value, error) {
	b, err := host.Write(req)
	return rawjson.Value(b), err
}

// Now returns the host's wall-clock time; ErrPermission unless the manifest
// grants hostapi.CapClock.
func Now() (time.Time, error) {
	ns, err := host.Now()
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, ns), nil
}

// appendGetRequest, appendListRequest and appendWriteRequest encode host
// requests as encoding/json would encode the hostapi types.
func appendGetRequest(dst []byte, r GetRequest) []byte {
	dst = append(dst, `{"resource":`...)
	dst = rawjson.AppendString(dst, r.Resource)
	dst = appendOptString(dst, "namespace", r.Namespace)
	dst = append(dst, `,"name":`...)
	dst = rawjson.AppendString(dst, r.Name)
	return append(dst, '}')
}

func appendListRequest(dst []byte, r ListRequest) []byte {
	dst = append(dst, `{"resource":`...)
	dst = rawjson.AppendString(dst, r.Resource)
	dst = appendOptString(dst, "namespace", r.Namespace)
	dst = appendOptString(dst, "labelSelector", r.LabelSelector)
	dst = appendOptString(dst, "fieldSelector", r.FieldSelector)
	return append(dst, '}')
}

func appendWriteRequest(dst []byte, r WriteRequest) []byte {
	dst = append(dst, `{"verb":`...)
	dst = rawjson.AppendString(dst, r.Verb)
	dst = append(dst, `,"resource":`...)
	dst = rawjson.AppendString(dst, r.Resource)
	dst = appendOptString(dst, "namespace", r.Namespace)
	dst = appendOptString(dst, "name", r.Name)
	dst = appendOptString(dst, "subresource", r.Subresource)
	if len(r.Object) > 0 {
		// json.RawMessage: the object (or patch) is embedded as JSON; an
		// invalid one makes the host answer ErrInvalid.
		dst = append(dst, `,"object":`...)
		dst = append(dst, r.Object...)
	}
	dst = appendOptString(dst, "patchType", r.PatchType)
	return append(dst, '}')
}

func appendOptString(dst []byte, key, val string) []byte {
	if val == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return rawjson.AppendString(dst, val)
}

// decodeListResponse splits a hostapi.ListResponse into its items: raw
// JSON objects (hostapi.RawObject is a json.RawMessage). Base64 strings,
// which a host on the first draft of ABI v1 sent, are accepted too.
func decodeListResponse(b []byte) ([][]byte, error) {
	var items rawjson.Value
	if err := rawjson.Value(b).EachMember(func(key []byte, v rawjson.Value) bool {
		if string(key) == "items" {
			items = v
		}
		return true
	}); err != nil {
		return nil, errors.New("sdk: malformed list response")
	}
	if items.IsNull() {
		return nil, nil
	}
	var out [][]byte
	var bad error
	err := items.EachElem(func(_ int, v rawjson.Value) bool {
		if v.Kind() != rawjson.String {
			out = append(out, []byte(v))
			return true
		}
		s, _ := v.String()
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			bad = errors.New("sdk: list response item is neither JSON nor base64")
			return false
		}
		out = append(out, raw)
		return true
	})
	if bad != nil {
		return nil, bad
	}
	if err != nil {
		return nil, errors.New("sdk: malformed list response")
	}
	return out, nil
}
