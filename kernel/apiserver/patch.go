package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/mergepatch"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Patches. JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic
// merge patch (with the typed object's patch strategy) are applied to the
// current object's JSON inside the guaranteed-update loop, so a lost race
// reapplies the patch to the newer version. A patch that sets
// metadata.resourceVersion makes it a precondition (409 on mismatch).
//
// application/apply-patch+yaml is a simplified server-side apply: it creates
// the object if absent, else merges the applied configuration into it like
// a strategic merge patch, and records a managedFields entry (operation
// Apply) for the fieldManager with the applied field set. Conflict detection
// between managers and removal of fields a manager stopped applying are not
// implemented (see RATIONALE.md, "Why a simplified server-side apply?").

// maxPatchOps bounds the operations of a JSON patch.
const maxPatchOps = 10000

// maxPatchCopyBytes bounds how much a JSON patch's copy operations may
// grow a document (each copy can double it: 30 copies of a 1 KiB object
// are a terabyte). json-patch v4 only has a process-wide setting; it is set
// once here, to Kubernetes' value (kube-apiserver sets the same global).
const maxPatchCopyBytes = 3 << 20

func init() {
	if jsonpatch.AccumulatedCopySizeLimit == 0 {
		jsonpatch.AccumulatedCopySizeLimit = maxPatchCopyBytes
	}
}

func patchTypeOf(r *http.Request) (types.PatchType, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", unsupportedPatchType(ct)
	}
	switch pt := types.PatchType(mt); pt {
	case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType, types.ApplyYAMLPatchType:
		return pt, nil
	}
	return "", unsupportedPatchType(ct)
}

func unsupportedPatchType(ct string) error {
	se := unsupportedMediaType(ct)
	se.ErrStatus.Message = fmt.Sprintf("the server does not support the patch type %q: supported are %q, %q, %q and %q",
		ct, types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType, types.ApplyYAMLPatchType)
	return se
}

// servePatch serves a PATCH of an object, its status or its scale.
func (s *Server) servePatch(w http.ResponseWriter, r *http.Request, req *request) {
	pt, err := patchTypeOf(r)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	opts, err := parseWriteOptions(req.query)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	mode, err := parseFieldValidation(req.query)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	if pt == types.ApplyYAMLPatchType {
		s.serveApply(w, r, req, opts, mode, body)
		return
	}
	if req.subresource == subScale {
		s.patchScale(w, r, req, opts, pt, body)
		return
	}
	var warnings []string
	st, err := s.guaranteedUpdate(r.Context(), req, opts, func(cur runtime.Object) (runtime.Object, error) {
		obj, warns, err := patchObject(req.res, cur, pt, body, mode)
		warnings = warns
		return obj, err
	})
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	addWarnings(w, warnings)
	s.writeObject(w, r, req, http.StatusOK, outJSON, st)
}

// patchObject applies a patch to cur and decodes the result. An unchanged
// resourceVersion is cleared so that a lost race retries instead of
// failing.
func patchObject(res *resource, cur runtime.Object, pt types.PatchType, patch []byte, mode string) (runtime.Object, []string, error) {
	curJSON, err := json.Marshal(cur)
	if err != nil {
		return nil, nil, apierrors.NewInternalError(err)
	}
	patched, err := applyPatch(pt, curJSON, patch, res.newObj())
	if err != nil {
		return nil, nil, err
	}
	obj, warnings, err := decodeObject(patched, res.gvk, res.newObj, mode)
	if err != nil {
		return nil, nil, err
	}
	m := accessor(obj)
	if m.GetResourceVersion() == accessor(cur).GetResourceVersion() {
		m.SetResourceVersion("")
	}
	return obj, warnings, nil
}

