package runtime

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Defaults of PluginConfig.
const (
	DefaultMemoryLimit   = 64 << 20
	DefaultTimeout       = time.Second
	DefaultMaxResultSize = 4 << 20
	wasmPageSize         = 64 << 10
)

// PluginConfig says how to load and run one plugin.
type PluginConfig struct {
	// Name identifies the plugin (from the config file) in every log line
	// and error.
	Name string
	// Path is the .wasm file.
	Path string
	// MemoryLimit is the most linear memory one instance may use, in
	// bytes; 0 means DefaultMemoryLimit. Rounded up to 64 KiB pages.
	MemoryLimit int64
	// Timeout bounds every guest call; 0 means DefaultTimeout. A call's
	// deadline is the earlier of its context's and now+Timeout, counted
	// from when it has an instance.
	Timeout time.Duration
	// PoolSize is the most instances (and so concurrent calls); 0 means
	// GOMAXPROCS. Further calls wait for a free instance.
	PoolSize int
	// Settings is the JSON passed to tugboat_configure on each new
	// instance.
	Settings []byte
	// Host serves get/list/write; nil refuses them with ErrCodePermission.
	Host HostServices
	// MaxResultSize bounds a call's result in bytes; 0 means
	// DefaultMaxResultSize.
	MaxResultSize int
	// NoSnapshot starts every instance the long way (instantiate,
	// _initialize, configure) instead of from a snapshot of the first
	// configured instance (see snapshot.go).
	NoSnapshot bool
}

// Plugin is a loaded module with its pool of instances. Safe for
// concurrent use.
type Plugin struct {
	e           *Engine
	name        string
	path        string
	timeout     time.Duration
	memoryLimit int64
	maxResult   int
	settings    []byte
	host        HostServices
	compiled    wazero.CompiledModule
	manifest    hostapi.Manifest
	relevance   [2]uint64 // a scheduler plugin's filter and score relevance
	admitLayout int32     // the admission request layout (hostapi.AdmitLayout*)
	grants      map[string]bool
	output      *guestOutput
	pool        *pool
	snap        *snapshot    // nil: instances start the long way
	started     atomic.Int64 // instances started, for tests and stats
	closed      atomic.Bool
}

// Load compiles the module at cfg.Path (or takes it from the compilation
// cache), checks its imports and ABI version, reads its manifest, and
// starts and configures one instance. Errors name the plugin and the file;
// a bad setting fails with the plugin's own message.
func (e *Engine) Load(ctx context.Context, cfg PluginConfig) (*Plugin, error) {
	p, err := e.load(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("load plugin %q from %s: %w", cfg.Name, cfg.Path, err)
	}
	return p, nil
}

func (e *Engine) load(ctx context.Context, cfg PluginConfig) (*Plugin, error) {
	if e.isClosed() {
		return nil, fmt.Errorf("engine closed: %w", errdefs.ErrUnavailable)
	}
	p, err := newPlugin(e, cfg)
	if err != nil {
		return nil, err
	}
	if p.compiled, err = e.compile(ctx, cfg.Path, p.memoryLimit); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = p.compiled.Close(context.WithoutCancel(ctx))
		}
	}()
	if err := e.checkImports(p.compiled); err != nil {
		return nil, err
	}
	first, err := p.inspect(ctx)
	if err != nil {
		return nil, err
	}
	if len(p.grants) > 0 {
		// The first instance ran without the clock and randomness the
		// manifest grants; start a fresh one that has them.
		first.close(ctx)
		if first, err = p.start(ctx); err != nil {
			return nil, err
		}
	}
	if err := p.configure(ctx, first); err != nil {
		first.close(ctx)
		return nil, err
	}
	if err := p.readRelevance(ctx, first); err != nil {
		first.close(ctx)
		return nil, err
	}
	if err := p.readAdmitLayout(ctx, first); err != nil {
		first.close(ctx)
		return nil, err
	}
	if !cfg.NoSnapshot {
		p.snap = p.takeSnapshot(ctx, first)
	}
	p.pool.add(first)
	ok = true
	return p, nil
}

