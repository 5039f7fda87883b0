package podspec_test

import (
	"slices"
	"strconv"
	"testing"

	"github.com/tugboat-dev/tugboat/sdk/podspec"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

func TestFind(t *testing.T) {
	tmpl := `{"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}`
	tests := []struct {
		group, kind, obj string
		wantPath         []string
	}{
		{"", "Pod", `{"spec": {"containers": []}}`, []string{"spec"}},
		{"apps", "Deployment", tmpl, []string{"spec", "template", "spec"}},
		{"apps", "ReplicaSet", tmpl, []string{"spec", "template", "spec"}},
		{"apps", "StatefulSet", tmpl, []string{"spec", "template", "spec"}},
		{"apps", "DaemonSet", tmpl, []string{"spec", "template", "spec"}},
		{"batch", "Job", tmpl, []string{"spec", "template", "spec"}},
		{"", "ReplicationController", tmpl, []string{"spec", "template", "spec"}},
		{"", "PodTemplate", `{"template": {"spec": {}}}`, []string{"template", "spec"}},
		{"batch", "CronJob", `{"spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}}}`, []string{"spec", "jobTemplate", "spec", "template", "spec"}},
		{"", "Deployment", tmpl, nil},               // wrong group
		{"apps", "Deployment", `{"spec": {}}`, nil}, // no template
		{"apps", "Deployment", `{"spec": {"template": {"spec": null}}}`, nil},
		{"", "ConfigMap", `{"spec": {}}`, nil},
	}
	for _, tt := range tests {
		spec, path, ok := podspec.Find(tt.group, tt.kind, rawjson.Value(tt.obj))
		if ok != (tt.wantPath != nil) || !slices.Equal(path, tt.wantPath) || ok && spec.Kind() != rawjson.Object {
			t.Errorf("Find(%q, %q) = %s, %q, %v; want path %q", tt.group, tt.kind, spec, path, ok, tt.wantPath)
		}
	}
}

func TestEachContainer(t *testing.T) {
	spec := rawjson.Value(`{"ephemeralContainers": [{"name": "e"}], "containers": [{"name": "a"}, {"name": "b"}],
		"initContainers": [{"name": "i"}]}`)
	var all []string
	podspec.EachContainer(spec, nil, func(c podspec.Container) bool {
		all = append(all, c.Field+"/"+strconv.Itoa(c.Index)+"/"+c.Name)
		return true
	})
	if want := []string{"initContainers/0/i", "containers/0/a", "containers/1/b", "ephemeralContainers/0/e"}; !slices.Equal(all, want) {
		t.Errorf("all containers %q, want %q", all, want)
	}
	var some []string
	podspec.EachContainer(spec, []string{"containers"}, func(c podspec.Container) bool {
		some = append(some, c.Name)
		return false // stop after the first
	})
	if want := []string{"a"}; !slices.Equal(some, want) {
		t.Errorf("first of containers %q, want %q", some, want)
	}
}
