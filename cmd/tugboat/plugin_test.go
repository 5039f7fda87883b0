package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPluginBuildAndInspect builds a real plugin with `tugboat plugin build`
// and inspects it; a file that is not a module is refused.
func TestPluginBuildAndInspect(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Wasm plugin with the go command")
	}
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "rl.wasm")
	var stdout, stderr bytes.Buffer
	if err := buildPlugin(ctx, filepath.Join("..", "..", "plugins", "admission", "require-labels"), out, &stdout, &stderr); err != nil {
		t.Fatalf("plugin build: %v\n%s", err, stderr.String())
	}
	root := newRootCommand()
	var rep bytes.Buffer
	root.SetOut(&rep)
	root.SetArgs([]string{"plugin", "inspect", out})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("plugin inspect: %v", err)
	}
	for _, want := range []string{"abi version:  1", "name:         require-labels", "kinds:        admission/validating", "tugboat_admit", "capabilities: none"} {
		if !strings.Contains(rep.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, rep.String())
		}
	}

	bad := filepath.Join(t.TempDir(), "bad.wasm")
	if err := os.WriteFile(bad, []byte("not wasm"), 0o600); err != nil {
		t.Fatal(err)
	}
	root = newRootCommand()
	root.SetOut(&rep)
	root.SetErr(&rep)
	root.SetArgs([]string{"plugin", "inspect", bad})
	if err := root.ExecuteContext(ctx); err == nil || !strings.Contains(err.Error(), "not valid WebAssembly") {
		t.Fatalf("inspect of a non-module: err %v, want a 'not valid WebAssembly' error", err)
	}
	if err := buildPlugin(ctx, filepath.Join(t.TempDir(), "missing"), "", &stdout, &stderr); err == nil {
		t.Fatal("plugin build of a missing directory succeeded")
	}
}
