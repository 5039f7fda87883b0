// Package sdk is the guest side of Tugboat's plugin ABI (hostapi, v1): plugin
// authors implement a small interface per plugin kind, register it from
// init, and build the main package with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o my.wasm .
//
// The SDK provides the module's exports (ABI version, manifest, alloc,
// configure, admit, and the optional input reuse and binary admission
// layout), keeps the buffers it hands to the host alive between calls, and
// wraps the host functions (Log, Get, List, Write, Now).
//
// The same source builds natively: there the host functions go to the Host
// set with SetHost (sdk/plugintest provides a fake cache), and Module.Call
// runs the exact bytes-in, bytes-out path of the Wasm exports, so plugins are
// unit-tested with plain `go test`.
//
// The SDK avoids encoding/json, fmt and reflection: in a Go Wasm guest they
// dominate both module size and per-call cost. Objects are read in place
// with sdk/rawjson. See docs/PLUGIN_GUIDE.md.
package sdk

import (
	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Manifest is what a module says about itself: its name, kinds and the
// capabilities it needs (hostapi.Manifest).
type Manifest = hostapi.Manifest

// Rule grants verbs on resources in a Manifest.
type Rule = hostapi.Rule

// Plugin kinds for Manifest.Kinds.
const (
	KindMutatingAdmission   = hostapi.KindMutatingAdmission
	KindValidatingAdmission = hostapi.KindValidatingAdmission
)

// Admitter is an admission plugin. Admit decides on one request: return
// Allowed(), Denied(msg) or Patched(patch). A returned error is a plugin
// failure (the host applies the plugin's failure policy). In a Wasm guest
// calls never overlap; natively Admit must be safe for concurrent use.
type Admitter interface {
	Admit(req *AdmissionRequest) (*AdmissionResponse, error)
}

// Configurer is implemented by plugins that take settings. Configure gets
// the settings JSON from the server's config file (empty when there are
// none) once per instance, before any other call; an error stops the server
// from starting and its message is shown to the operator.
type Configurer interface {
	Configure(settings rawjson.Value) error
}