func newPlugin(e *Engine, cfg PluginConfig) (*Plugin, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("plugin has no name: %w", errdefs.ErrInvalid)
	}
	if cfg.MemoryLimit < 0 || cfg.Timeout < 0 || cfg.PoolSize < 0 || cfg.MaxResultSize < 0 {
		return nil, fmt.Errorf("negative memory limit, timeout, pool size or result size: %w", errdefs.ErrInvalid)
	}
	p := &Plugin{
		e: e, name: cfg.Name, path: cfg.Path, timeout: cfg.Timeout, memoryLimit: cfg.MemoryLimit,
		maxResult: cfg.MaxResultSize, settings: cfg.Settings, host: cfg.Host, grants: map[string]bool{},
		output: newGuestOutput(e.log.With(slog.String(logKeyPlugin, cfg.Name))),
	}
	if p.timeout == 0 {
		p.timeout = DefaultTimeout
	}
	if p.memoryLimit == 0 {
		p.memoryLimit = DefaultMemoryLimit
	}
	pages := (p.memoryLimit + wasmPageSize - 1) / wasmPageSize
	if pages > 65536 {
		return nil, fmt.Errorf("memory limit %d bytes above 4 GiB: %w", cfg.MemoryLimit, errdefs.ErrInvalid)
	}
	p.memoryLimit = pages * wasmPageSize
	if p.maxResult == 0 {
		p.maxResult = DefaultMaxResultSize
	}
	size := cfg.PoolSize
	if size == 0 {
		size = goruntime.GOMAXPROCS(0)
	}
	p.pool = newPool(size, p.startConfigured)
	return p, nil
}