// applyPatch applies a JSON, merge or strategic merge patch to a JSON
// document; typed is a value of the type for strategic merge. Bad patches are
// 400 (malformed) or 422 (not applicable), as in Kubernetes.
func applyPatch(pt types.PatchType, doc, patch []byte, typed runtime.Object) ([]byte, error) {
	switch pt {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		if len(p) > maxPatchOps {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the allowed maximum operations in a JSON patch is %d, got %d", maxPatchOps, len(p)))
		}
		out, err := p.Apply(doc)
		var sizeErr *jsonpatch.AccumulatedCopySizeError
		if errors.As(err, &sizeErr) {
			return nil, apierrors.NewRequestEntityTooLargeError(err.Error())
		}
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
		}
		return out, nil
	case types.MergePatchType:
		if !json.Valid(patch) {
			return nil, apierrors.NewBadRequest("merge patch is not valid JSON")
		}
		out, err := jsonpatch.MergePatch(doc, patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		return out, nil
	case types.StrategicMergePatchType:
		var m map[string]any
		if err := json.Unmarshal(patch, &m); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("strategic merge patch is not a JSON object: %v", err))
		}
		out, err := strategicpatch.StrategicMergePatch(doc, patch, typed)
		if err != nil {
			if errors.Is(err, mergepatch.ErrBadJSONDoc) || errors.Is(err, mergepatch.ErrNoListOfLists) {
				return nil, apierrors.NewBadRequest(err.Error())
			}
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
		}
		return out, nil
	}
	return nil, unsupportedPatchType(string(pt))
}

// patchScale patches the Scale view of an object and writes its replicas.
func (s *Server) patchScale(w http.ResponseWriter, r *http.Request, req *request, opts writeOptions, pt types.PatchType, body []byte) {
	cur, err := s.currentScale(r.Context(), req)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	curJSON, _ := json.Marshal(cur)
	patched, err := applyPatch(pt, curJSON, body, &autoscalingv1.Scale{})
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	next, _, err := decodeObject(patched, scaleGVK, func() runtime.Object { return &autoscalingv1.Scale{} }, validationIgnore)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	sc := next.(*autoscalingv1.Scale)
	if sc.ResourceVersion == cur.ResourceVersion {
		sc.ResourceVersion = ""
	}
	s.applyScale(w, r, req, opts, sc)
}

// serveApply serves application/apply-patch+yaml: create when absent, else
// merge the applied configuration.
func (s *Server) serveApply(w http.ResponseWriter, r *http.Request, req *request, opts writeOptions, mode string, body []byte) {
	if opts.fieldManager == "" {
		s.writeError(w, r, req, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("PatchOptions").GroupKind(), "",
			field.ErrorList{field.Required(field.NewPath("fieldManager"), "is required for apply patch")}))
		return
	}
	if req.subresource != "" {
		s.writeError(w, r, req, methodNotAllowed(req, "apply to a subresource"))
		return
	}
	applied, err := yaml.YAMLToJSONStrict(body)
	if err != nil {
		s.writeError(w, r, req, apierrors.NewBadRequest(fmt.Sprintf("decode apply configuration: %v", err)))
		return
	}
	cfg, warnings, err := decodeObject(applied, req.res.gvk, req.res.newObj, mode)
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	if err := checkApplyConfig(req, applied, cfg); err != nil {
		s.writeError(w, r, req, err)
		return
	}
	fields := fieldSet(applied)
	opts.apply = true
	st, err := s.guaranteedUpdate(r.Context(), req, opts, func(cur runtime.Object) (runtime.Object, error) {
		obj, _, err := patchObject(req.res, cur, types.StrategicMergePatchType, stripManaged(applied), validationIgnore)
		if err == nil {
			recordApply(obj, opts.fieldManager, fields, req.res)
		}
		return obj, err
	})
	code := http.StatusOK
	if errors.Is(err, errdefs.ErrNotFound) {
		code = http.StatusCreated
		recordApply(cfg, opts.fieldManager, fields, req.res)
		st, err = s.createObject(r.Context(), req, cfg, opts)
	}
	if err != nil {
		s.writeError(w, r, req, err)
		return
	}
	addWarnings(w, warnings)
	s.writeObject(w, r, req, code, outJSON, st)
}

