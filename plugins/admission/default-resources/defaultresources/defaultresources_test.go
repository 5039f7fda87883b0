package defaultresources_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/admission/default-resources/defaultresources"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

func TestConfigure(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		wantErr  string
	}{
		{"requests and limits", `{"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}`, ""},
		{"only limits", `{"limits": {"cpu": "1"}}`, ""},
		{"extended resource", `{"requests": {"example.com/gpu": "1", "ephemeral-storage": "1Gi"}}`, ""},
		{"exponent and decimals", `{"requests": {"cpu": "0.5", "memory": "1e9", "x": ".5k", "y": "5.E3"}}`, ""},
		{"request equals limit", `{"requests": {"cpu": "1"}, "limits": {"cpu": "1000m"}}`, ""},
		{"no settings", ``, `"requests" or "limits" is required`},
		{"nothing to default", `{"requests": {}, "limits": null}`, "at least one resource"},
		{"bad quantity", `{"requests": {"cpu": "100mm"}}`, `requests.cpu: quantity "100mm" does not match`},
		{"bad suffix", `{"limits": {"memory": "128MB"}}`, `limits.memory: quantity "128MB"`},
		{"no number", `{"limits": {"memory": "Mi"}}`, `quantity "Mi"`},
		{"bad exponent", `{"limits": {"memory": "1e"}}`, `quantity "1e"`},
		{"number not string", `{"requests": {"cpu": 1}}`, "requests.cpu must be a quantity string"},
		{"negative", `{"requests": {"cpu": "-1"}}`, "requests.cpu must not be negative"},
		{"request above limit", `{"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}`, "default request memory=1Gi exceeds default limit 512Mi"},
		{"unknown field", `{"request": {"cpu": "1"}}`, `unknown field "request"`},
		{"requests not object", `{"requests": ["cpu"]}`, "requests must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := plugintest.Configure(t, defaultresources.New(), defaultresources.Manifest(), tt.settings)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Configure(%s) = %v, want nil", tt.settings, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Configure(%s) = %v, want an error containing %q", tt.settings, err, tt.wantErr)
			}
		})
	}
}

const settings = `{"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}`

// resources maps "field/index" to the container's resources after the
// patch, e.g. "containers/0" -> {"requests": {...}}.
type resources map[string]map[string]map[string]string

func containerResources(t testing.TB, obj []byte, path ...string) resources {
	t.Helper()
	var v any
	if err := json.Unmarshal(obj, &v); err != nil {
		t.Fatal(err)
	}
	for _, p := range path {
		v = v.(map[string]any)[p]
	}
	spec := v.(map[string]any)
	out := resources{}
	for _, field := range []string{"initContainers", "containers"} {
		list, _ := spec[field].([]any)
		for i, c := range list {
			r := map[string]map[string]string{}
			res, _ := c.(map[string]any)["resources"].(map[string]any)
			for k, m := range res {
				r[k] = map[string]string{}
				for name, q := range m.(map[string]any) {
					r[k][name] = q.(string)
				}
			}
			out[field+"/"+string(rune('0'+i))] = r
		}
	}
	return out
}

