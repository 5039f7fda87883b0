package sdk

import (
	"errors"
	"strconv"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// KindController is the Manifest kind of controllers.
const KindController = hostapi.KindController

// Controller types (hostapi).
type (
	// ReconcileRequest names the key to reconcile: a resource ("pods",
	// "deployments.apps"), a namespace and a name.
	ReconcileRequest = hostapi.ReconcileRequest
	// ReconcileResult asks for a later reconcile (RequeueAfterMillis).
	ReconcileResult = hostapi.ReconcileResult
	// ControllerSpec lists the resources a controller watches.
	ControllerSpec = hostapi.ControllerSpec
	// Watch is one watched resource and how its events map to keys.
	Watch = hostapi.Watch
)

// Reconciler is a controller: Reconcile brings the cluster's state for one
// key closer to what its object asks for, reading from the host's cache
// (Get, List) and writing through the API (Create, Update, Patch, Delete).
// A returned error retries the key with backoff. In a Wasm guest calls
// never overlap; natively the test harness serialises them.
type Reconciler interface {
	Reconcile(req ReconcileRequest) (ReconcileResult, error)
}

// controllerPart is what a controller Module adds to a Module.
type controllerPart struct {
	r        Reconciler
	specJSON []byte
}

// NewController returns the module of controller r. The manifest's Kinds
// defaults to KindController; spec must watch at least one resource.
func NewController(r Reconciler, m Manifest, spec ControllerSpec) (*Module, error) {
	if r == nil {
		return nil, errors.New("sdk: controller is nil")
	}
	if m.Name == "" {
		return nil, errors.New("sdk: manifest has no name")
	}
	m = cloneManifest(m)
	if len(m.Kinds) == 0 {
		m.Kinds = []string{KindController}
	}
	if len(m.Kinds) != 1 || m.Kinds[0] != KindController {
		return nil, errors.New("sdk: manifest of " + m.Name + ": a controller module has the single kind " + KindController)
	}
	primary := false
	for _, w := range spec.Watches {
		switch w.Enqueue {
		case hostapi.EnqueueSelf, hostapi.EnqueueGC:
			primary = true
		case hostapi.EnqueueOwner, hostapi.EnqueueNamespace, hostapi.EnqueueName, hostapi.EnqueueNone:
		default:
			return nil, errors.New("sdk: controller " + m.Name + ": watch of " + w.Resource + ": unknown enqueue mode " + strconv.Quote(w.Enqueue))
		}
		if w.Resource == "" {
			return nil, errors.New("sdk: controller " + m.Name + ": watch without a resource")
		}
	}
	if !primary {
		return nil, errors.New("sdk: controller " + m.Name + ": no watch with enqueue " + hostapi.EnqueueSelf)
	}
	return &Module{
		manifest:     m,
		manifestJSON: appendManifest(nil, m),
		ctl:          &controllerPart{r: r, specJSON: appendControllerSpec(nil, spec)},
	}, nil
}

// RegisterController installs controller r as the module's plugin; call it
// once from an init function of the plugin's main package. Registration
// errors are reported by the configure export, like RegisterAdmission's.
func RegisterController(r Reconciler, m Manifest, spec ControllerSpec) {
	if registered != nil {
		registered = &Module{manifest: registered.manifest, manifestJSON: registered.manifestJSON,
			err: errors.New("sdk: more than one plugin registered in module " + registered.manifest.Name)}
		return
	}
	mod, err := NewController(r, m, spec)
	if err != nil {
		mod = &Module{manifest: m, manifestJSON: appendManifest(nil, m), err: err}
	}
	registered = mod
}

// Reconciler returns the controller behind the module (nil for other
// kinds).
func (m *Module) Reconciler() Reconciler {
	if m.ctl == nil {
		return nil
	}
	return m.ctl.r
}

// configurer returns the plugin's Configurer, if it is one.
func (m *Module) configurer() (Configurer, bool) {
	if m.ctl != nil {
		c, ok := m.ctl.r.(Configurer)
		return c, ok
	}
	c, ok := m.admitter.(Configurer)
	return c, ok
}

// callController serves the controller exports, appending the result to
// dst.
func (m *Module) callController(dst []byte, export string, in []byte) []byte {
	if export == hostapi.ExportController {
		return append(dst, m.ctl.specJSON...)
	}
	if m.err != nil {
		return appendReconcileResult(dst, ReconcileResult{Error: m.err.Error()})
	}
	req, err := DecodeReconcileRequest(in)
	if err != nil {
		return appendReconcileResult(dst, ReconcileResult{Error: err.Error()})
	}
	res, err := m.ctl.r.Reconcile(req)
	if err != nil {
		res.Error = err.Error()
		if res.Error == "" {
			res.Error = "reconcile failed"
		}
	}
	return appendReconcileResult(dst, res)
}

// DecodeReconcileRequest reads a ReconcileRequest JSON.
func DecodeReconcileRequest(in []byte) (ReconcileRequest, error) {
	var req ReconcileRequest
	v := rawjson.Value(in)
	if v.Kind() != rawjson.Object {
		return req, errors.New("sdk: reconcile request is not a JSON object")
	}
	err := v.EachMember(func(key []byte, val rawjson.Value) bool {
		s, _ := val.String()
		switch string(key) {
		case "resource":
			req.Resource = s
		case "namespace":
			req.Namespace = s
		case "name":
			req.Name = s
		}
		return true
	})
	if err != nil {
		return req, errors.New("sdk: malformed reconcile request")
	}
	return req, nil
}

// AppendReconcileRequest appends req as encoding/json would encode it.
func AppendReconcileRequest(dst []byte, req ReconcileRequest) []byte {
	dst = append(dst, `{"resource":`...)
	dst = rawjson.AppendString(dst, req.Resource)
	dst = appendOptString(dst, "namespace", req.Namespace)
	dst = append(dst, `,"name":`...)
	dst = rawjson.AppendString(dst, req.Name)
	return append(dst, '}')
}

func appendReconcileResult(dst []byte, r ReconcileResult) []byte {
	dst = append(dst, '{')
	sep := false
	if r.RequeueAfterMillis > 0 {
		dst = append(dst, `"requeueAfterMillis":`...)
		dst = strconv.AppendInt(dst, r.RequeueAfterMillis, 10)
		sep = true
	}
	if r.Error != "" {
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, `"error":`...)
		dst = rawjson.AppendString(dst, r.Error)
	}
	return append(dst, '}')
}

