package hostapi

// # Controllers (ABI v1, additive)
//
// A controller module declares KindController in its Manifest, exports
// ExportReconcile (ReconcileRequest in, ReconcileResult out) and
// ExportController (no input; ControllerSpec out). The host's controller
// driver keeps an informer cache of every resource a spec names, maps
// events to keys with the Watch's Enqueue mode, and calls Reconcile with
// one key at a time. Get and List answer from that cache (an object the
// cache does not hold is read from the API); Write goes through the API
// and its result is put in the cache at once, so a controller reads its
// own writes.
//
// Write conventions for controllers:
//   - VerbDelete: Object, if set, is a metav1.DeleteOptions JSON
//     (propagationPolicy, preconditions, gracePeriodSeconds). The result
//     is the object when it stays in deletion (finalizers, graceful pod
//     deletion) and empty when it is gone.
//   - VerbPatch: PatchType is "application/merge-patch+json" (the
//     default when empty), "application/json-patch+json" or
//     "application/strategic-merge-patch+json".

// ExportController(ptr i32, len i32) -> i64 (packed ptr/len): the
// module's ControllerSpec JSON; the input is empty (the entry-point shape
// keeps one calling convention). Controllers only.
const ExportController = "tugboat_controller"

// Enqueue modes of a Watch: which keys an event of the watched resource
// puts on the controller's queue.
const (
	// EnqueueSelf: the object's own key (a primary resource).
	EnqueueSelf = "self"
	// EnqueueOwner: the key of the object's controller owner
	// (ownerReferences with controller: true) if its kind is one of the
	// controller's EnqueueSelf resources; for an object without a
	// controller owner (an orphan a primary may adopt), every primary of
	// its namespace.
	EnqueueOwner = "owner"
	// EnqueueNamespace: every primary of the object's namespace (for
	// selector-based controllers, e.g. services for pod events).
	EnqueueNamespace = "namespace"
	// EnqueueName: the primary with the object's name (in its namespace
	// when the primary is namespaced), e.g. a node's Lease -> the Node.
	EnqueueName = "name"
	// EnqueueNone: cache only (the controller reads it, events enqueue
	// nothing).
	EnqueueNone = "none"
	// EnqueueGC: the garbage collector's mapping: the object's own key
	// when it has ownerReferences or is being deleted with the orphan or
	// foregroundDeletion finalizer; on a deletion (or the start of one),
	// the keys of its dependents; on a dependent's removal, the key of
	// each owner (which may be waiting in foreground deletion).
	EnqueueGC = "gc"
)

// AllResources as ListRequest.Resource lists every cached resource; it is
// only allowed together with an owner selector (FieldOwnerUID).
const AllResources = "*"

// FieldOwnerUID is a field selector the controller driver supports in
// ListRequest.FieldSelector ("metadata.ownerReferences.uid=<uid>"): the
// objects with an owner reference to that uid, from the owner index.
const FieldOwnerUID = "metadata.ownerReferences.uid"

// Patch types for WriteRequest.PatchType.
const (
	PatchMerge     = "application/merge-patch+json"
	PatchJSON      = "application/json-patch+json"
	PatchStrategic = "application/strategic-merge-patch+json"
)

// ControllerSpec says which resources a controller watches and how their
// events map to the keys it reconciles.
type ControllerSpec struct {
	// Watches lists the watched resources ("pods", "deployments.apps");
	// at least one must be EnqueueSelf (or EnqueueGC).
	Watches []Watch `json:"watches"`
	// ResyncSeconds > 0 re-enqueues every primary that often.
	ResyncSeconds int64 `json:"resyncSeconds,omitempty"`
}

// Watch is one watched resource of a ControllerSpec.
type Watch struct {
	Resource string `json:"resource"`
	// Enqueue is one of the Enqueue* modes.
	Enqueue string `json:"enqueue"`
}
