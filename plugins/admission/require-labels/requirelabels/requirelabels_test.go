package requirelabels_test

import (
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/admission/require-labels/requirelabels"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

func TestConfigure(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		wantErr  string // substring; "" = valid
	}{
		{"one label", `{"labels": ["team"]}`, ""},
		{"prefixed label", `{"labels": ["app.kubernetes.io/name", "team"]}`, ""},
		{"duplicates collapse", `{"labels": ["team", "team"]}`, ""},
		{"yaml", "labels:\n- team\n", ""},
		{"no settings", ``, `"labels" is required`},
		{"null", `null`, `"labels" is required`},
		{"empty object", `{}`, "at least one label"},
		{"empty list", `{"labels": []}`, "at least one label"},
		{"not a list", `{"labels": "team"}`, "must be a list of strings"},
		{"non-string", `{"labels": ["team", 7]}`, "labels[1] must be a string"},
		{"invalid key", `{"labels": ["Team Name"]}`, `"Team Name" is not a valid label key`},
		{"unknown field", `{"labels": ["team"], "label": ["x"]}`, `unknown field "label"`},
		{"not an object", `["team"]`, "must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := plugintest.Configure(t, requirelabels.New(), requirelabels.Manifest(), tt.settings)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Configure(%s) = %v, want nil", tt.settings, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Configure(%s) = %v, want an error containing %q", tt.settings, err, tt.wantErr)
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	h := plugintest.New(t, requirelabels.New(), requirelabels.Manifest(), `{"labels": ["team", "app.kubernetes.io/name"]}`, nil)
	tests := []struct {
		name        string
		req         plugintest.Request
		wantAllowed bool
		wantMessage string
	}{
		{
			name: "all labels",
			req: plugintest.Request{Object: `{"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": {"name": "c", "namespace": "default", "labels": {"team": "a", "app.kubernetes.io/name": "x"}}}`},
			wantAllowed: true,
		},
		{
			name: "empty value counts",
			req: plugintest.Request{Object: `{"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": {"name": "c", "labels": {"team": "", "app.kubernetes.io/name": ""}}}`},
			wantAllowed: true,
		},
		{
			name: "one missing",
			req: plugintest.Request{Object: `{"apiVersion": "apps/v1", "kind": "Deployment",
				"metadata": {"name": "d", "labels": {"app.kubernetes.io/name": "x"}}}`},
			wantMessage: "missing required label(s): team",
		},
		{
			name:        "no labels at all",
			req:         plugintest.Request{Object: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}`},
			wantMessage: "missing required label(s): team, app.kubernetes.io/name",
		},
		{
			name: "labels null",
			req: plugintest.Request{Object: `{"apiVersion": "v1", "kind": "Pod",
				"metadata": {"name": "p", "labels": null}}`},
			wantMessage: "missing required label(s): team, app.kubernetes.io/name",
		},
		{
			name: "label in an annotation does not count",
			req: plugintest.Request{Object: `{"apiVersion": "v1", "kind": "Pod",
				"metadata": {"name": "p", "annotations": {"team": "a", "app.kubernetes.io/name": "x"}}}`},
			wantMessage: "missing required label(s): team, app.kubernetes.io/name",
		},
		{
			name: "update checks the new object",
			req: plugintest.Request{Operation: sdk.Update,
				Object:    `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"team": "a"}}}`,
				OldObject: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"team": "a", "app.kubernetes.io/name": "x"}}}`},
			wantMessage: "missing required label(s): app.kubernetes.io/name",
		},
		{
			name: "delete allowed",
			req: plugintest.Request{Operation: sdk.Delete,
				OldObject: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}`},
			wantAllowed: true,
		},
		{
			name: "status subresource allowed",
			req: plugintest.Request{Operation: sdk.Update, SubResource: "status",
				Object: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}`},
			wantAllowed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := h.Review(t, tt.req)
			if got.Allowed != tt.wantAllowed || got.Message != tt.wantMessage {
				t.Fatalf("Review = allowed %v message %q, want allowed %v message %q",
					got.Allowed, got.Message, tt.wantAllowed, tt.wantMessage)
			}
			if !got.Allowed && got.Code != 403 {
				t.Errorf("denial code = %d, want 403", got.Code)
			}
			if got.Patch != nil {
				t.Errorf("validating plugin returned a patch: %s", got.Patch)
			}
		})
	}
}

func TestAdmitUnconfigured(t *testing.T) {
	_, err := requirelabels.New().Admit(&sdk.AdmissionRequest{Operation: sdk.Create, Object: []byte(`{"metadata":{}}`)})
	if err == nil {
		t.Fatal("Admit on an unconfigured plugin: want an error")
	}
}

func TestManyLabels(t *testing.T) {
	// More than 64 required labels takes the lookup-per-label path.
	var labels, present []string
	for i := range 70 {
		l := "l" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + "-" + string(rune('0'+i/26))
		labels = append(labels, `"`+l+`"`)
		if i != 66 {
			present = append(present, `"`+l+`": "v"`)
		}
	}
	h := plugintest.New(t, requirelabels.New(), requirelabels.Manifest(), `{"labels": [`+strings.Join(labels, ",")+`]}`, nil)
	got := h.Review(t, plugintest.Request{Object: `{"apiVersion": "v1", "kind": "Pod",
		"metadata": {"name": "p", "labels": {` + strings.Join(present, ",") + `}}}`})
	want := "missing required label(s): " + strings.Trim(labels[66], `"`)
	if got.Allowed || got.Message != want {
		t.Fatalf("Review = allowed %v %q, want denied %q", got.Allowed, got.Message, want)
	}
}

func TestValidLabelKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"team", true},
		{"Team_1.x-y", true},
		{"app.kubernetes.io/name", true},
		{"a/b", true},
		{"", false},
		{"-team", false},
		{"team-", false},
		{"team name", false},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"/name", false},
		{"Example.com/name", false},
		{"example..com/name", false},
		{"example.com/", false},
		{"a/b/c", false},
	}
	for _, tt := range tests {
		if got := requirelabels.ValidLabelKey(tt.key); got != tt.want {
			t.Errorf("ValidLabelKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}
