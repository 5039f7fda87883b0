package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// instanceKey is the context key under which a guest call carries its
// instance, for the host functions.
type instanceKey struct{}

// instance is one instantiated module of a plugin. One call uses it at a
// time (the pool guarantees it); only its watchdog and canceled flag are
// touched by other goroutines.
type instance struct {
	p     *Plugin
	mod   api.Module
	mem   api.Memory
	alloc api.Function
	wd    watchdog
	fns   map[string]api.Function // exports looked up so far
	stack [2]uint64               // parameters and results of guest calls
	// deadline is the current call's; host functions bound their work by it.
	deadline time.Time
	// canceled is set when the current call's context ended.
	canceled atomic.Bool
	// cancel is onCancel, as a value made once; stopCancel unregisters it
	// from the current call's context.
	cancel     func()
	stopCancel func() bool
	// broken is set when the instance must not be reused: it trapped,
	// reached a deadline, was canceled or broke the ABI.
	broken bool

	// reuseMax is what the guest answered from hostapi.ExportInputReuse
	// (0: none); inPtr and inCap name the guest's input buffer while the
	// host may reuse it.
	reuseMax, inPtr, inCap uint32

	// globals are the module's mutable globals (for snapshots); restored
	// is set when the instance started from its plugin's snapshot.
	globals  []api.MutableGlobal
	restored bool

	// Host-function state of the current call.
	pending    []byte
	hasPending bool
	denied     error // first capability denial of the current call
}

func newInstance(p *Plugin) *instance {
	in := &instance{p: p, fns: map[string]api.Function{}}
	in.cancel = in.onCancel
	return in
}

// bind records the module's exports after instantiation and starts the
// watchdog.
func (in *instance) bind(mod api.Module) error {
	in.mod = mod
	in.mem = mod.Memory()
	in.alloc = mod.ExportedFunction(hostapi.ExportAlloc)
	stop, ok := mod.ExportedGlobal(interruptExport).(api.MutableGlobal)
	if in.mem == nil || in.alloc == nil || !ok {
		return fmt.Errorf("module lacks memory, %s or its interrupt global: %w", hostapi.ExportAlloc, errdefs.ErrInvalid)
	}
	wd, err := newWatchdog(stop)
	if err != nil {
		return err
	}
	in.wd = wd
	in.bindGlobals(mod)
	return nil
}

// function returns the export name, or nil.
func (in *instance) function(name string) api.Function {
	fn, ok := in.fns[name]
	if !ok {
		fn = in.mod.ExportedFunction(name)
		in.fns[name] = fn
	}
	return fn
}

// context returns ctx carrying in for the host functions; every guest
// call must run under it.
func (in *instance) context(ctx context.Context) context.Context {
	return context.WithValue(ctx, instanceKey{}, in)
}

// watchdogSlack is how late after its deadline a call's watchdog may fire
// at most (a quarter of the plugin's timeout if that is less).
const watchdogSlack = 10 * time.Millisecond

// begin starts a sequence of guest calls that must end by deadline: it
// arms the watchdog and, for a context that can end, stops the guest when
// it does. end must follow.
func (in *instance) begin(ctx context.Context, deadline time.Time) error {
	in.deadline = deadline
	d := time.Until(deadline)
	if d <= 0 {
		in.stopCancel = nil
		return errdefs.ErrPluginTimeout
	}
	// Any expiry up to watchdogSlack after the deadline enforces it; the
	// lazy kernel watchdog sets its timer once for many short calls.
	latest := deadline.Add(min(in.p.timeout/4, watchdogSlack))
	if cd, ok := ctx.Deadline(); ok && cd.Before(latest) {
		latest = deadline
		if cd.After(deadline) {
			latest = cd
		}
	}
	in.wd.arm(deadline, latest)
	in.stopCancel = nil
	if ctx.Done() != nil {
		in.stopCancel = context.AfterFunc(ctx, in.cancel)
	}
	return nil
}

// onCancel stops the current call because its context ended. It runs on
// the context's goroutine; while the Go runtime stops the world it cannot
// run, so cancellation is best effort and the deadline is the guarantee.
func (in *instance) onCancel() {
	in.canceled.Store(true)
	in.wd.fireNow()
}

// end disarms the watchdog. An instance whose watchdog may have fired (the
// deadline passed or the context ended) is marked broken: the flag may be
// set even if its guest returned in time.
func (in *instance) end() {
	in.wd.disarm()
	if in.stopCancel != nil && !in.stopCancel() {
		in.canceled.Store(true)
	}
	if in.canceled.Load() || !time.Now().Before(in.deadline) {
		in.broken = true
	}
}

// run is begin, call and end.
func (in *instance) run(ctx context.Context, fn api.Function, deadline time.Time, params ...uint64) (uint64, error) {
	if err := in.begin(ctx, deadline); err != nil {
		return 0, err
	}
	defer in.end()
	return in.call(in.context(ctx), fn, params...)
}

// call runs fn with params between begin and end and returns its first
// result; ctx must come from in.context. Any failure marks the instance
// broken.
func (in *instance) call(ctx context.Context, fn api.Function, params ...uint64) (uint64, error) {
	copy(in.stack[:], params)
	err := fn.CallWithStack(ctx, in.stack[:])
	if err == nil {
		return in.stack[0], nil
	}
	in.broken = true
	switch {
	case in.canceled.Load() && ctx.Err() != nil:
		return 0, fmt.Errorf("%w: %w", errdefs.ErrPluginTimeout, context.Cause(ctx))
	case in.canceled.Load() || !time.Now().Before(in.deadline):
		return 0, errdefs.ErrPluginTimeout
	}
	return 0, in.trapError(err)
}

