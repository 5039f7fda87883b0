package main

import (
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const settings = `{"allowHostNetwork": false, "exemptNamespaces": ["kube-system"]}`

// TestPlugin runs the same requests natively and as Wasm under the Tugboat
// runtime.
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
		wantMessage string // "" = allowed
	}{
		{"plain", `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
			"spec": {"containers": [{"name": "a"}]}}`, ""},
		{"privileged deployment", `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
			"spec": {"template": {"spec": {"hostNetwork": true, "containers": [{"name": "a", "securityContext": {"privileged": true}}]}}}}`,
			`hostNetwork is not allowed; container "a" must not be privileged`},
		{"exempt namespace", `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "kube-system"},
			"spec": {"hostNetwork": true, "containers": [{"name": "a"}]}}`, ""},
	}
	for _, target := range targets {
		for _, tt := range tests {
			t.Run(target.name+"/"+tt.name, func(t *testing.T) {
				got := target.r.Review(t, plugintest.Request{Object: tt.object})
				if tt.wantMessage == "" && !got.Allowed {
					t.Fatalf("denied: %s", got.Message)
				}
				if tt.wantMessage != "" && (got.Allowed || got.Message != tt.wantMessage) {
					t.Fatalf("allowed %v message %q, want denied with %q", got.Allowed, got.Message, tt.wantMessage)
				}
			})
		}
	}
}

func TestWasmBadSettings(t *testing.T) {
	_, err := plugintest.LoadWasm(t, ".", `{"allowHostNetwork": 1}`)
	if err == nil || !strings.Contains(err.Error(), "allowHostNetwork must be true or false") {
		t.Fatalf("LoadWasm with bad settings: %v, want the plugin's message", err)
	}
}
