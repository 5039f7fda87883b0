package apiserver_test

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/openapi3"
	"k8s.io/kube-openapi/pkg/spec3"
)

// TestOpenAPIV3 checks what kubectl needs: every group version is listed,
// the PATCH operation of each kind carries fieldValidation (so kubectl
// leaves validation to the server) and the schemas carry the GVK and the
// descriptions explain prints.
func TestOpenAPIV3(t *testing.T) {
	e := newEnv(t)
	dc, err := discovery.NewDiscoveryClientForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	root := openapi3.NewRoot(dc.OpenAPIV3())
	gvs, err := root.GroupVersions()
	if err != nil {
		t.Fatal(err)
	}
	if len(gvs) != 8 { // core, apps, autoscaling, batch, coordination, discovery, networking, scheduling
		t.Fatalf("group versions %v", gvs)
	}
	for _, gvk := range []schema.GroupVersionKind{
		{Version: "v1", Kind: "Pod"}, {Version: "v1", Kind: "Namespace"}, {Group: "apps", Version: "v1", Kind: "Deployment"},
		{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}, {Group: "autoscaling", Version: "v1", Kind: "Scale"},
	} {
		doc, err := root.GVSpec(gvk.GroupVersion())
		if gvk.Kind == "Scale" {
			doc, err = root.GVSpec(schema.GroupVersion{Group: "apps", Version: "v1"})
		}
		if err != nil {
			t.Fatalf("%v: %v", gvk, err)
		}
		if !patchHasParam(doc, gvk, "fieldValidation") {
			t.Errorf("%v: no PATCH operation with fieldValidation", gvk)
		}
	}
	doc, err := root.GVSpec(schema.GroupVersion{Group: "apps", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	dep := doc.Components.Schemas["io.k8s.api.apps.v1.Deployment"]
	if dep == nil || !strings.Contains(dep.Description, "Deployment") {
		t.Fatalf("Deployment schema %+v", dep)
	}
	var gvks []map[string]string
	if err := dep.Extensions.GetObject("x-kubernetes-group-version-kind", &gvks); err != nil || len(gvks) != 1 || gvks[0]["kind"] != "Deployment" {
		t.Fatalf("gvk extension %v (%v)", gvks, err)
	}
	spec := dep.Properties["spec"]
	if len(spec.AllOf) != 1 || spec.AllOf[0].Ref.String() != "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec" || spec.Description == "" {
		t.Fatalf("spec property %+v", spec)
	}
	ds := doc.Components.Schemas["io.k8s.api.apps.v1.DeploymentSpec"]
	if ds == nil || ds.Properties["replicas"].Type[0] != "integer" || !contains(ds.Required, "selector") || !contains(ds.Required, "template") {
		t.Fatalf("DeploymentSpec required %v", ds.Required)
	}
	ps := doc.Components.Schemas["io.k8s.api.core.v1.PodSpec"]
	containers := ps.Properties["containers"]
	if merge, _ := containers.Extensions.GetString("x-kubernetes-patch-merge-key"); merge != "name" {
		t.Fatalf("containers patch merge key %q", merge)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// patchHasParam mirrors kubectl's supportsQueryParamV3.
func patchHasParam(doc *spec3.OpenAPI, gvk schema.GroupVersionKind, param string) bool {
	for _, path := range doc.Paths.Paths {
		if path == nil || path.Patch == nil {
			continue
		}
		var got map[string]string
		if err := path.Patch.Extensions.GetObject("x-kubernetes-group-version-kind", &got); err != nil ||
			got["group"] != gvk.Group || got["version"] != gvk.Version || got["kind"] != gvk.Kind {
			continue
		}
		for _, p := range path.Patch.Parameters {
			if p.Name == param && p.In == "query" {
				return true
			}
		}
		return false
	}
	return false
}

func TestOpenAPIV2(t *testing.T) {
	e := newEnv(t)
	dc, err := discovery.NewDiscoveryClientForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// kubectl's client asks for gnostic protobuf.
	doc, err := dc.OpenAPISchema()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range doc.GetDefinitions().GetAdditionalProperties() {
		if d.GetName() == "io.k8s.api.core.v1.Pod" {
			found = d.GetValue().GetProperties() != nil
		}
	}
	if !found || doc.GetSwagger() != "2.0" {
		t.Fatalf("v2 document: swagger %q, Pod definition found %v", doc.GetSwagger(), found)
	}
	code, body, hdr := e.do(t, http.MethodGet, "/openapi/v2", "", nil, "Accept", "application/json")
	var v2 map[string]any
	if err := json.Unmarshal(body, &v2); err != nil || code != http.StatusOK || v2["swagger"] != "2.0" {
		t.Fatalf("v2 JSON: %d %v", code, err)
	}
	_, _, hdr = e.do(t, http.MethodGet, "/openapi/v2", "", nil, "Accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
	if _, _, err := mime.ParseMediaType(hdr.Get("Content-Type")); err != nil {
		t.Fatalf("protobuf content type %q does not parse: %v", hdr.Get("Content-Type"), err)
	}
	if code, _, _ := e.do(t, http.MethodGet, "/openapi/v3/apis/nope/v1", "", nil); code != http.StatusNotFound {
		t.Fatalf("unknown v3 document: %d", code)
	}
}
