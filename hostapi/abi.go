// Package hostapi is the contract between Tugboat's kernel (the host) and
// Wasm plugins (the guests): the ABI version, the names of the functions
// each side exports, the message layouts and the error codes.
//
// It imports only the standard library and exports nothing mutable: the
// runtime (host side) and the SDK (guest side) both build on it, and a
// change here is a change of ABI. See docs/PLUGIN_GUIDE.md for the call
// diagram.
//
// # Calling convention (ABI v1)
//
// All parameters are i32 or i64. Memory moves in one direction per step,
// so the host never calls back into a guest that is already running:
//
//   - host -> guest input: the host calls the guest's Alloc export for a
//     buffer of the input's size, writes the input there, then calls the
//     entry point (e.g. Admit) with (ptr, len). The guest keeps the buffer
//     alive until its next call.
//   - guest -> host result: the entry point returns a packed i64,
//     ptr<<32 | len, naming a guest buffer the host reads (and the guest
//     keeps alive until its next call). A result whose length is 0 is an
//     empty message.
//   - guest -> host calls (Get, List, Log, ...): the guest passes its
//     request as (ptr, len); the host answers with the response size as a
//     non-negative i32, or a negative error code; the guest then provides a
//     buffer of that size to ReadResult, which copies the pending response.
//
// Messages are JSON unless a kind's section says otherwise.
package hostapi

import "encoding/json"

// ABIVersion is the version of this contract. Every module exports
// ExportABIVersion returning it; the host refuses any other value.
const ABIVersion = 1

// ImportModule is the Wasm module name under which the host provides its
// functions.
const ImportModule = "tugboat_v1"

// Host functions (imports of the guest, all in ImportModule).
const (
	// FuncLog(level i32, ptr i32, len i32): writes a log line tagged with the
	// plugin's name. Levels are the Level* constants. Rate-limited by the host.
	FuncLog = "log"
	// FuncGet(ptr i32, len i32) -> i32: reads one object from the kernel's
	// cache. Request: GetRequest. Response: the object's JSON.
	FuncGet = "get"
	// FuncList(ptr i32, len i32) -> i32: lists objects from the kernel's
	// cache. Request: ListRequest. Response: ListResponse.
	FuncList = "list"
	// FuncWrite(ptr i32, len i32) -> i32: creates, updates, patches or
	// deletes an object (controllers only, within declared capabilities).
	// Request: WriteRequest. Response: the resulting object's JSON (empty for
	// delete).
	FuncWrite = "write"
	// FuncReadResult(ptr i32, len i32) -> i32: copies the pending response of
	// the last Get/List/Write into the guest buffer; returns the bytes copied
	// or a negative error code.
	FuncReadResult = "read_result"
	// FuncNow() -> i64: wall-clock time in Unix nanoseconds; only for
	// plugins granted CapClock, otherwise ErrPermission.
	FuncNow = "now"
)

// Guest exports.
const (
	// ExportABIVersion() -> i32: must return ABIVersion.
	ExportABIVersion = "tugboat_abi_version"
	// ExportManifest() -> i64 (packed ptr/len): the module's Manifest JSON.
	ExportManifest = "tugboat_manifest"
	// ExportAlloc(size i32) -> i32: a guest buffer of size bytes for input.
	ExportAlloc = "tugboat_alloc"
	// ExportConfigure(ptr i32, len i32) -> i64 (packed): called once per
	// instance with the plugin's settings JSON from the config file; the
	// result is empty on success or an error message (the server refuses to
	// start, naming the plugin).
	ExportConfigure = "tugboat_configure"
	// ExportAdmit(ptr i32, len i32) -> i64 (packed): admission. Input:
	// AdmissionRequest (admission.k8s.io/v1 AdmissionRequest JSON). Result:
	// AdmissionResponse JSON.
	ExportAdmit = "tugboat_admit"
	// ExportFilter, ExportScore: scheduler plugins (layout in the scheduler
	// section, ABI v1 reserves the names).
	ExportFilter = "tugboat_filter"
	ExportScore  = "tugboat_score"
	// ExportReconcile(ptr i32, len i32) -> i64 (packed): controllers.
	// Input: ReconcileRequest. Result: ReconcileResult.
	ExportReconcile = "tugboat_reconcile"
)

