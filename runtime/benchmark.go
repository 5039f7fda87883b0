package runtime

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// DeadlineCost is what MeasureDeadlineCost found: the median time of one
// guest call under each way of enforcing deadlines.
type DeadlineCost struct {
	// Plain runs the module as built: no deadline can stop it.
	Plain time.Duration
	// Checked runs it as Load does: rewritten with interrupt checks.
	Checked time.Duration
	// CloseOnDone runs the module as built with wazero's
	// WithCloseOnContextDone, which checks the context at every loop
	// header in Go code.
	CloseOnDone time.Duration
}

// MeasureDeadlineCost calls export of the plugin module at path with input
// runs times under each way of enforcing deadlines, interleaved so that
// other load on the machine affects all three alike, and returns the
// medians. Settings, if not nil, configure each instance first. It is for
// benchmarks (tugbench), which may not import wazero.
func MeasureDeadlineCost(ctx context.Context, path, export string, settings, input []byte, runs int) (DeadlineCost, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return DeadlineCost{}, err
	}
	checked, _, err := rewriteModule(bin, rewriteOptions{interrupt: true, mergeData: true})
	if err != nil {
		return DeadlineCost{}, err
	}
	variants := []struct {
		bin         []byte
		closeOnDone bool
	}{{bin, false}, {checked, false}, {bin, true}}
	calls := make([]func() (time.Duration, error), len(variants))
	for i, v := range variants {
		call, closeRT, err := benchInstance(ctx, v.bin, v.closeOnDone, export, settings, input)
		if err != nil {
			return DeadlineCost{}, err
		}
		defer closeRT()
		calls[i] = call
	}
	times := make([][]time.Duration, len(variants))
	for r := 0; r < runs; r++ {
		for i, call := range calls {
			d, err := call()
			if err != nil {
				return DeadlineCost{}, err
			}
			times[i] = append(times[i], d)
		}
	}
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	return DeadlineCost{Plain: median(times[0]), Checked: median(times[1]), CloseOnDone: median(times[2])}, nil
}

// benchInstance starts bin in its own runtime and returns a function that
// times one call of export with input.
func benchInstance(ctx context.Context, bin []byte, closeOnDone bool, export string, settings, input []byte) (func() (time.Duration, error), func(), error) {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(closeOnDone))
	closeRT := func() { _ = rt.Close(context.WithoutCancel(ctx)) }
	fail := func(err error) (func() (time.Duration, error), func(), error) {
		closeRT()
		return nil, nil, err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fail(err)
	}
	if _, err := newHostModule(rt).Instantiate(ctx); err != nil {
		return fail(err)
	}
	mod, err := rt.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		return fail(err)
	}
	alloc, fn := mod.ExportedFunction(hostapi.ExportAlloc), mod.ExportedFunction(export)
	if alloc == nil || fn == nil {
		return fail(fmt.Errorf("module lacks %s or %s", hostapi.ExportAlloc, export))
	}
	callCtx := ctx
	if closeOnDone {
		// WithCloseOnContextDone only checks contexts that can end.
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, time.Hour)
		prev := closeRT
		closeRT = func() { cancel(); prev() }
	}
	// callWith calls fn with input and returns its time and result.
	callWith := func(fn api.Function, input []byte) (time.Duration, uint64, error) {
		stack := []uint64{uint64(len(input))}
		if err := alloc.CallWithStack(ctx, stack); err != nil {
			return 0, 0, err
		}
		if !mod.Memory().Write(uint32(stack[0]), input) {
			return 0, 0, fmt.Errorf("input outside memory")
		}
		stack = []uint64{stack[0], uint64(len(input))}
		start := time.Now()
		err := fn.CallWithStack(callCtx, stack)
		return time.Since(start), stack[0], err
	}
	if settings != nil {
		configure := mod.ExportedFunction(hostapi.ExportConfigure)
		if configure == nil {
			return fail(fmt.Errorf("module lacks %s", hostapi.ExportConfigure))
		}
		_, res, err := callWith(configure, settings)
		if ptr, size := hostapi.Unpack(res); err == nil && size > 0 {
			msg, _ := mod.Memory().Read(ptr, size)
			err = fmt.Errorf("settings refused: %s", msg)
		}
		if err != nil {
			return fail(fmt.Errorf("%s: %w", hostapi.ExportConfigure, err))
		}
	}
	call := func() (time.Duration, error) {
		d, _, err := callWith(fn, input)
		return d, err
	}
	return call, closeRT, nil
}
