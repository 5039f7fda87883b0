package apiserver_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/restmapper"
)

func TestDiscoveryClient(t *testing.T) {
	e := newEnv(t)
	dc, err := discovery.NewDiscoveryClientForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, resources, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range groups {
		names = append(names, g.Name)
	}
	for _, want := range []string{"", "apps", "batch", "coordination.k8s.io", "discovery.k8s.io", "autoscaling", "networking.k8s.io"} {
		if !slices.Contains(names, want) {
			t.Errorf("group %q missing from %v", want, names)
		}
	}
	found := map[string]metav1.APIResource{}
	for _, rl := range resources {
		for _, r := range rl.APIResources {
			found[rl.GroupVersion+"/"+r.Name] = r
		}
	}
	checks := []struct {
		key        string
		kind       string
		namespaced bool
		short      string
		verb       string
	}{
		{"v1/pods", "Pod", true, "po", "watch"},
		{"v1/pods/status", "Pod", true, "", "patch"},
		{"v1/pods/binding", "Binding", true, "", "create"},
		{"v1/nodes", "Node", false, "no", "deletecollection"},
		{"v1/namespaces", "Namespace", false, "ns", "create"},
		{"apps/v1/deployments", "Deployment", true, "deploy", "patch"},
		{"apps/v1/deployments/scale", "Scale", true, "", "update"},
		{"apps/v1/statefulsets", "StatefulSet", true, "sts", "list"},
		{"autoscaling/v2/horizontalpodautoscalers", "HorizontalPodAutoscaler", true, "hpa", "get"},
		{"batch/v1/cronjobs", "CronJob", true, "cj", "get"},
	}
	for _, c := range checks {
		r, ok := found[c.key]
		if !ok {
			t.Errorf("%s not discovered", c.key)
			continue
		}
		if r.Kind != c.kind || r.Namespaced != c.namespaced || !slices.Contains(r.Verbs, c.verb) ||
			(c.short != "" && !slices.Contains(r.ShortNames, c.short)) {
			t.Errorf("%s: %+v", c.key, r)
		}
	}
	if r := found["apps/v1/deployments/scale"]; r.Group != "autoscaling" || r.Version != "v1" {
		t.Errorf("scale subresource kind group/version %q/%q, want autoscaling/v1", r.Group, r.Version)
	}
	// A REST mapper built from discovery resolves short names as kubectl does.
	grs, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewShortcutExpander(restmapper.NewDiscoveryRESTMapper(grs), dc, nil)
	gvr, err := mapper.ResourceFor(schema.GroupVersionResource{Resource: "deploy"})
	if err != nil || gvr != (schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}) {
		t.Fatalf("deploy maps to %v (%v)", gvr, err)
	}
}

func TestAggregatedDiscovery(t *testing.T) {
	e := newEnv(t)
	accept := "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
	for _, path := range []string{"/api", "/apis"} {
		code, body, hdr := e.do(t, http.MethodGet, path, "", nil, "Accept", accept)
		if code != http.StatusOK || !strings.Contains(hdr.Get("Content-Type"), "as=APIGroupDiscoveryList") {
			t.Fatalf("%s: %d %s", path, code, hdr.Get("Content-Type"))
		}
		var list apidiscoveryv2.APIGroupDiscoveryList
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		if list.Kind != "APIGroupDiscoveryList" || len(list.Items) == 0 {
			t.Fatalf("%s: %+v", path, list.TypeMeta)
		}
		if path == "/api" && (len(list.Items) != 1 || list.Items[0].Name != "" || list.Items[0].Versions[0].Version != "v1") {
			t.Fatalf("/api lists %+v", list.Items)
		}
	}
	// Plain JSON discovery is served to clients that do not ask for v2.
	code, body, _ := e.do(t, http.MethodGet, "/apis", "", nil, "Accept", "application/json")
	var groups metav1.APIGroupList
	if err := json.Unmarshal(body, &groups); err != nil || code != http.StatusOK || groups.Kind != "APIGroupList" {
		t.Fatalf("/apis legacy: %d %v %s", code, err, body)
	}
	code, body, _ = e.do(t, http.MethodGet, "/apis/apps", "", nil)
	var grp metav1.APIGroup
	if err := json.Unmarshal(body, &grp); err != nil || code != http.StatusOK || grp.PreferredVersion.GroupVersion != "apps/v1" {
		t.Fatalf("/apis/apps: %d %v %s", code, err, body)
	}
	if code, _, _ := e.do(t, http.MethodGet, "/apis/nope/v1", "", nil); code != http.StatusNotFound {
		t.Fatalf("unknown group version: %d", code)
	}
}

func TestVersionAndHealth(t *testing.T) {
	e := newEnv(t)
	dc, err := discovery.NewDiscoveryClientForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Major != "1" || v.Minor == "" || !strings.HasPrefix(v.GitVersion, "v1.") {
		t.Fatalf("version %+v", v)
	}
	if _, err := utilversion.ParseSemantic(v.GitVersion); err != nil {
		t.Fatalf("gitVersion %q is not semantic: %v", v.GitVersion, err)
	}
	for _, p := range []string{"/healthz", "/livez", "/readyz", "/readyz/ping", "/readyz?verbose"} {
		code, body, _ := e.do(t, http.MethodGet, p, "", nil)
		if code != http.StatusOK || !strings.Contains(string(body), "ok") {
			t.Errorf("%s: %d %q", p, code, body)
		}
	}
	e.api.Close()
	if code, _, _ := e.do(t, http.MethodGet, "/readyz", "", nil); code != http.StatusInternalServerError {
		t.Fatalf("readyz after Close: %d", code)
	}
	if code, _, _ := e.do(t, http.MethodGet, "/livez", "", nil); code != http.StatusOK {
		t.Fatalf("livez after Close: %d", code)
	}
}
