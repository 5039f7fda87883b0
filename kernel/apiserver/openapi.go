package apiserver

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/handler3"
)

// OpenAPI. /openapi/v3 lists one document per group version
// (/openapi/v3/api/v1?hash=..., /openapi/v3/apis/apps/v1?hash=...); each
// has the resource paths (whose PATCH operations carry the fieldValidation
// parameter, which is how kubectl learns that the server validates fields
// itself and skips its client-side schema validation) and the schemas of
// the types (which kubectl explain renders). /openapi/v2 is the same in
// Swagger 2.0, as JSON or, when asked (kubectl's OpenAPISchema does),
// gnostic protobuf. Documents are built on first use.

// Content types of the protobuf documents, as kube-openapi returns them
// (clients ask with "@v1.0", which Go's mime parser rejects in a response).
const (
	mediaOpenAPIV2Proto = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
	mediaOpenAPIV3Proto = "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"
)

// openapiDocs are the rendered documents.
type openapiDocs struct {
	v2JSON, v2Proto []byte
	v3Root          []byte
	v3              map[string]*openapiDoc // by "api/v1", "apis/apps/v1"
}

type openapiDoc struct {
	json, proto []byte
	hash        string
}

func (s *Server) openapi() *openapiDocs {
	s.docsOnce.Do(func() { s.docs = s.buildOpenAPI() })
	return s.docs
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	docs := s.openapi()
	accept := r.Header.Get("Accept")
	switch p := strings.TrimSuffix(r.URL.Path, "/"); {
	case p == "/openapi/v2":
		if strings.Contains(accept, "application/com.github.proto-openapi.spec.v2") && docs.v2Proto != nil {
			writeDoc(w, mediaOpenAPIV2Proto, docs.v2Proto, "")
			return
		}
		writeDoc(w, mediaJSON, docs.v2JSON, "")
	case p == "/openapi/v3":
		writeDoc(w, mediaJSON, docs.v3Root, "")
	default:
		doc, ok := docs.v3[strings.TrimPrefix(p, "/openapi/v3/")]
		if !ok {
			writeStatus(w, notFoundPath().ErrStatus)
			return
		}
		if strings.Contains(accept, "application/com.github.proto-openapi.spec.v3") && doc.proto != nil {
			writeDoc(w, mediaOpenAPIV3Proto, doc.proto, doc.hash)
			return
		}
		writeDoc(w, mediaJSON, doc.json, doc.hash)
	}
}

func writeDoc(w http.ResponseWriter, contentType string, data []byte, etag string) {
	w.Header().Set("Content-Type", contentType)
	if etag != "" {
		w.Header().Set("Etag", `"`+etag+`"`)
		w.Header().Set("Cache-Control", "public, immutable")
	}
	_, _ = w.Write(data)
}

// buildOpenAPI renders every document. Rendering maps of plain values
// cannot fail; a failed protobuf conversion leaves only JSON.
func (s *Server) buildOpenAPI() *openapiDocs {
	docs := &openapiDocs{v3: map[string]*openapiDoc{}}
	root := handler3.OpenAPIV3Discovery{Paths: map[string]handler3.OpenAPIV3DiscoveryGroupVersion{}}
	for _, grp := range s.reg.groups {
		for _, v := range grp.versions {
			gv := schema.GroupVersion{Group: grp.name, Version: v}
			data, _ := json.Marshal(s.openapiDocument(true, []schema.GroupVersion{gv}))
			sum := sha512.Sum512(data)
			doc := &openapiDoc{json: data, hash: strings.ToUpper(hex.EncodeToString(sum[:16]))}
			if pb, err := handler3.ToV3ProtoBinary(data); err == nil {
				doc.proto = pb
			} else {
				s.log.Warn("openapi v3 protobuf", "groupVersion", gv.String(), "err", err)
			}
			key := gvPath(gv)
			docs.v3[key] = doc
			root.Paths[key] = handler3.OpenAPIV3DiscoveryGroupVersion{ServerRelativeURL: "/openapi/v3/" + key + "?hash=" + doc.hash}
		}
	}
	docs.v3Root, _ = json.Marshal(root)
	var all []schema.GroupVersion
	for _, grp := range s.reg.groups {
		for _, v := range grp.versions {
			all = append(all, schema.GroupVersion{Group: grp.name, Version: v})
		}
	}
	docs.v2JSON, _ = json.Marshal(s.openapiDocument(false, all))
	if d, err := openapi_v2.ParseDocument(docs.v2JSON); err == nil {
		docs.v2Proto, err = proto.Marshal(d)
		if err != nil {
			s.log.Warn("openapi v2 protobuf", "err", err)
		}
	} else {
		s.log.Warn("openapi v2 protobuf", "err", err)
	}
	return docs
}

// gvPath is "api/v1" or "apis/<group>/<version>".
func gvPath(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "api/" + gv.Version
	}
	return "apis/" + gv.Group + "/" + gv.Version
}

// openapiDocument renders the paths and schemas of some group versions in
// OpenAPI 3 (v3) or Swagger 2.
func (s *Server) openapiDocument(v3 bool, gvs []schema.GroupVersion) map[string]any {
	g := newSchemaGen(v3)
	pb := &pathBuilder{g: g, paths: map[string]any{}}
	for _, gv := range gvs {
		for _, res := range s.reg.resourcesOf(gv) {
			pb.resource(res)
		}
	}
	info := map[string]any{"title": "Kubernetes", "version": kubeVersion.GitVersion}
	if v3 {
		return map[string]any{"openapi": "3.0.0", "info": info, "paths": pb.paths,
			"components": map[string]any{"schemas": g.defs}}
	}
	return map[string]any{"swagger": "2.0", "info": info, "paths": pb.paths, "definitions": g.defs}
}

// pathBuilder renders the operations of resources.
type pathBuilder struct {
	g     *schemaGen
	paths map[string]any
}

var patchMediaTypes = []string{"application/json-patch+json", "application/merge-patch+json",
	"application/strategic-merge-patch+json", "application/apply-patch+yaml"}

func (pb *pathBuilder) resource(res *resource) {
	objType := reflect.TypeOf(res.newObj()).Elem()
	listType := reflect.TypeOf(res.newList()).Elem()
	gv := res.groupVersion()
	pb.g.addGVK(objType, gv.Group, gv.Version, res.gvk.Kind)
	pb.g.addGVK(listType, gv.Group, gv.Version, res.listKind())
	base := "/" + gvPath(gv)
	coll := base + "/" + res.plural
	if res.namespaced {
		pb.add(coll, map[string]any{"get": pb.op("list", res, res.gvk, listType, nil, nil)})
		coll = base + "/namespaces/{namespace}/" + res.plural
	}
	writeParams := []map[string]any{pb.qparam("dryRun"), pb.qparam("fieldManager"), pb.qparam("fieldValidation")}
	pb.add(coll, map[string]any{
		"get":    pb.op("list", res, res.gvk, listType, nil, nil),
		"post":   pb.op("post", res, res.gvk, objType, objType, writeParams),
		"delete": pb.op("deletecollection", res, res.gvk, reflect.TypeFor[metav1.Status](), reflect.TypeFor[metav1.DeleteOptions](), nil),
	})
	item := coll + "/{name}"
	pb.add(item, pb.itemOps(res, res.gvk, objType, writeParams, true))
	for _, sub := range res.subresources {
		switch sub {
		case subStatus:
			pb.add(item+"/status", pb.itemOps(res, res.gvk, objType, writeParams, false))
		case subScale:
			pb.add(item+"/scale", pb.itemOps(res, scaleGVK, reflect.TypeFor[autoscalingv1.Scale](), writeParams, false))
		case subBinding:
			pb.add(item+"/binding", map[string]any{
				"post": pb.op("post", res, gvCore.WithKind("Binding"), reflect.TypeFor[corev1.Binding](), reflect.TypeFor[corev1.Binding](), writeParams),
			})
		}
	}
}

func (pb *pathBuilder) itemOps(res *resource, gvk schema.GroupVersionKind, t reflect.Type, writeParams []map[string]any, deletable bool) map[string]any {
	patchParams := append(append([]map[string]any{}, writeParams...), pb.qparam("force"))
	ops := map[string]any{
		"get":   pb.op("get", res, gvk, t, nil, nil),
		"put":   pb.op("put", res, gvk, t, t, writeParams),
		"patch": pb.op("patch", res, gvk, t, reflect.TypeFor[metav1.Patch](), patchParams),
	}
	if deletable {
		ops["delete"] = pb.op("delete", res, gvk, reflect.TypeFor[metav1.Status](), reflect.TypeFor[metav1.DeleteOptions](), nil)
	}
	return ops
}

// add records a path item with its path parameters.
func (pb *pathBuilder) add(path string, ops map[string]any) {
	var params []any
	for _, p := range []string{"name", "namespace"} {
		if strings.Contains(path, "{"+p+"}") {
			params = append(params, pb.param(p, "path", p+" of the object", true))
		}
	}
	if len(params) > 0 {
		ops["parameters"] = params
	}
	pb.paths[path] = ops
}

// op renders one operation. body is the request body type (nil: none).
func (pb *pathBuilder) op(action string, res *resource, gvk schema.GroupVersionKind, resp, body reflect.Type, params []map[string]any) map[string]any {
	op := map[string]any{
		"operationId":                     action + strings.ReplaceAll(res.gvk.Group, ".", "") + res.gvk.Version + gvk.Kind,
		"x-kubernetes-action":             action,
		"x-kubernetes-group-version-kind": map[string]any{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind},
	}
	ps := make([]any, 0, len(params)+1)
	for _, p := range params {
		ps = append(ps, p)
	}
	consumes := []string{mediaJSON, mediaYAML, mediaProto}
	if action == "patch" {
		consumes = patchMediaTypes
	}
	respSchema := pb.g.typeSchema(resp)
	if pb.g.v3 {
		op["responses"] = map[string]any{"200": map[string]any{"description": "OK",
			"content": map[string]any{mediaJSON: map[string]any{"schema": respSchema}}}}
		if body != nil {
			content := map[string]any{}
			for _, c := range consumes {
				content[c] = map[string]any{"schema": pb.g.typeSchema(body)}
			}
			op["requestBody"] = map[string]any{"content": content, "required": action != "delete" && action != "deletecollection"}
		}
	} else {
		op["produces"] = []string{mediaJSON, mediaYAML}
		op["consumes"] = consumes
		op["responses"] = map[string]any{"200": map[string]any{"description": "OK", "schema": respSchema}}
		if body != nil {
			ps = append(ps, map[string]any{"name": "body", "in": "body", "required": action != "delete" && action != "deletecollection",
				"schema": pb.g.typeSchema(body)})
		}
	}
	if len(ps) > 0 {
		op["parameters"] = ps
	}
	return op
}

var paramDocs = map[string]string{
	"dryRun":          "When present, indicates that modifications should not be persisted. The only valid value is All.",
	"fieldManager":    "fieldManager is a name associated with the actor or entity that is making these changes.",
	"fieldValidation": "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default), Strict.",
	"force":           "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.",
}

func (pb *pathBuilder) qparam(name string) map[string]any {
	typ := "string"
	if name == "force" {
		typ = "boolean"
	}
	p := pb.param(name, "query", paramDocs[name], false)
	if pb.g.v3 {
		p["schema"] = map[string]any{"type": typ, "uniqueItems": true}
	} else {
		p["type"] = typ
	}
	return p
}

func (pb *pathBuilder) param(name, in, desc string, required bool) map[string]any {
	p := map[string]any{"name": name, "in": in, "description": desc}
	if required {
		p["required"] = true
	}
	if in == "path" {
		if pb.g.v3 {
			p["schema"] = map[string]any{"type": "string", "uniqueItems": true}
		} else {
			p["type"] = "string"
		}
	}
	return p
}
