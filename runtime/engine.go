// Package runtime runs Tugboat's Wasm plugins: it compiles modules with
// wazero (caching compiled code on disk), checks them against the host ABI
// in package hostapi, keeps a bounded pool of sandboxed instances per
// plugin, enforces a deadline on every guest call, implements the host
// functions on top of HostServices with capability checks against each
// module's Manifest, and adapts modules into kernel extension points (see
// Admission).
//
// It is the only package that imports wazero. An Engine and the Plugins it
// loads are safe for concurrent use.
//
// Guest calls fail with errors that name the plugin and wrap
// errdefs.ErrPluginTimeout (deadline passed), errdefs.ErrPluginTrap (the
// guest trapped, panicked or ran out of memory), errdefs.ErrTooLarge (a
// result above the limit) or errdefs.ErrInvalid (a module or message that
// breaks the ABI). How deadlines are enforced and why: docs/RATIONALE.md.
package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Log attribute keys used by this package.
const (
	logKeyPlugin  = "plugin"
	logKeyStream  = "stream"
	logKeyDropped = "dropped"
	logKeyError   = "error"
)

// Config configures an Engine.
type Config struct {
	// CacheDir is the directory of the on-disk compilation cache; "" keeps
	// compiled code in memory only.
	CacheDir string
	// Logger receives guest output and runtime events; nil discards them.
	Logger *slog.Logger
}

// Engine compiles and runs plugins. One Engine holds one wazero runtime
// with the WASI and Tugboat host modules; every plugin's instances live in
// it. Close releases everything, including the Plugins loaded from it.
type Engine struct {
	rt       wazero.Runtime
	cache    wazero.CompilationCache
	rewrites rewriteCache
	log      *slog.Logger
	// wasi names the functions the WASI host module provides.
	wasi map[string]bool

	closed atomic.Bool
}

// NewEngine starts a wazero runtime in compiler mode with the compilation
// cache of cfg and instantiates the host modules.
func NewEngine(ctx context.Context, cfg Config) (*Engine, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rewrites, err := newRewriteCache(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("open compilation cache %s: %w", cfg.CacheDir, err)
	}
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("open compilation cache %s: %w", cfg.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	rc := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(cache).
		WithCoreFeatures(api.CoreFeaturesV2).
		WithCloseOnContextDone(false) // deadlines use injected checks instead
	e := &Engine{rt: wazero.NewRuntimeWithConfig(ctx, rc), cache: cache, rewrites: rewrites, log: log}
	if err := e.instantiateHostModules(ctx); err != nil {
		_ = e.rt.Close(ctx)
		_ = cache.Close(ctx)
		return nil, err
	}
	return e, nil
}

func (e *Engine) instantiateHostModules(ctx context.Context) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, e.rt); err != nil {
		return fmt.Errorf("instantiate wasi: %w", err)
	}
	e.wasi = map[string]bool{}
	for name := range e.rt.Module(wasi_snapshot_preview1.ModuleName).ExportedFunctionDefinitions() {
		e.wasi[name] = true
	}
	if _, err := newHostModule(e.rt).Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate host module %s: %w", hostapi.ImportModule, err)
	}
	return nil
}

// Close closes every plugin instance, the runtime and the compilation
// cache. Plugins loaded from e fail with errdefs.ErrUnavailable afterwards.
func (e *Engine) Close(ctx context.Context) error {
	if e.closed.Swap(true) {
		return nil
	}
	err := e.rt.Close(ctx)
	if cerr := e.cache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

func (e *Engine) isClosed() bool { return e.closed.Load() }

// checkImports refuses a module that imports anything the host does not
// provide: only functions of the Tugboat host module and of WASI.
func (e *Engine) checkImports(cm wazero.CompiledModule) error {
	var missing []string
	otherABI := ""
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch {
		case mod == hostapi.ImportModule && hostFuncs[name]:
		case mod == wasi_snapshot_preview1.ModuleName && e.wasi[name]:
		default:
			missing = append(missing, mod+"."+name)
			if mod != hostapi.ImportModule && isTugboatModule(mod) {
				otherABI = mod
			}
		}
	}
	for _, m := range cm.ImportedMemories() {
		mod, name, _ := m.Import()
		missing = append(missing, mod+"."+name+" (memory)")
	}
	if len(missing) == 0 {
		return nil
	}
	if otherABI != "" {
		return fmt.Errorf("module imports the host module %q of another ABI version; this host provides %q (ABI version %d): %w",
			otherABI, hostapi.ImportModule, hostapi.ABIVersion, errdefs.ErrInvalid)
	}
	return fmt.Errorf("module imports what the host does not provide: %v: %w", missing, errdefs.ErrInvalid)
}

// isTugboatModule reports whether mod looks like a Tugboat host module
// name ("tugboat_v2").
func isTugboatModule(mod string) bool {
	const prefix = "tugboat_v"
	return len(mod) > len(prefix) && mod[:len(prefix)] == prefix
}

// compile reads the module at path, rewrites it (interrupt checks, memory
// limit, merged data segments) and compiles it. Both steps are cached on
// disk: wazero's compilation cache is keyed by the rewritten bytes.
func (e *Engine) compile(ctx context.Context, path string, memoryLimit int64) (wazero.CompiledModule, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	opts := rewriteOptions{memoryMaxPages: uint32(memoryLimit / wasmPageSize), interrupt: true, mergeData: true, exportGlobals: true}
	out, cached, err := e.rewrites.rewrite(bin, opts)
	if err != nil {
		return nil, fmt.Errorf("module %s is not valid WebAssembly: %w", path, err)
	}
	cm, err := e.rt.CompileModule(ctx, out)
	if err != nil && cached {
		// A damaged cache entry: rewrite again.
		e.rewrites.forget(bin, opts)
		if out, _, err = e.rewrites.rewrite(bin, opts); err == nil {
			cm, err = e.rt.CompileModule(ctx, out)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("compile module %s: %w: %w", path, errdefs.ErrInvalid, err)
	}
	return cm, nil
}
