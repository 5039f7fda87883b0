package denyprivileged_test

import (
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/admission/deny-privileged/denyprivileged"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

func TestConfigure(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		wantErr  string
	}{
		{"none", ``, ""},
		{"empty", `{}`, ""},
		{"all", `{"allowPrivileged": true, "allowPrivilegeEscalation": true, "allowHostNetwork": true,
			"allowHostPID": false, "allowHostIPC": false, "exemptNamespaces": ["kube-system"]}`, ""},
		{"not a bool", `{"allowHostNetwork": "yes"}`, "allowHostNetwork must be true or false"},
		{"unknown field", `{"allowHostPorts": true}`, `unknown field "allowHostPorts"`},
		{"namespaces not a list", `{"exemptNamespaces": "kube-system"}`, "exemptNamespaces must be a list of strings"},
		{"empty namespace", `{"exemptNamespaces": ["a", ""]}`, "exemptNamespaces[1] must be a non-empty string"},
		{"not an object", `true`, "must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := plugintest.Configure(t, denyprivileged.New(), denyprivileged.Manifest(), tt.settings)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Configure(%s) = %v, want nil", tt.settings, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Configure(%s) = %v, want an error containing %q", tt.settings, err, tt.wantErr)
			}
		})
	}
}

func pod(ns, spec string) string {
	return `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "` + ns + `"}, "spec": ` + spec + `}`
}

func TestAdmit(t *testing.T) {
	strict := plugintest.New(t, denyprivileged.New(), denyprivileged.Manifest(), `{"exemptNamespaces": ["kube-system"]}`, nil)
	lenient := plugintest.New(t, denyprivileged.New(), denyprivileged.Manifest(),
		`{"allowHostNetwork": true, "allowPrivilegeEscalation": true}`, nil)
	tests := []struct {
		name        string
		h           *plugintest.Harness
		req         plugintest.Request
		wantMessage string // "" = allowed
	}{
		{"plain pod", strict, plugintest.Request{Object: pod("default", `{"containers": [{"name": "a", "securityContext": {"privileged": false}}]}`)}, ""},
		{"privileged container", strict, plugintest.Request{Object: pod("default",
			`{"containers": [{"name": "a"}, {"name": "b", "securityContext": {"privileged": true}}]}`)},
			`container "b" must not be privileged`},
		{"privileged init container", strict, plugintest.Request{Object: pod("default",
			`{"initContainers": [{"name": "i", "securityContext": {"privileged": true}}], "containers": [{"name": "a"}]}`)},
			`init container "i" must not be privileged`},
		{"escalation", strict, plugintest.Request{Object: pod("default",
			`{"containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": true}}]}`)},
			`container "a" must not allow privilege escalation`},
		{"escalation allowed", lenient, plugintest.Request{Object: pod("default",
			`{"containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": true}}]}`)}, ""},
		{"host namespaces", strict, plugintest.Request{Object: pod("default",
			`{"hostNetwork": true, "hostPID": true, "hostIPC": true, "containers": [{"name": "a"}]}`)},
			"hostNetwork is not allowed; hostPID is not allowed; hostIPC is not allowed"},
		{"host namespaces false", strict, plugintest.Request{Object: pod("default",
			`{"hostNetwork": false, "hostPID": false, "containers": [{"name": "a"}]}`)}, ""},
		{"host network allowed, pid not", lenient, plugintest.Request{Object: pod("default",
			`{"hostNetwork": true, "hostPID": true, "containers": [{"name": "a"}]}`)}, "hostPID is not allowed"},
		{"everything at once", strict, plugintest.Request{Object: pod("default",
			`{"hostNetwork": true, "containers": [{"name": "a", "securityContext": {"privileged": true, "allowPrivilegeEscalation": true}}]}`)},
			`hostNetwork is not allowed; container "a" must not be privileged; container "a" must not allow privilege escalation`},
		{"exempt namespace", strict, plugintest.Request{Object: pod("kube-system",
			`{"hostNetwork": true, "containers": [{"name": "a", "securityContext": {"privileged": true}}]}`)}, ""},
		{"deployment template", strict, plugintest.Request{Object: `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
			"spec": {"template": {"spec": {"hostIPC": true, "containers": [{"name": "a"}]}}}}`}, "hostIPC is not allowed"},
		{"cronjob template", strict, plugintest.Request{Object: `{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
			"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "securityContext": {"privileged": true}}]}}}}}}`},
			`container "a" must not be privileged`},
		{"ephemeral container via subresource", strict, plugintest.Request{Operation: sdk.Update, SubResource: "ephemeralcontainers",
			Object:    pod("default", `{"containers": [{"name": "a"}], "ephemeralContainers": [{"name": "dbg", "securityContext": {"privileged": true}}]}`),
			OldObject: pod("default", `{"containers": [{"name": "a"}]}`)},
			`ephemeral container "dbg" must not be privileged`},
		{"update with unchanged spec", strict, plugintest.Request{Operation: sdk.Update,
			Object:    pod("default", `{"hostNetwork": true, "containers": [{"name": "a"}]}`),
			OldObject: pod("default", `{"hostNetwork": true, "containers": [{"name": "a"}]}`)}, ""},
		{"update that adds privilege", strict, plugintest.Request{Operation: sdk.Update,
			Object:    pod("default", `{"hostNetwork": true, "containers": [{"name": "a"}]}`),
			OldObject: pod("default", `{"containers": [{"name": "a"}]}`)}, "hostNetwork is not allowed"},
		{"status update", strict, plugintest.Request{Operation: sdk.Update, SubResource: "status",
			Object: pod("default", `{"hostNetwork": true, "containers": [{"name": "a"}]}`)}, ""},
		{"delete", strict, plugintest.Request{Operation: sdk.Delete,
			OldObject: pod("default", `{"hostNetwork": true, "containers": [{"name": "a"}]}`)}, ""},
		{"other kind", strict, plugintest.Request{Object: `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
			"data": {"hostNetwork": "true"}}`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.Review(t, tt.req)
			if tt.wantMessage == "" {
				if !got.Allowed {
					t.Fatalf("denied: %s", got.Message)
				}
				return
			}
			if got.Allowed || got.Message != tt.wantMessage || got.Code != 403 {
				t.Fatalf("allowed %v code %d message %q, want denied (403) with %q", got.Allowed, got.Code, got.Message, tt.wantMessage)
			}
		})
	}
}

func TestDefaultsDenyEverything(t *testing.T) {
	// An unconfigured plugin (no settings) is the strictest.
	h := plugintest.New(t, denyprivileged.New(), denyprivileged.Manifest(), "", nil)
	got := h.Review(t, plugintest.Request{Object: pod("kube-system", `{"hostPID": true, "containers": [{"name": "a"}]}`)})
	if got.Allowed {
		t.Fatal("hostPID allowed without settings")
	}
}
