package runtime

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestRewriteCache(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := PluginConfig{Name: "cached", Path: guestPath(t, "guest")}
	load := func() {
		t.Helper()
		e, err := NewEngine(ctx, Config{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close(ctx)
		p, err := e.Load(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := mustCall(t, p, "echo", "cached"); got != "cached" {
			t.Fatalf("echo = %q", got)
		}
	}
	load()
	entries, err := filepath.Glob(filepath.Join(dir, "tugboat-rewrite", "*.wasm"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("rewrite cache holds %v (%v), want one module", entries, err)
	}
	bin, _ := os.ReadFile(cfg.Path)
	want, _, err := rewriteModule(bin, rewriteOptions{memoryMaxPages: DefaultMemoryLimit / wasmPageSize, interrupt: true, mergeData: true, exportGlobals: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(entries[0]); string(got) != string(want) {
		t.Fatal("cached rewrite differs from a fresh one")
	}

	// A damaged entry is rewritten again.
	if err := os.WriteFile(entries[0], want[:len(want)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	load()
	if got, _ := os.ReadFile(entries[0]); string(got) != string(want) {
		t.Error("damaged cache entry was not replaced")
	}
}