// inspect starts the first instance, checks its ABI version and reads its
// manifest.
func (p *Plugin) inspect(ctx context.Context) (*instance, error) {
	for _, name := range []string{hostapi.ExportABIVersion, hostapi.ExportManifest, hostapi.ExportAlloc} {
		if _, ok := p.compiled.ExportedFunctions()[name]; !ok {
			return nil, fmt.Errorf("module does not export %s (is it a Tugboat plugin?): %w", name, errdefs.ErrInvalid)
		}
	}
	in, err := p.start(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.readManifest(ctx, in); err != nil {
		in.close(ctx)
		return nil, err
	}
	return in, nil
}

func (p *Plugin) readManifest(ctx context.Context, in *instance) error {
	deadline := p.deadline(ctx)
	v, err := in.run(ctx, in.function(hostapi.ExportABIVersion), deadline)
	if err != nil {
		return fmt.Errorf("%s: %w", hostapi.ExportABIVersion, err)
	}
	if found := int32(v); found != hostapi.ABIVersion {
		return fmt.Errorf("module %s has ABI version %d, the host expects version %d: %w",
			p.path, found, hostapi.ABIVersion, errdefs.ErrInvalid)
	}
	raw, err := in.invoke(ctx, in.function(hostapi.ExportManifest), nil, deadline)
	if err != nil {
		return fmt.Errorf("%s: %w", hostapi.ExportManifest, err)
	}
	if err := json.Unmarshal(raw, &p.manifest); err != nil {
		return fmt.Errorf("decode manifest: %w: %w", errdefs.ErrInvalid, err)
	}
	for _, g := range p.manifest.Grants {
		switch g {
		case hostapi.CapClock, hostapi.CapRandom:
			p.grants[g] = true
		default:
			return fmt.Errorf("manifest grants unknown capability %q: %w", g, errdefs.ErrInvalid)
		}
	}
	return nil
}

// start instantiates the module in the sandbox and runs the guest's
// initialization (_initialize of a reactor) under the plugin's timeout.
func (p *Plugin) start(ctx context.Context) (*instance, error) {
	p.started.Add(1)
	in := newInstance(p)
	mc := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithStdout(&lineWriter{out: p.output, stream: "stdout", level: slog.LevelInfo}).
		WithStderr(&lineWriter{out: p.output, stream: "stderr", level: slog.LevelWarn})
	if p.grants[hostapi.CapClock] {
		mc = mc.WithSysWalltime().WithSysNanotime().WithNanosleep(in.sleep)
	}
	if p.grants[hostapi.CapRandom] {
		mc = mc.WithRandSource(crand.Reader)
	}
	ictx := ctx
	if s := p.snap; s != nil {
		ictx = experimental.WithMemoryAllocator(ctx, s.alloc)
	}
	mod, err := p.e.rt.InstantiateModule(ictx, p.compiled, mc)
	if err != nil {
		if p.e.isClosed() || p.closed.Load() {
			return nil, fmt.Errorf("instantiate: plugin closed: %w", errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("instantiate: %w: %w", errdefs.ErrInvalid, err)
	}
	if err := in.bind(mod); err != nil {
		in.close(ctx)
		return nil, err
	}
	if s := p.snap; s != nil {
		if err := in.restore(s); err != nil {
			in.close(ctx)
			return nil, fmt.Errorf("restore snapshot: %w", err)
		}
		return in, nil
	}
	if init := mod.ExportedFunction("_initialize"); init != nil {
		if _, err := in.run(ctx, init, p.deadline(ctx)); err != nil {
			in.close(ctx)
			return nil, fmt.Errorf("_initialize: %w", err)
		}
	}
	if err := in.readInputReuse(ctx); err != nil {
		in.close(ctx)
		return nil, err
	}
	return in, nil
}

// configure passes the settings to a new instance; the guest's error
// message becomes the error.
func (p *Plugin) configure(ctx context.Context, in *instance) error {
	fn := in.function(hostapi.ExportConfigure)
	if fn == nil {
		if len(p.settings) > 0 {
			return fmt.Errorf("settings given but the module does not export %s: %w", hostapi.ExportConfigure, errdefs.ErrInvalid)
		}
		return nil
	}
	if err := checkSignature(fn); err != nil {
		return err
	}
	msg, err := in.invoke(ctx, fn, p.settings, p.deadline(ctx))
	if err != nil {
		return fmt.Errorf("%s: %w", hostapi.ExportConfigure, err)
	}
	if len(msg) > 0 {
		return fmt.Errorf("plugin %q refused its settings: %s: %w", p.name, msg, errdefs.ErrInvalid)
	}
	return nil
}

func (p *Plugin) startConfigured(ctx context.Context) (*instance, error) {
	in, err := p.start(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: new instance: %w", p.name, err)
	}
	if in.restored {
		return in, nil // configured in the snapshot
	}
	if err := p.configure(ctx, in); err != nil {
		in.close(ctx)
		return nil, fmt.Errorf("plugin %q: new instance: %w", p.name, err)
	}
	return in, nil
}

// deadline is the deadline of a call starting now.
func (p *Plugin) deadline(ctx context.Context) time.Time {
	d := time.Now().Add(p.timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// checkSignature accepts the (ptr i32, len i32) -> i64 shape of the ABI's
// entry points.
func checkSignature(fn api.Function) error {
	def := fn.Definition()
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	if !slices.Equal(def.ParamTypes(), []api.ValueType{i32, i32}) || !slices.Equal(def.ResultTypes(), []api.ValueType{i64}) {
		return fmt.Errorf("export %s has signature %v -> %v, want (i32, i32) -> i64: %w",
			def.Name(), def.ParamTypes(), def.ResultTypes(), errdefs.ErrInvalid)
	}
	return nil
}

// Name returns the plugin's configured name.
func (p *Plugin) Name() string { return p.name }

// Manifest returns what the module declared about itself.
func (p *Plugin) Manifest() hostapi.Manifest { return p.manifest }

// Call calls the guest export (an ABI entry point such as
// hostapi.ExportAdmit) with input on an instance of the pool and returns
// its result. It waits for a free instance as long as ctx allows. Errors
// name the plugin and wrap errdefs.ErrPluginTimeout,
// errdefs.ErrPluginTrap, errdefs.ErrTooLarge, errdefs.ErrInvalid or
// errdefs.ErrUnavailable (closed). An instance that trapped or timed out is
// closed and replaced by the next call that needs one.
func (p *Plugin) Call(ctx context.Context, export string, input []byte) ([]byte, error) {
	var out []byte
	err := p.callView(ctx, export, input, func(view []byte) { out = bytes.Clone(view) })
	return out, err
}

// callView is Call passing the result, still in guest memory, to use
// instead of copying it; use runs while the call holds the instance.
func (p *Plugin) callView(ctx context.Context, export string, input []byte, use func(out []byte)) error {
	if p.e.isClosed() {
		return fmt.Errorf("plugin %q: call %s: engine closed: %w", p.name, export, errdefs.ErrUnavailable)
	}
	in, err := p.pool.get(ctx)
	if err != nil {
		return fmt.Errorf("plugin %q: call %s: %w", p.name, export, err)
	}
	out, err := p.callOn(ctx, in, export, input)
	if err == nil {
		use(out)
	}
	p.pool.put(ctx, in)
	if err != nil {
		return fmt.Errorf("plugin %q: call %s: %w", p.name, export, err)
	}
	return nil
}

func (p *Plugin) callOn(ctx context.Context, in *instance, export string, input []byte) ([]byte, error) {
	fn := in.function(export)
	if fn == nil {
		return nil, fmt.Errorf("module does not export %s: %w", export, errdefs.ErrNotFound)
	}
	if err := checkSignature(fn); err != nil {
		return nil, err
	}
	out, err := in.invokeView(ctx, fn, input, p.deadline(ctx))
	if err != nil && in.mod.IsClosed() {
		in.broken = true
	}
	return out, err
}

// Warm starts instances until n of them (at most PoolSize) are ready, so
// that calls do not wait for a new instance, and returns how many it
// started.
func (p *Plugin) Warm(ctx context.Context, n int) (int, error) {
	n = min(n, cap(p.pool.slots))
	before := p.started.Load()
	held := make([]*instance, 0, n)
	defer func() {
		for _, in := range held {
			p.pool.put(ctx, in)
		}
	}()
	for len(held) < n {
		in, err := p.pool.get(ctx)
		if err != nil {
			return int(p.started.Load() - before), fmt.Errorf("plugin %q: warm: %w", p.name, err)
		}
		held = append(held, in)
	}
	return int(p.started.Load() - before), nil
}

// PluginStats describe a plugin's pool.
type PluginStats struct {
	// Idle instances wait in the pool; Busy calls hold one.
	Idle, Busy int
	// Started counts the instances started since Load (replacements too).
	Started int64
	// IdleMemory is the linear memory of the idle instances, in bytes.
	IdleMemory int64
}

// Stats reports the plugin's pool.
func (p *Plugin) Stats() PluginStats {
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	s := PluginStats{Idle: len(p.pool.idle), Busy: len(p.pool.slots), Started: p.started.Load()}
	for _, in := range p.pool.idle {
		s.IdleMemory += int64(in.mem.Size())
	}
	return s
}

// Close closes the plugin's instances; calls in flight finish first on
// their instance. Calls after Close fail with errdefs.ErrUnavailable.
func (p *Plugin) Close(ctx context.Context) error {
	if p.closed.Swap(true) {
		return nil
	}
	p.pool.close(ctx)
	err := p.compiled.Close(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// sleep is the guest's nanosleep (plugins granted the clock): it never
// sleeps past the current call's deadline, so a sleeping guest still
// stops in time.
func (in *instance) sleep(ns int64) {
	time.Sleep(min(time.Duration(ns), max(time.Until(in.deadline), 0)))
}
