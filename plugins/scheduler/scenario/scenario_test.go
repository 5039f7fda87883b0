package scenario

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tugboat-dev/tugboat/hostapi"
	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
	"github.com/tugboat-dev/tugboat/runtime"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
	sched "github.com/tugboat-dev/tugboat/sdk/scheduler"
)

var update = flag.Bool("update", false, "rewrite the .golden files from the native run")

// scenarios returns the scenario files of testdata/.
func scenarios(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios in testdata: %v", err)
	}
	return files
}

// native links each plugin into the test binary (a fresh instance per
// scenario).
func native(b Builtin, settings []byte, weight int64) (kscheduler.PluginConfig, error) {
	p, m := b.New()
	mod, err := sched.New(p, m)
	if err != nil {
		return kscheduler.PluginConfig{}, err
	}
	if err := mod.Configure(settings); err != nil {
		return kscheduler.PluginConfig{}, err
	}
	kinds := mod.Manifest().Kinds
	return kscheduler.PluginConfig{
		Plugin: mod,
		Filter: slices.Contains(kinds, hostapi.KindFilter),
		Score:  slices.Contains(kinds, hostapi.KindScore),
		Weight: weight,
	}, nil
}

func run(t *testing.T, path string, mk Plugins) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	got, err := f.Run(context.Background(), mk)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return got
}

func golden(path string) string { return strings.TrimSuffix(path, ".yaml") + ".golden" }

func check(t *testing.T, path, got string) {
	t.Helper()
	want, err := os.ReadFile(golden(path))
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s: report differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s",
			path, golden(path), got, want)
	}
}

// TestScenarios runs every scenario with the plugins linked natively.
func TestScenarios(t *testing.T) {
	for _, path := range scenarios(t) {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			got := run(t, path, native)
			if *update {
				if err := os.WriteFile(golden(path), []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			check(t, path, got)
		})
	}
}

// wasmPlugins loads the built-in modules once per test binary and settings.
type wasmPlugins struct {
	mu     sync.Mutex
	eng    *runtime.Engine
	loaded map[string]*runtime.Plugin
}

func (w *wasmPlugins) make(t testing.TB) Plugins {
	return func(b Builtin, settings []byte, weight int64) (kscheduler.PluginConfig, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		key := b.Dir + "\x00" + string(settings)
		p := w.loaded[key]
		if p == nil {
			path := plugintest.BuildWasm(t, filepath.Join("..", b.Dir))
			var err error
			p, err = w.eng.Load(context.Background(), runtime.PluginConfig{
				Name: b.Name, Path: path, Settings: settings, PoolSize: 1,
				MemoryLimit: runtime.DefaultSchedulerMemoryLimit,
			})
			if err != nil {
				return kscheduler.PluginConfig{}, err
			}
			w.loaded[key] = p
		}
		return runtime.SchedulerPlugin(p, weight)
	}
}

// TestScenariosWasm runs every scenario with the real Wasm modules (built
// from the plugins' main packages, loaded by the runtime); the reports
// must equal the native ones.
func TestScenariosWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every built-in plugin to Wasm")
	}
	if *update {
		t.Skip("-update writes the native reports")
	}
	ctx := context.Background()
	cache := filepath.Join(os.TempDir(), "tugboat-scenario-"+strconv.Itoa(os.Getuid()), "wazero-cache")
	eng, err := runtime.NewEngine(ctx, runtime.Config{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	w := &wasmPlugins{eng: eng, loaded: map[string]*runtime.Plugin{}}
	t.Cleanup(func() {
		for _, p := range w.loaded {
			_ = p.Close(ctx)
		}
		_ = eng.Close(ctx)
	})
	mk := w.make(t)
	for _, path := range scenarios(t) {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			check(t, path, run(t, path, mk))
		})
	}
}
