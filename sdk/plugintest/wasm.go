package plugintest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/runtime"
)

// Option changes how RunWasm loads a plugin.
type Option func(*wasmOptions)

type wasmOptions struct {
	cache         *Cache
	timeout       time.Duration
	memoryLimit   int64
	failurePolicy string
}

// WithCache serves the plugin's get and list host calls from c (the
// manifest must still grant them).
func WithCache(c *Cache) Option { return func(o *wasmOptions) { o.cache = c } }

// WithTimeout sets the per-call deadline (default: the runtime's).
func WithTimeout(d time.Duration) Option { return func(o *wasmOptions) { o.timeout = d } }

// WithMemoryLimit sets the instance memory limit in bytes.
func WithMemoryLimit(n int64) Option { return func(o *wasmOptions) { o.memoryLimit = n } }

// WithFailurePolicy sets the admission failure policy ("Fail" default).
func WithFailurePolicy(p string) Option { return func(o *wasmOptions) { o.failurePolicy = p } }

// WasmPlugin is a plugin built to Wasm and loaded by the real runtime, as
// an admission hook matching every resource and operation.
type WasmPlugin struct {
	Path      string
	Plugin    *runtime.Plugin
	Admission *runtime.Admission
	cache     *Cache
}

var _ Reviewer = (*WasmPlugin)(nil)

// RunWasm builds the plugin main package in dir to Wasm (once per test
// binary and dir), loads it with the Tugboat runtime with settings (JSON or
// YAML, "" for none), and closes it when the test ends. Any error fails the
// test; use LoadWasm to test load errors.
func RunWasm(t testing.TB, dir, settings string, opts ...Option) *WasmPlugin {
	t.Helper()
	p, err := LoadWasm(t, dir, settings, opts...)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return p
}

// LoadWasm is RunWasm returning the load error (bad settings, a bad
// manifest) instead of failing the test. Build errors still fail it.
func LoadWasm(t testing.TB, dir, settings string, opts ...Option) (*WasmPlugin, error) {
	t.Helper()
	var o wasmOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.cache == nil {
		o.cache = NewCache(t)
	}
	path := BuildWasm(t, dir)
	ctx := context.Background()
	logger := slog.New(&logHandler{cache: o.cache})
	eng, err := runtime.NewEngine(ctx, runtime.Config{CacheDir: filepath.Join(workDir(t), "wazero-cache"), Logger: logger})
	if err != nil {
		t.Fatalf("plugintest: new engine: %v", err)
	}
	t.Cleanup(func() { _ = eng.Close(ctx) })
	plug, err := eng.Load(ctx, runtime.PluginConfig{
		Name: filepath.Base(dir), Path: path, Settings: settingsJSON(settings),
		Timeout: o.timeout, MemoryLimit: o.memoryLimit, Host: hostServices{o.cache},
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = plug.Close(ctx) })
	adm, err := runtime.NewAdmission(plug, runtime.AdmissionConfig{
		Mutating:      slices.Contains(plug.Manifest().Kinds, hostapi.KindMutatingAdmission),
		FailurePolicy: o.failurePolicy,
		Rules:         []runtime.AdmissionRule{{Resources: []string{"*", "*/*"}, Operations: []string{"*"}}},
	})
	if err != nil {
		return nil, err
	}
	return &WasmPlugin{Path: path, Plugin: plug, Admission: adm, cache: o.cache}, nil
}

// Cache returns the cache behind the plugin's host calls.
func (p *WasmPlugin) Cache() *Cache { return p.cache }

// Review runs r through the runtime's admission adapter (the code the API
// server calls) and decodes the response.
func (p *WasmPlugin) Review(t testing.TB, r Request) Result {
	t.Helper()
	req := AdmissionRequest(t, r)
	resp, err := p.Admission.Admit(context.Background(), req)
	if err != nil {
		t.Fatalf("plugintest: admit: %v", err)
	}
	return result(t, req, resp)
}

// Call is Review for a raw admission request.
func (p *WasmPlugin) Call(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	return p.Admission.Admit(ctx, req)
}

var (
	buildMu sync.Mutex
	built   = map[string]string{} // absolute dir -> .wasm path
)

// BuildWasm builds the main package in dir with GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared and returns the .wasm path. Each dir is built once
// per test binary, into a per-dir file under the OS temp dir (written
// atomically, so parallel test binaries may share it).
func BuildWasm(t testing.TB, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if path, ok := built[abs]; ok {
		return path
	}
	sum := sha256.Sum256([]byte(abs))
	out := filepath.Join(workDir(t), "wasm", hex.EncodeToString(sum[:8]), filepath.Base(abs)+".wasm")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".build-*.wasm")
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	gobin := filepath.Join(goroot(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	cmd := exec.Command(gobin, "build", "-buildmode=c-shared", "-o", tmp.Name(), ".")
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("plugintest: build %s for wasip1/wasm: %v\n%s", dir, err, stderr.String())
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	built[abs] = out
	return out
}

// workDir is plugintest's directory for built modules and the wazero
// compilation cache, shared by test binaries.
func workDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join(os.TempDir(), fmt.Sprintf("tugboat-plugintest-%d", os.Getuid()))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return d
}

// goroot finds the toolchain running the tests, so the plugin is built
// with the same Go.
func goroot() string {
	if r := os.Getenv("GOROOT"); r != "" {
		return r
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(out))
}

// logHandler puts the plugin's log lines (stream "log") into the cache as
// "LEVEL message"; everything else the runtime logs is dropped.
type logHandler struct {
	cache *Cache
	attrs []slog.Attr
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	isLog := false
	check := func(a slog.Attr) bool {
		if a.Key == "stream" && a.Value.String() == "log" {
			isLog = true
		}
		return true
	}
	for _, a := range h.attrs {
		check(a)
	}
	r.Attrs(check)
	if isLog {
		h.cache.mu.Lock()
		h.cache.logs = append(h.cache.logs, r.Level.String()+" "+r.Message)
		h.cache.mu.Unlock()
	}
	return nil
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logHandler{cache: h.cache, attrs: append(slices.Clip(h.attrs), attrs...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }
