package apiserver

import (
	"reflect"
	"slices"
	"strings"

	kresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// schemaGen derives OpenAPI schemas from the k8s.io/api Go types by
// reflection: json tags give the property names, the types' SwaggerDoc()
// the descriptions (the same text Kubernetes publishes), patchStrategy and
// patchMergeKey tags the strategic-merge extensions. Named structs become
// definitions referenced by "$ref", named like Kubernetes'
// (io.k8s.api.core.v1.Pod). A field is required when its json tag has no
// omitempty, which matches Kubernetes' +optional
// markers for the built-in types closely enough for explain.
type schemaGen struct {
	v3   bool // OpenAPI 3 (refs under components, wrapped in allOf) or Swagger 2
	defs map[string]map[string]any
}

func newSchemaGen(v3 bool) *schemaGen {
	return &schemaGen{v3: v3, defs: map[string]map[string]any{}}
}

func (g *schemaGen) refPrefix() string {
	if g.v3 {
		return "#/components/schemas/"
	}
	return "#/definitions/"
}

// special types whose JSON form is not their Go structure.
var specialSchemas = map[reflect.Type]map[string]any{
	reflect.TypeFor[metav1.Time]():          {"type": "string", "format": "date-time"},
	reflect.TypeFor[metav1.MicroTime]():     {"type": "string", "format": "date-time"},
	reflect.TypeFor[metav1.Duration]():      {"type": "string"},
	reflect.TypeFor[kresource.Quantity]():   {"type": "string", "x-kubernetes-int-or-string": true},
	reflect.TypeFor[intstr.IntOrString]():   {"type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": true},
	reflect.TypeFor[runtime.RawExtension](): {"type": "object"},
	reflect.TypeFor[metav1.FieldsV1]():      {"type": "object"},
}

// defName is Kubernetes' definition name of a named type:
// k8s.io/api/core/v1.Pod -> io.k8s.api.core.v1.Pod.
func defName(t reflect.Type) string {
	host, rest, _ := strings.Cut(t.PkgPath(), "/")
	parts := strings.Split(host, ".")
	slices.Reverse(parts)
	name := strings.Join(parts, ".")
	if rest != "" {
		name += "." + strings.ReplaceAll(rest, "/", ".")
	}
	return name + "." + t.Name()
}

// ref returns a reference to t's definition, defining it on first use.
func (g *schemaGen) ref(t reflect.Type) map[string]any {
	name := defName(t)
	if _, ok := g.defs[name]; !ok {
		g.defs[name] = map[string]any{} // placeholder against recursion
		g.defs[name] = g.structSchema(t)
	}
	return map[string]any{"$ref": g.refPrefix() + name}
}

// typeSchema is the schema of a field of type t.
func (g *schemaGen) typeSchema(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := specialSchemas[t]; ok {
		name := defName(t)
		if _, ok := g.defs[name]; !ok {
			def := map[string]any{}
			for k, v := range s {
				def[k] = v
			}
			if d := typeDoc(t)[""]; d != "" {
				def["description"] = d
			}
			g.defs[name] = def
		}
		return map[string]any{"$ref": g.refPrefix() + name}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int32, reflect.Uint32, reflect.Int16, reflect.Uint16, reflect.Int8, reflect.Uint8:
		return map[string]any{"type": "integer", "format": "int32"}
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number", "format": "double"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": g.typeSchema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.typeSchema(t.Elem())}
	case reflect.Struct:
		if t.Name() == "" {
			return g.structSchema(t)
		}
		return g.ref(t)
	}
	return map[string]any{"type": "object"}
}

// structSchema is the object schema of a struct type.
func (g *schemaGen) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	g.addFields(t, props, &required)
	s := map[string]any{"type": "object", "properties": props}
	if d := typeDoc(t)[""]; d != "" {
		s["description"] = d
	}
	if len(required) > 0 {
		slices.Sort(required)
		s["required"] = required
	}
	return s
}

func (g *schemaGen) addFields(t reflect.Type, props map[string]any, required *[]string) {
	docs := typeDoc(t)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			g.addFields(ft, props, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		prop := g.typeSchema(f.Type)
		if d := docs[name]; d != "" {
			prop = g.describe(prop, d)
		}
		if ps := f.Tag.Get("patchStrategy"); ps != "" {
			prop["x-kubernetes-patch-strategy"] = ps
		}
		if pk := f.Tag.Get("patchMergeKey"); pk != "" {
			prop["x-kubernetes-patch-merge-key"] = pk
		}
		props[name] = prop
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			*required = append(*required, name)
		}
	}
}

// describe attaches a description; in OpenAPI 3 a $ref ignores siblings,
// so the reference moves into allOf (as Kubernetes publishes it).
func (g *schemaGen) describe(prop map[string]any, desc string) map[string]any {
	if ref, ok := prop["$ref"]; ok && g.v3 {
		return map[string]any{"allOf": []any{map[string]any{"$ref": ref}}, "description": desc}
	}
	out := map[string]any{"description": desc}
	for k, v := range prop {
		out[k] = v
	}
	return out
}

// typeDoc returns a type's SwaggerDoc() field descriptions ("" is the
// type's own description).
func typeDoc(t reflect.Type) map[string]string {
	if t.Kind() != reflect.Struct {
		return nil
	}
	if d, ok := reflect.New(t).Interface().(interface{ SwaggerDoc() map[string]string }); ok {
		return d.SwaggerDoc()
	}
	return nil
}

// addGVK tags a definition with the kinds it serves as.
func (g *schemaGen) addGVK(t reflect.Type, group, version, kind string) {
	g.ref(t)
	def := g.defs[defName(t)]
	gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
	def["x-kubernetes-group-version-kind"] = append(gvks, map[string]any{"group": group, "version": version, "kind": kind})
}