func checkApplyConfig(req *request, raw []byte, cfg runtime.Object) error {
	var tm metav1.TypeMeta
	_ = json.Unmarshal(raw, &tm)
	if tm.APIVersion == "" || tm.Kind == "" {
		return apierrors.NewBadRequest("apply configuration must set apiVersion and kind")
	}
	if name := accessor(cfg).GetName(); name != req.name {
		return apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", name, req.name))
	}
	return checkNamespace(req, cfg)
}

// stripManaged removes metadata.managedFields from an applied
// configuration (it is server-maintained).
func stripManaged(applied []byte) []byte {
	var m map[string]any
	if json.Unmarshal(applied, &m) != nil {
		return applied
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
		delete(md, "resourceVersion")
	}
	out, err := json.Marshal(m)
	if err != nil {
		return applied
	}
	return out
}

// recordApply sets the Apply entry of manager in obj's managedFields.
func recordApply(obj runtime.Object, manager string, fields *metav1.FieldsV1, res *resource) {
	setManagedEntry(obj, metav1.ManagedFieldsEntry{
		Manager: manager, Operation: metav1.ManagedFieldsOperationApply, APIVersion: res.apiVersion(),
		Time: ptrTime(metav1.NewTime(time.Now().Truncate(time.Second))), FieldsType: "FieldsV1", FieldsV1: fields,
	})
}

// recordManager sets an Update entry for manager (writes other than apply
// with a fieldManager). Its field set is not tracked.
func recordManager(obj runtime.Object, manager, subresource string) {
	if manager == "" {
		return
	}
	setManagedEntry(obj, metav1.ManagedFieldsEntry{
		Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, Subresource: subresource,
		APIVersion: obj.GetObjectKind().GroupVersionKind().GroupVersion().String(),
		Time:       ptrTime(metav1.NewTime(time.Now().Truncate(time.Second))), FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte("{}")},
	})
}

// setManagedEntry replaces manager's entry of the same operation; an entry
// with the same field set is kept as is, so a repeated write is a no-op.
func setManagedEntry(obj runtime.Object, e metav1.ManagedFieldsEntry) {
	m := accessor(obj)
	for _, x := range m.GetManagedFields() {
		if x.Manager == e.Manager && x.Operation == e.Operation && x.Subresource == e.Subresource &&
			x.APIVersion == e.APIVersion && x.FieldsV1 != nil && e.FieldsV1 != nil && string(x.FieldsV1.Raw) == string(e.FieldsV1.Raw) {
			return
		}
	}
	entries := slices.DeleteFunc(slices.Clone(m.GetManagedFields()), func(x metav1.ManagedFieldsEntry) bool {
		return x.Manager == e.Manager && x.Operation == e.Operation && x.Subresource == e.Subresource
	})
	m.SetManagedFields(append(entries, e))
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

// fieldSet renders the fields of an applied configuration in the FieldsV1
// format ("f:<name>" for fields, "k:{...}" for list items keyed by name).
func fieldSet(applied []byte) *metav1.FieldsV1 {
	var v any
	if json.Unmarshal(applied, &v) != nil {
		return nil
	}
	set := fieldsOf(v)
	if m, ok := set.(map[string]any); ok {
		delete(m, "f:apiVersion")
		delete(m, "f:kind")
		if md, ok := m["f:metadata"].(map[string]any); ok {
			delete(md, "f:name")
			delete(md, "f:namespace")
			delete(md, "f:managedFields")
			delete(md, "f:resourceVersion")
		}
	}
	raw, err := json.Marshal(set)
	if err != nil {
		return nil
	}
	return &metav1.FieldsV1{Raw: raw}
}

func fieldsOf(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, val := range x {
			out["f:"+k] = fieldsOf(val)
		}
		return out
	case []any:
		out := map[string]any{}
		for _, item := range x {
			m, ok := item.(map[string]any)
			name, named := m["name"].(string)
			if !ok || !named {
				continue
			}
			key, _ := json.Marshal(map[string]string{"name": name})
			out["k:"+string(key)] = fieldsOf(item)
		}
		return out
	}
	return map[string]any{}
}