// trapError describes a guest failure that was not an interrupt.
func (in *instance) trapError(err error) error {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("%w: guest exited with code %d", errdefs.ErrPluginTrap, exit.ExitCode())
	}
	msg := summarizeTrap(err.Error())
	if used, limit := in.mem.Size(), in.p.memoryLimit; uint64(used)+4<<20 >= uint64(limit) {
		msg += fmt.Sprintf(" (memory %d KiB of the %d KiB limit: out of memory?)", used>>10, limit>>10)
	}
	denied := in.denied
	if denied != nil {
		return fmt.Errorf("%w: %s, after %w", errdefs.ErrPluginTrap, msg, denied)
	}
	return fmt.Errorf("%w: %s", errdefs.ErrPluginTrap, msg)
}

// summarizeTrap keeps the first line of a wazero error and the innermost
// frames of its stack trace.
func summarizeTrap(s string) string {
	lines := strings.Split(s, "\n")
	var frames []string
	for _, l := range lines[1:] {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "wasm stack trace") {
			continue
		}
		frames = append(frames, strings.TrimPrefix(l, "."))
		if len(frames) == 3 {
			break
		}
	}
	if len(frames) == 0 {
		return lines[0]
	}
	return lines[0] + " in " + strings.Join(frames, " < ")
}

// invoke writes input into a buffer from the guest's allocator, calls fn
// with it and returns a copy of the result, all by deadline.
func (in *instance) invoke(ctx context.Context, fn api.Function, input []byte, deadline time.Time) ([]byte, error) {
	view, err := in.invokeView(ctx, fn, input, deadline)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(view), nil
}

// invokeView is invoke returning the result in guest memory: valid only
// until the instance's next call or close.
func (in *instance) invokeView(ctx context.Context, fn api.Function, input []byte, deadline time.Time) ([]byte, error) {
	if err := in.begin(ctx, deadline); err != nil {
		return nil, err
	}
	defer in.end()
	ctx = in.context(ctx)
	in.denied = nil
	in.pending, in.hasPending = nil, false
	var ptr uint32
	if len(input) > 0 {
		if uint64(len(input)) <= uint64(in.inCap) {
			ptr = in.inPtr
		} else {
			// With reuse, ask for room to grow into (a power of two,
			// at least 4 KiB, within the guest's promise).
			size := uint64(len(input))
			if size <= uint64(in.reuseMax) {
				size = min(max(4096, uint64(1)<<bits.Len64(size-1)), uint64(in.reuseMax))
			}
			res, err := in.call(ctx, in.alloc, size)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", hostapi.ExportAlloc, err)
			}
			ptr = uint32(res)
			in.inPtr, in.inCap = 0, 0
			if size <= uint64(in.reuseMax) {
				in.inPtr, in.inCap = ptr, uint32(size)
			}
		}
		if !in.mem.Write(ptr, input) {
			in.broken = true
			return nil, fmt.Errorf("%s returned a buffer outside memory: %w", hostapi.ExportAlloc, errdefs.ErrInvalid)
		}
	}
	packed, err := in.call(ctx, fn, uint64(ptr), uint64(len(input)))
	if err != nil {
		return nil, err
	}
	return in.result(packed)
}

// result returns the result a packed pointer and length name, in guest
// memory.
func (in *instance) result(packed uint64) ([]byte, error) {
	rptr, rlen := hostapi.Unpack(packed)
	if max := in.p.maxResult; int64(rlen) > int64(max) {
		return nil, fmt.Errorf("result of %d bytes, above the limit of %d: %w", rlen, max, errdefs.ErrTooLarge)
	}
	if rlen == 0 {
		return []byte{}, nil
	}
	view, ok := in.mem.Read(rptr, rlen)
	if !ok {
		in.broken = true
		return nil, fmt.Errorf("result (%d bytes at %#x) outside memory: %w", rlen, rptr, errdefs.ErrInvalid)
	}
	return view, nil
}

// close releases the watchdog and the module. It never fails the caller.
func (in *instance) close(ctx context.Context) {
	if in.wd != nil {
		in.wd.close() // before the module: the kernel may still write the flag
	}
	if in.mod != nil {
		_ = in.mod.Close(context.WithoutCancel(ctx))
	}
}

// readInputReuse asks a guest that exports hostapi.ExportInputReuse how
// large an input buffer it keeps across calls.
func (in *instance) readInputReuse(ctx context.Context) error {
	fn := in.mod.ExportedFunction(hostapi.ExportInputReuse)
	if fn == nil {
		return nil
	}
	def := fn.Definition()
	if len(def.ParamTypes()) != 0 || len(def.ResultTypes()) != 1 || def.ResultTypes()[0] != api.ValueTypeI32 {
		return fmt.Errorf("export %s has signature %v -> %v, want () -> i32: %w",
			hostapi.ExportInputReuse, def.ParamTypes(), def.ResultTypes(), errdefs.ErrInvalid)
	}
	v, err := in.run(ctx, fn, in.p.deadline(ctx))
	if err != nil {
		return fmt.Errorf("%s: %w", hostapi.ExportInputReuse, err)
	}
	in.reuseMax = uint32(max(int32(v), 0))
	return nil
}