// # Input buffer reuse (optional, additive within ABI v1)

// ExportInputReuse is an optional export, () -> i32, of any plugin: a
// guest that exports it promises that the buffer ExportAlloc(size)
// returned stays valid for inputs of up to size bytes, until its next
// ExportAlloc call, whenever size is at most the number of bytes the
// export returns. The host then writes later inputs that fit into that
// buffer without calling ExportAlloc again (one guest call per entry
// point call instead of two). A guest that exports nothing, or returns 0,
// gets an ExportAlloc call before every input, as before.
const ExportInputReuse = "tugboat_input_reuse"

// # Binary admission requests (optional, additive within ABI v1)
//
// Stepping over JSON costs a Go Wasm guest 3-6 ns per byte and a few tens
// of ns per member, so decoding the AdmissionRequest JSON used to be most of
// an admission call. A guest may instead read the request in a binary
// layout that needs no scanning.

// ExportAdmitLayout is an optional export, () -> i32, of admission plugins:
// the highest AdmitLayout* the guest reads as ExportAdmit's input. The host
// asks once per loaded module and uses the highest layout it knows that is
// not above the answer; a module without the export gets AdmitLayoutJSON.
// Every guest must read AdmitLayoutJSON (it tells the layouts apart by the
// first byte). The result of ExportAdmit stays AdmissionResponse JSON.
const ExportAdmitLayout = "tugboat_admit_layout"

// Admission request layouts.
const (
	// AdmitLayoutJSON: admission.k8s.io/v1 AdmissionRequest JSON.
	AdmitLayoutJSON = 0
	// AdmitLayoutBinary: AdmitBinaryMagic, then flags (uint32, the
	// AdmitFlag* bits), then a field count n (uint32), then n fields in
	// AdmitField* order, each a uint32 length and that many bytes. Integers
	// are little-endian. A reader ignores fields past those it knows and
	// treats missing ones as empty, so later versions may append fields.
	AdmitLayoutBinary = 1
)

// AdmitBinaryMagic starts every AdmitLayoutBinary request; JSON never
// starts with a zero byte.
const AdmitBinaryMagic = "\x00tba"

// Flags of an AdmitLayoutBinary request.
const (
	// AdmitFlagDryRun is set when the request is a dry run.
	AdmitFlagDryRun = 1
	// AdmitFlagObjectMeta is set when AdmitFieldObjectLabels and
	// AdmitFieldObjectAnnotations hold the object's labels and annotations;
	// without it a guest reads them from AdmitFieldObject.
	AdmitFlagObjectMeta = 2
	// AdmitFlagOldObjectMeta is AdmitFlagObjectMeta for the old object.
	AdmitFlagOldObjectMeta = 4
)

// Fields of an AdmitLayoutBinary request, in order. Strings are UTF-8 and
// empty when unset. AdmitFieldGroups holds the user's groups, each a uint32
// length and that many bytes. AdmitFieldObject, AdmitFieldOldObject and
// AdmitFieldOptions hold JSON (empty when absent), exactly as the JSON
// layout would carry them. The layout has no requestKind,
// requestResource, requestSubResource or userInfo.extra: a guest that needs
// them reads AdmitLayoutJSON.
//
// AdmitFieldObjectLabels, AdmitFieldObjectAnnotations and their OldObject
// twins carry metadata.labels and metadata.annotations of the objects,
// extracted by the host, so that the most common policy lookups need no
// JSON scanning in the guest: each is a list of key, value, key, value...
// strings (unescaped), each a uint32 length and that many bytes, in
// document order. They are empty when the object has none and only
// meaningful when AdmitFlagObjectMeta (AdmitFlagOldObjectMeta) is set; the
// host leaves the flag clear, and a guest then falls back to the object's
// JSON, when the object's metadata is not what Kubernetes allows (a label
// value that is not a string, malformed JSON).
const (
	AdmitFieldUID = iota
	AdmitFieldKindGroup
	AdmitFieldKindVersion
	AdmitFieldKind
	AdmitFieldResourceGroup
	AdmitFieldResourceVersion
	AdmitFieldResource
	AdmitFieldSubResource
	AdmitFieldName
	AdmitFieldNamespace
	AdmitFieldOperation
	AdmitFieldUsername
	AdmitFieldUserUID
	AdmitFieldGroups
	AdmitFieldObject
	AdmitFieldOldObject
	AdmitFieldOptions
	AdmitFieldObjectLabels
	AdmitFieldObjectAnnotations
	AdmitFieldOldObjectLabels
	AdmitFieldOldObjectAnnotations
	// AdmitFieldCount is the number of fields in this version.
	AdmitFieldCount
)