func TestAdmit(t *testing.T) {
	h := plugintest.New(t, defaultresources.New(), defaultresources.Manifest(), settings, nil)
	full := map[string]map[string]string{
		"requests": {"cpu": "100m", "memory": "128Mi"},
		"limits":   {"memory": "256Mi"},
	}
	tests := []struct {
		name     string
		req      plugintest.Request
		specPath []string
		want     resources // nil: no patch expected
	}{
		{
			name: "pod without resources",
			req: plugintest.Request{Object: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
				"spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b", "resources": {}}]}}`},
			specPath: []string{"spec"},
			want:     resources{"initContainers/0": full, "containers/0": full, "containers/1": full},
		},
		{
			name: "keeps what is set",
			req: plugintest.Request{Object: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
				"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "2"}}}]}}`},
			specPath: []string{"spec"},
			want: resources{"containers/0": {
				"requests": {"cpu": "2", "memory": "128Mi"},
				"limits":   {"memory": "256Mi"},
			}},
		},
		{
			name: "request capped at the container's limit",
			req: plugintest.Request{Object: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
				"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "50m", "memory": "64Mi"}}}]}}`},
			specPath: []string{"spec"},
			want: resources{"containers/0": {
				"requests": {"cpu": "50m", "memory": "64Mi"},
				"limits":   {"cpu": "50m", "memory": "64Mi"},
			}},
		},
		{
			name: "limit raised to the container's request",
			req: plugintest.Request{Object: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
				"spec": {"containers": [{"name": "a", "resources": {"requests": {"memory": "1Gi"}}}]}}`},
			specPath: []string{"spec"},
			want: resources{"containers/0": {
				"requests": {"cpu": "100m", "memory": "1Gi"},
				"limits":   {"memory": "1Gi"},
			}},
		},
		{
			name: "fully specified: no patch",
			req: plugintest.Request{Object: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
				"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}}]}}`},
		},
		{
			name: "deployment template",
			req: plugintest.Request{Object: `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
				"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}`},
			specPath: []string{"spec", "template", "spec"},
			want:     resources{"containers/0": full},
		},
		{
			name: "deployment update",
			req: plugintest.Request{Operation: sdk.Update,
				Object: `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
				"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}`,
				OldObject: `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}`},
			specPath: []string{"spec", "template", "spec"},
			want:     resources{"containers/0": full},
		},
		{
			name: "cronjob template",
			req: plugintest.Request{Object: `{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
				"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}}}`},
			specPath: []string{"spec", "jobTemplate", "spec", "template", "spec"},
			want:     resources{"containers/0": full},
		},
		{
			name: "statefulset, daemonset, replicaset, job",
			req: plugintest.Request{Object: `{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
				"spec": {"template": {"spec": {"containers": [{"name": "a", "resources": null}]}}}}`},
			specPath: []string{"spec", "template", "spec"},
			want:     resources{"containers/0": full},
		},
		{
			name: "pod update is left alone",
			req: plugintest.Request{Operation: sdk.Update,
				Object:    `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}`,
				OldObject: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}`},
		},
		{
			name: "other kinds are left alone",
			req:  plugintest.Request{Object: `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"containers": "x"}}`},
		},
		{
			name: "subresource is left alone",
			req: plugintest.Request{Operation: sdk.Update, SubResource: "status",
				Object: `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
				"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := h.Review(t, tt.req)
			if !got.Allowed {
				t.Fatalf("denied: %s", got.Message)
			}
			if tt.want == nil {
				if got.Patch != nil {
					t.Fatalf("patch %s, want none", got.Patch)
				}
				return
			}
			if got.Patched == nil {
				t.Fatal("no patch")
			}
			if r := containerResources(t, got.Patched, tt.specPath...); !reflect.DeepEqual(r, tt.want) {
				t.Fatalf("after patch %s: resources %v, want %v", got.Patch, r, tt.want)
			}
		})
	}
}

func TestOtherWorkloadKinds(t *testing.T) {
	h := plugintest.New(t, defaultresources.New(), defaultresources.Manifest(), `{"requests": {"cpu": "1"}}`, nil)
	for _, kind := range []string{"apps/v1 ReplicaSet", "apps/v1 DaemonSet", "batch/v1 Job", "v1 ReplicationController"} {
		apiVersion, k, _ := strings.Cut(kind, " ")
		t.Run(k, func(t *testing.T) {
			got := h.Review(t, plugintest.Request{Object: `{"apiVersion": "` + apiVersion + `", "kind": "` + k + `",
				"metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}`})
			r := containerResources(t, got.Patched, "spec", "template", "spec")
			if r["containers/0"]["requests"]["cpu"] != "1" {
				t.Fatalf("resources %v after patch %s, want requests.cpu 1", r, got.Patch)
			}
		})
	}
}
