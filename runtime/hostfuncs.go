package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// HostServices is what the host functions call into: the kernel's caches
// and API. The runtime checks the plugin's capabilities before calling it.
// Implementations must be safe for concurrent use and should return
// errors wrapping the errdefs sentinels (ErrNotFound, ErrConflict, ...),
// which become the matching hostapi error codes.
type HostServices interface {
	Get(ctx context.Context, req hostapi.GetRequest) ([]byte, error)
	List(ctx context.Context, req hostapi.ListRequest) ([][]byte, error)
	Write(ctx context.Context, req hostapi.WriteRequest) ([]byte, error)
}

// hostFuncs names the functions of the host module.
var hostFuncs = map[string]bool{
	hostapi.FuncLog: true, hostapi.FuncGet: true, hostapi.FuncList: true,
	hostapi.FuncWrite: true, hostapi.FuncReadResult: true, hostapi.FuncNow: true,
}

// maxLogMessage caps one log message of a guest.
const maxLogMessage = 4 << 10

func newHostModule(rt wazero.Runtime) wazero.HostModuleBuilder {
	b := rt.NewHostModuleBuilder(hostapi.ImportModule)
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	add := func(name string, fn api.GoModuleFunc, params, results []api.ValueType) {
		b.NewFunctionBuilder().WithGoModuleFunction(fn, params, results).Export(name)
	}
	add(hostapi.FuncLog, hostLog, []api.ValueType{i32, i32, i32}, nil)
	add(hostapi.FuncGet, hostRequest(doGet), []api.ValueType{i32, i32}, []api.ValueType{i32})
	add(hostapi.FuncList, hostRequest(doList), []api.ValueType{i32, i32}, []api.ValueType{i32})
	add(hostapi.FuncWrite, hostRequest(doWrite), []api.ValueType{i32, i32}, []api.ValueType{i32})
	add(hostapi.FuncReadResult, hostReadResult, []api.ValueType{i32, i32}, []api.ValueType{i32})
	add(hostapi.FuncNow, hostNow, nil, []api.ValueType{i64})
	return b
}

// callingInstance returns the instance of the guest call in ctx.
func callingInstance(ctx context.Context) *instance {
	in, _ := ctx.Value(instanceKey{}).(*instance)
	return in
}

func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	in := callingInstance(ctx)
	if in == nil {
		return
	}
	level, ptr, size := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	size = min(size, maxLogMessage)
	msg, ok := mod.Memory().Read(ptr, size)
	if !ok {
		return
	}
	var l slog.Level
	switch level {
	case hostapi.LevelDebug:
		l = slog.LevelDebug
	case hostapi.LevelWarn:
		l = slog.LevelWarn
	case hostapi.LevelError:
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	in.p.output.log(ctx, l, string(msg), slog.String(logKeyStream, "log"))
}

// requestFunc serves one decoded host request and returns the response.
type requestFunc func(ctx context.Context, in *instance, req []byte) ([]byte, error)

// hostRequest adapts a requestFunc to the ABI: read the request from guest
// memory, keep the response pending for ReadResult, return its size or a
// negative error code.
func hostRequest(serve requestFunc) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		in := callingInstance(ctx)
		if in == nil {
			stack[0] = api.EncodeI32(hostapi.ErrCodeInternal)
			return
		}
		in.pending, in.hasPending = nil, false
		req, ok := mod.Memory().Read(uint32(stack[0]), uint32(stack[1]))
		if !ok {
			stack[0] = api.EncodeI32(hostapi.ErrCodeInvalid)
			return
		}
		ctx, cancel := in.deadlineContext(ctx)
		resp, err := serve(ctx, in, req)
		cancel()
		switch {
		case err != nil:
			stack[0] = api.EncodeI32(errorCode(err))
		case len(resp) > math.MaxInt32:
			stack[0] = api.EncodeI32(hostapi.ErrCodeTooLarge)
		default:
			in.pending, in.hasPending = resp, true
			stack[0] = api.EncodeI32(int32(len(resp)))
		}
	}
}

// deadlineContext bounds a host service call by the guest call's deadline.
func (in *instance) deadlineContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, in.deadline)
}