func appendControllerSpec(dst []byte, s ControllerSpec) []byte {
	dst = append(dst, `{"watches":[`...)
	for i, w := range s.Watches {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"resource":`...)
		dst = rawjson.AppendString(dst, w.Resource)
		dst = append(dst, `,"enqueue":`...)
		dst = rawjson.AppendString(dst, w.Enqueue)
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if s.ResyncSeconds > 0 {
		dst = append(dst, `,"resyncSeconds":`...)
		dst = strconv.AppendInt(dst, s.ResyncSeconds, 10)
	}
	return append(dst, '}')
}

// CreateObject creates obj (JSON) in namespace and returns the stored object.
func CreateObject(resource, namespace string, obj []byte) (rawjson.Value, error) {
	return Write(WriteRequest{Verb: hostapi.VerbCreate, Resource: resource, Namespace: namespace, Object: obj})
}

// UpdateObject replaces an object (its metadata.resourceVersion is the
// precondition; ErrConflict if it changed); subresource is "" or
// "status".
func UpdateObject(resource, namespace, name, subresource string, obj []byte) (rawjson.Value, error) {
	return Write(WriteRequest{Verb: hostapi.VerbUpdate, Resource: resource, Namespace: namespace, Name: name,
		Subresource: subresource, Object: obj})
}

// MergePatch applies a JSON merge patch (RFC 7386) to an object or its
// subresource ("", "status", "scale").
func MergePatch(resource, namespace, name, subresource string, patch []byte) (rawjson.Value, error) {
	return Write(WriteRequest{Verb: hostapi.VerbPatch, Resource: resource, Namespace: namespace, Name: name,
		Subresource: subresource, Object: patch, PatchType: hostapi.PatchMerge})
}

// DeleteObject deletes an object; options is a metav1.DeleteOptions JSON or
// nil. ErrNotFound if it is already gone.
func DeleteObject(resource, namespace, name string, options []byte) error {
	_, err := Write(WriteRequest{Verb: hostapi.VerbDelete, Resource: resource, Namespace: namespace, Name: name, Object: options})
	return err
}
