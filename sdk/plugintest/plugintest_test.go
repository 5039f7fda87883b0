package plugintest_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/sdk/plugintest"
	"github.com/tugboat-dev/tugboat/sdk/plugintest/testdata/lookup/lookupplugin"
)

const lookupDir = "testdata/lookup"

func newCache(t testing.TB) *plugintest.Cache {
	t.Helper()
	return plugintest.NewCache(t,
		`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"}, "data": {"mode": "strict"}}`,
		`{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}}`,
		"apiVersion: v1\nkind: Pod\nmetadata: {name: web-2, namespace: default, labels: {app: web}}\n",
		`{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}}}`,
		`{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db", "namespace": "default", "labels": {"app": "db"}}}`,
		`{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-x", "namespace": "other", "labels": {"app": "web"}}}`,
	)
}

// TestHostCalls runs a plugin that calls every host function natively and
// under the runtime: get (found, not found, not granted), list with a
// label selector, now and write (not granted), log, and a plugin error.
func TestHostCalls(t *testing.T) {
	nativeCache, wasmCache := newCache(t), newCache(t)
	targets := []struct {
		name  string
		r     plugintest.Reviewer
		cache *plugintest.Cache
	}{
		{"native", plugintest.New(t, lookupplugin.Plugin{}, lookupplugin.Manifest(), `{"n": 1}`, nativeCache), nativeCache},
		{"wasm", plugintest.RunWasm(t, lookupDir, `{"n": 1}`, plugintest.WithCache(wasmCache)), wasmCache},
	}
	obj := `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe", "namespace": "default"}}`
	for _, target := range targets {
		t.Run(target.name, func(t *testing.T) {
			got := target.r.Review(t, plugintest.Request{Object: obj})
			want := "mode=strict; pods=web-1,web-2"
			if got.Allowed || got.Message != want {
				t.Fatalf("allowed %v message %q, want denied with %q", got.Allowed, got.Message, want)
			}
			if logs := target.cache.Logs(); !slices.Contains(logs, "INFO admit probe") {
				t.Errorf("logs %q, want %q", logs, "INFO admit probe")
			}

			failed := target.r.Review(t, plugintest.Request{Object: strings.Replace(obj, "probe", "fail", 1)})
			if failed.Allowed || failed.Code != 500 || !strings.Contains(failed.Message, "lookup failed on purpose") {
				t.Fatalf("plugin error: allowed %v code %d message %q, want a 500 naming the error",
					failed.Allowed, failed.Code, failed.Message)
			}
		})
	}
}

func TestWasmFailurePolicyIgnore(t *testing.T) {
	p := plugintest.RunWasm(t, lookupDir, "", plugintest.WithFailurePolicy("Ignore"))
	got := p.Review(t, plugintest.Request{Object: `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fail"}}`})
	if !got.Allowed {
		t.Fatalf("plugin error with failure policy Ignore: denied with %q", got.Message)
	}
}

func TestConfigureErrors(t *testing.T) {
	if err := plugintest.Configure(t, lookupplugin.Plugin{}, lookupplugin.Manifest(), `{"n": "x"}`); err == nil ||
		!strings.Contains(err.Error(), "n must be an integer") {
		t.Fatalf("native Configure: %v, want the plugin's message", err)
	}
	if _, err := plugintest.LoadWasm(t, lookupDir, `{"n": "x"}`); err == nil || !strings.Contains(err.Error(), "n must be an integer") {
		t.Fatalf("LoadWasm: %v, want the plugin's message", err)
	}
	if err := plugintest.Configure(t, lookupplugin.Plugin{}, lookupplugin.Manifest(), `{"n": `); err == nil {
		t.Fatal("Configure with malformed JSON: want an error")
	}
}

func TestResourceOf(t *testing.T) {
	tests := []struct{ apiVersion, kind, want string }{
		{"v1", "Pod", "pods"},
		{"apps/v1", "Deployment", "deployments.apps"},
		{"networking.k8s.io/v1", "Ingress", "ingresses.networking.k8s.io"},
		{"networking.k8s.io/v1", "NetworkPolicy", "networkpolicies.networking.k8s.io"},
		{"v1", "Endpoints", "endpoints"},
		{"batch/v1", "CronJob", "cronjobs.batch"},
		{"v1", "Namespace", "namespaces"},
	}
	for _, tt := range tests {
		if got := plugintest.ResourceOf(tt.apiVersion, tt.kind); got != tt.want {
			t.Errorf("ResourceOf(%q, %q) = %q, want %q", tt.apiVersion, tt.kind, got, tt.want)
		}
	}
}