// errorCode maps an error of HostServices (or of a capability check) to a
// hostapi error code.
func errorCode(err error) int32 {
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return hostapi.ErrCodeNotFound
	case errors.Is(err, errdefs.ErrPermission):
		return hostapi.ErrCodePermission
	case errors.Is(err, errdefs.ErrInvalid):
		return hostapi.ErrCodeInvalid
	case errors.Is(err, errdefs.ErrTooLarge):
		return hostapi.ErrCodeTooLarge
	case errors.Is(err, errdefs.ErrConflict):
		return hostapi.ErrCodeConflict
	case errors.Is(err, errdefs.ErrAlreadyExists):
		return hostapi.ErrCodeAlreadyExists
	}
	return hostapi.ErrCodeInternal
}

func doGet(ctx context.Context, in *instance, raw []byte) ([]byte, error) {
	var req hostapi.GetRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("decode get request: %w", errdefs.ErrInvalid)
	}
	if err := in.authorize(hostapi.VerbGet, req.Resource, ""); err != nil {
		return nil, err
	}
	return in.p.host.Get(ctx, req)
}

func doList(ctx context.Context, in *instance, raw []byte) ([]byte, error) {
	var req hostapi.ListRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("decode list request: %w", errdefs.ErrInvalid)
	}
	if err := in.authorize(hostapi.VerbList, req.Resource, ""); err != nil {
		return nil, err
	}
	items, err := in.p.host.List(ctx, req)
	if err != nil {
		return nil, err
	}
	raws := make([]hostapi.RawObject, len(items))
	for i, it := range items {
		raws[i] = it
	}
	return json.Marshal(hostapi.ListResponse{Items: raws})
}

func doWrite(ctx context.Context, in *instance, raw []byte) ([]byte, error) {
	var req hostapi.WriteRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("decode write request: %w", errdefs.ErrInvalid)
	}
	switch req.Verb {
	case hostapi.VerbCreate, hostapi.VerbUpdate, hostapi.VerbPatch, hostapi.VerbDelete:
	default:
		return nil, fmt.Errorf("write verb %q: %w", req.Verb, errdefs.ErrInvalid)
	}
	if err := in.authorize(req.Verb, req.Resource, req.Subresource); err != nil {
		return nil, err
	}
	return in.p.host.Write(ctx, req)
}

// authorize checks the plugin's manifest for verb on resource (and
// subresource, which a rule must name as "resource/subresource"), and
// that the plugin has host services at all. A denial is logged and
// remembered for the call's error.
func (in *instance) authorize(verb, resource, subresource string) error {
	target := resource
	if subresource != "" {
		target += "/" + subresource
	}
	if in.p.host != nil && allows(in.p.manifest.Rules, verb, target) {
		return nil
	}
	err := fmt.Errorf("plugin %q may not %s %s: %w", in.p.name, verb, target, errdefs.ErrPermission)
	if in.denied == nil {
		in.denied = err
	}
	in.p.output.log(context.Background(), slog.LevelWarn, "host call refused: "+err.Error(),
		slog.String(logKeyStream, "host"))
	return err
}

// allows reports whether rules grant verb on resource; "*" matches any
// verb or resource.
func allows(rules []hostapi.Rule, verb, resource string) bool {
	for _, r := range rules {
		if (slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) &&
			(slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*")) {
			return true
		}
	}
	return false
}

func hostReadResult(ctx context.Context, mod api.Module, stack []uint64) {
	in := callingInstance(ctx)
	if in == nil || !in.hasPending {
		stack[0] = api.EncodeI32(hostapi.ErrCodeNoResult)
		return
	}
	ptr, size := uint32(stack[0]), uint32(stack[1])
	if uint64(size) < uint64(len(in.pending)) {
		stack[0] = api.EncodeI32(hostapi.ErrCodeTooLarge) // the response stays pending
		return
	}
	if !mod.Memory().Write(ptr, in.pending) {
		stack[0] = api.EncodeI32(hostapi.ErrCodeInvalid)
		return
	}
	n := len(in.pending)
	in.pending, in.hasPending = nil, false
	stack[0] = api.EncodeI32(int32(n))
}

func hostNow(ctx context.Context, _ api.Module, stack []uint64) {
	in := callingInstance(ctx)
	if in == nil || !in.p.grants[hostapi.CapClock] {
		if in != nil && in.denied == nil {
			in.denied = fmt.Errorf("plugin %q may not read the clock: %w", in.p.name, errdefs.ErrPermission)
		}
		stack[0] = api.EncodeI64(hostapi.ErrCodePermission)
		return
	}
	stack[0] = api.EncodeI64(time.Now().UnixNano())
}
