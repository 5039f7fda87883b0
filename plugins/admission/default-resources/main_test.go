package main

import (
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const settings = `{"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}`

// TestPlugin runs the same requests natively and as Wasm under the Tugboat
// runtime and compares the patched objects.
func TestPlugin(t *testing.T) {
	targets := []struct {
		name string
		r    plugintest.Reviewer
	}{
		{"native", plugintest.NewRegistered(t, settings, nil)},
		{"wasm", plugintest.RunWasm(t, ".", settings)},
	}
	tests := []struct {
		name        string
		object      string
		wantPatched string // "" = no patch
	}{
		{
			name: "deployment gets defaults",
			object: `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
				"spec": {"template": {"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}}}`,
			wantPatched: `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
				"spec": {"template": {"spec": {"containers": [{"name": "a", "resources": {
				"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}}]}}}}`,
		},
		{
			name:   "configmap untouched",
			object: `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}`,
		},
	}
	for _, target := range targets {
		for _, tt := range tests {
			t.Run(target.name+"/"+tt.name, func(t *testing.T) {
				got := target.r.Review(t, plugintest.Request{Object: tt.object})
				if !got.Allowed {
					t.Fatalf("denied: %s", got.Message)
				}
				if tt.wantPatched == "" {
					if got.Patch != nil {
						t.Fatalf("patch %s, want none", got.Patch)
					}
					return
				}
				if !plugintest.JSONEqual(t, got.Patched, tt.wantPatched) {
					t.Fatalf("patched object %s, want %s", got.Patched, tt.wantPatched)
				}
			})
		}
	}
}

func TestWasmBadSettings(t *testing.T) {
	_, err := plugintest.LoadWasm(t, ".", `{"limits": {"memory": "lots"}}`)
	if err == nil || !strings.Contains(err.Error(), `quantity "lots"`) {
		t.Fatalf("LoadWasm with bad settings: %v, want the plugin's message", err)
	}
}