// Plugin kinds a module may declare in its Manifest.
const (
	KindMutatingAdmission   = "admission/mutating"
	KindValidatingAdmission = "admission/validating"
	KindFilter              = "scheduler/filter"
	KindScore               = "scheduler/score"
	KindController          = "controller"
)

// Log levels for FuncLog.
const (
	LevelDebug = 0
	LevelInfo  = 1
	LevelWarn  = 2
	LevelError = 3
)

// Error codes returned (negated) by host functions. 0 and positive values
// are sizes.
const (
	ErrCodeNotFound      = -1
	ErrCodePermission    = -2
	ErrCodeInvalid       = -3
	ErrCodeTooLarge      = -4
	ErrCodeInternal      = -5
	ErrCodeConflict      = -6
	ErrCodeAlreadyExists = -7
	ErrCodeNoResult      = -8 // ReadResult with nothing pending
)

// Capability verbs a Manifest may declare.
const (
	VerbGet    = "get"
	VerbList   = "list"
	VerbCreate = "create"
	VerbUpdate = "update"
	VerbPatch  = "patch"
	VerbDelete = "delete"
	CapClock   = "clock"
	CapRandom  = "random"
)

// Manifest is what a module says about itself (ExportManifest).
type Manifest struct {
	// Name identifies the plugin in logs and errors.
	Name string `json:"name"`
	// Kinds lists the Kind* constants the module implements.
	Kinds []string `json:"kinds"`
	// Rules are the API capabilities the plugin needs; host functions
	// refuse everything else with ErrCodePermission.
	Rules []Rule `json:"rules,omitempty"`
	// Grants are non-API capabilities (CapClock, CapRandom).
	Grants []string `json:"grants,omitempty"`
}

// Rule grants verbs on resources ("pods", "deployments.apps"; "*" for all).
type Rule struct {
	Verbs     []string `json:"verbs"`
	Resources []string `json:"resources"`
}

// GetRequest names one object.
type GetRequest struct {
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// ListRequest selects objects of one resource.
type ListRequest struct {
	Resource      string `json:"resource"`
	Namespace     string `json:"namespace,omitempty"`
	LabelSelector string `json:"labelSelector,omitempty"`
	FieldSelector string `json:"fieldSelector,omitempty"`
}

// ListResponse carries the objects' JSON, in key order.
type ListResponse struct {
	Items []RawObject `json:"items"`
}

// RawObject is one object's JSON, embedded as JSON (not base64).
type RawObject = json.RawMessage

// WriteRequest changes one object.
type WriteRequest struct {
	// Verb is VerbCreate, VerbUpdate, VerbPatch or VerbDelete.
	Verb      string `json:"verb"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// Subresource is "", "status" or "scale".
	Subresource string `json:"subresource,omitempty"`
	// Object is the object for create/update, the patch for patch.
	Object json.RawMessage `json:"object,omitempty"`
	// PatchType is a Kubernetes patch content type for VerbPatch.
	PatchType string `json:"patchType,omitempty"`
}

// ReconcileRequest names the key a controller should reconcile.
type ReconcileRequest struct {
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// ReconcileResult tells the driver what to do next with the key.
type ReconcileResult struct {
	// RequeueAfterMillis > 0 asks for another reconcile of the key later.
	RequeueAfterMillis int64 `json:"requeueAfterMillis,omitempty"`
	// Error, if set, is logged and the key is retried with backoff.
	Error string `json:"error,omitempty"`
}

// Pack and Unpack build and split the i64 results of guest exports.
func Pack(ptr, size uint32) uint64 { return uint64(ptr)<<32 | uint64(size) }

// Unpack splits a packed i64 into pointer and length.
func Unpack(v uint64) (ptr, size uint32) { return uint32(v >> 32), uint32(v) }
