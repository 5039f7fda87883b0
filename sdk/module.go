package sdk

import (
	"errors"
	"slices"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Module is a plugin as the host sees it: its manifest and the entry points
// behind the module's exports. In a Wasm guest the registered Module backs
// the //go:wasmexport functions; natively Call runs the same bytes-in,
// bytes-out path, which is what tests and native benchmarks use.
//
// A Module is safe for concurrent use once configured, if its plugin is.
type Module struct {
	manifest     Manifest
	manifestJSON []byte
	admitter     Admitter
	mutating     bool
	ctl          *controllerPart // set for controllers (sdk/controller.go)
	err          error           // why the module is unusable (a registration error)
}

// NewAdmission returns the module of admission plugin p. Kinds defaults to
// KindValidatingAdmission; only a module declaring KindMutatingAdmission
// may return patches.
func NewAdmission(p Admitter, m Manifest) (*Module, error) {
	if p == nil {
		return nil, errors.New("sdk: admission plugin is nil")
	}
	if m.Name == "" {
		return nil, errors.New("sdk: manifest has no name")
	}
	m = cloneManifest(m)
	if len(m.Kinds) == 0 {
		m.Kinds = []string{KindValidatingAdmission}
	}
	for _, k := range m.Kinds {
		if k != KindValidatingAdmission && k != KindMutatingAdmission {
			return nil, errors.New("sdk: manifest of " + m.Name + ": kind " + k + " is not an admission kind")
		}
	}
	return &Module{
		manifest:     m,
		manifestJSON: appendManifest(nil, m),
		admitter:     p,
		mutating:     slices.Contains(m.Kinds, KindMutatingAdmission),
	}, nil
}

// Manifest returns a copy of the module's manifest.
func (m *Module) Manifest() Manifest { return cloneManifest(m.manifest) }

// Plugin returns the plugin behind the module.
func (m *Module) Plugin() Admitter { return m.admitter }

// Call runs the entry point behind a hostapi export name with input and
// returns the bytes the Wasm export would return: the manifest JSON for
// ExportManifest, the error message (empty on success) for
// ExportConfigure, the AdmissionResponse JSON for ExportAdmit. An unknown
// export is an error.
func (m *Module) Call(export string, input []byte) ([]byte, error) {
	switch export {
	case hostapi.ExportManifest:
		return slices.Clone(m.manifestJSON), nil
	case hostapi.ExportConfigure:
		if err := m.Configure(input); err != nil {
			return []byte(err.Error()), nil
		}
		return nil, nil
	case hostapi.ExportAdmit:
		return m.admit(nil, input), nil
	case hostapi.ExportReconcile, hostapi.ExportController:
		if m.ctl != nil {
			return m.callController(nil, export, input), nil
		}
	}
	return nil, errors.New("sdk: module " + m.manifest.Name + " has no export " + export)
}

// Configure validates settings (JSON; empty means none) and passes them to
// the plugin if it is a Configurer. A plugin that is not a Configurer
// accepts only empty settings ({} or null).
func (m *Module) Configure(settings []byte) error {
	if m.err != nil {
		return m.err
	}
	v := rawjson.Value(settings)
	empty := v.IsNull()
	if !empty && !rawjson.Valid(settings) {
		return errors.New("settings are not valid JSON")
	}
	c, ok := m.configurer()
	if !ok {
		if !empty && (v.Kind() != rawjson.Object || hasMembers(v)) {
			return errors.New("plugin " + m.manifest.Name + " takes no settings")
		}
		return nil
	}
	if empty {
		v = nil
	}
	return c.Configure(v)
}

// hasMembers reports whether object v has at least one member.
func hasMembers(v rawjson.Value) bool {
	found := false
	_ = v.EachMember(func([]byte, rawjson.Value) bool { found = true; return false })
	return found
}

// admit decodes one request, runs the plugin and appends the response JSON
// to dst. Every failure becomes a response (see failed).
func (m *Module) admit(dst, in []byte) []byte { return m.admitWith(dst, in, nil) }

// admitWith is admit, taking repeated strings of binary requests from last
// (nil: none; only a caller that never overlaps calls may pass one).
func (m *Module) admitWith(dst, in []byte, last *lastStrings) []byte {
	if m.err != nil {
		return failed("", m.err).appendJSON(dst, "")
	}
	if m.admitter == nil {
		return failed("", errors.New("sdk: module "+m.manifest.Name+" is not an admission plugin")).appendJSON(dst, "")
	}
	req, err := decodeRequest(in, last)
	if err != nil {
		return failed("", err).appendJSON(dst, "")
	}
	resp, err := m.admitter.Admit(req)
	switch {
	case err != nil:
		resp = failed(req.UID, err)
	case resp == nil:
		resp = failed(req.UID, errors.New("plugin "+m.manifest.Name+" returned no response"))
	case len(resp.Patch) > 0 && !m.mutating:
		resp = failed(req.UID, errors.New("plugin "+m.manifest.Name+" returned a patch but is not declared "+KindMutatingAdmission))
	}
	return resp.appendJSON(dst, req.UID)
}

func cloneManifest(m Manifest) Manifest {
	m.Kinds = slices.Clone(m.Kinds)
	m.Grants = slices.Clone(m.Grants)
	rules := make([]Rule, len(m.Rules))
	for i, r := range m.Rules {
		rules[i] = Rule{Verbs: slices.Clone(r.Verbs), Resources: slices.Clone(r.Resources)}
	}
	if m.Rules != nil {
		m.Rules = rules
	}
	return m
}

// appendManifest appends m as the JSON encoding/json would give
// hostapi.Manifest.
func appendManifest(dst []byte, m Manifest) []byte {
	dst = append(dst, `{"name":`...)
	dst = rawjson.AppendString(dst, m.Name)
	dst = append(dst, `,"kinds":`...)
	dst = appendStrings(dst, m.Kinds)
	if len(m.Rules) > 0 {
		dst = append(dst, `,"rules":[`...)
		for i, r := range m.Rules {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"verbs":`...)
			dst = appendStrings(dst, r.Verbs)
			dst = append(dst, `,"resources":`...)
			dst = appendStrings(dst, r.Resources)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if len(m.Grants) > 0 {
		dst = append(dst, `,"grants":`...)
		dst = appendStrings(dst, m.Grants)
	}
	return append(dst, '}')
}

// appendStrings appends ss as a JSON array (null when nil, like
// encoding/json).
func appendStrings(dst []byte, ss []string) []byte {
	if ss == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = rawjson.AppendString(dst, s)
	}
	return append(dst, ']')
}

// errNoPlugin: the main package registered nothing.
var errNoPlugin = errors.New("sdk: no plugin registered (call sdk.RegisterAdmission from init)")

// registered is the module RegisterAdmission installed; the Wasm exports
// serve it.
var registered *Module

// RegisterAdmission installs admission plugin p as the module's plugin.
// Call it once, from an init function of the plugin's main package. A
// registration error (a bad manifest, a second registration) is reported by
// the module's configure export, which stops the server with the message.
func RegisterAdmission(p Admitter, m Manifest) {
	if registered != nil {
		registered = &Module{manifest: registered.manifest, manifestJSON: registered.manifestJSON,
			err: errors.New("sdk: more than one plugin registered in module " + registered.manifest.Name)}
		return
	}
	mod, err := NewAdmission(p, m)
	if err != nil {
		mod = &Module{manifest: m, manifestJSON: appendManifest(nil, m), err: err}
	}
	registered = mod
}

// Registered returns the module installed by RegisterAdmission, or an error
// if there is none or registration failed. sdk/plugintest uses it to test a
// plugin's main package natively.
func Registered() (*Module, error) {
	if registered == nil {
		return nil, errNoPlugin
	}
	if registered.err != nil {
		return nil, registered.err
	}
	return registered, nil
}
