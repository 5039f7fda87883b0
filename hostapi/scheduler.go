package hostapi

import (
	"encoding/binary"
	"errors"
	"math"
)

// # Scheduler plugins (filter and score)
//
// A scheduler plugin exports ExportFilter and/or ExportScore (and declares
// KindFilter and/or KindScore in its manifest). Both take the same request
// and differ in the result. Unlike the other kinds, the messages are
// binary: everything per node is packed little-endian, JSON appears only
// for whole objects (the pod being scheduled, a changed Node, a bound pod's
// affinity).
//
// The guest keeps a node table across calls. Each request carries the
// changes (SchedOp*) since the generation the host believes the instance
// has seen; the guest applies them before it filters or scores. A guest
// whose generation is not the request's base answers SchedStatusResync
// with its own generation, and the host repeats the call with the changes
// since that generation or with the full table (base 0: the guest drops
// its table first).
//
// Primitive encodings (all little-endian):
//
//	u8, u16, u32, u64, i64   fixed width
//	str                      u16 length + UTF-8 bytes
//	blob                     u32 length + bytes (0 = absent)
//	resources                u8 count, then count × (u8 SchedRes* id;
//	                         if SchedResNamed, a str name; then i64 value)
//
// Request (ExportFilter and ExportScore):
//
//	u64 base        generation the changes start from; 0 = full table
//	u64 gen         generation after the changes
//	u32 nops        number of changes, then nops × op (below)
//	u64 podSeq      scheduling attempt; equal seqs carry the same pod
//	pod             the pod being scheduled (below)
//	u32 n           candidates, then n × u32 node index
//
// Pod (decoded by the host once per attempt, so guests need not parse
// JSON for the common fields):
//
//	resources       the pod's requests: max(sum of containers and sidecar
//	                init containers, each init container) + overhead,
//	                with "pods" = 1
//	i64 nonzeroCPU  milli-CPU requests with defaults for containers
//	                without one (SchedDefaultMilliCPU)
//	i64 nonzeroMem  memory requests with defaults (SchedDefaultMemory)
//	str uid, str namespace, str name, str nodeName, str schedulerName
//	i64 priority    spec.priority (0 when absent)
//	u16 n × (str key, str value)      metadata.labels
//	u16 n × (str key, str value)      spec.nodeSelector
//	u16 n × (str key, str operator, str value, str effect)  spec.tolerations
//	u16 n × str                       container and init container images
//	u16 n × (str protocol, str hostIP, u32 port)  container host ports
//	blob affinity   spec.affinity JSON (empty when absent)
//	blob spread     spec.topologySpreadConstraints JSON (empty when absent)
//	blob pod        the whole Pod JSON (v1)
//
// Ops (u8 opcode first):
//
//	SchedOpNodeSet     u32 index, str name, resources allocatable,
//	                   u8 flags (SchedNode*),
//	                   u16 n × (str key, str value)  metadata.labels,
//	                   u16 n × (str key, str value, str effect)  spec.taints,
//	                   u16 n × (u16 m × str name, i64 sizeBytes)  status.images,
//	                   blob node JSON. Adds the node at index, or replaces
//	                   the object of the node there (its pods stay).
//	SchedOpNodeRemove  u32 index. Removes the node and its pods.
//	SchedOpPodAdd      u32 index (node), then a pod summary:
//	                   u32 podID, u8 flags (SchedPod*), str uid,
//	                   str namespace, str name,
//	                   u16 nlabels × (str key, str value),
//	                   resources requests, i64 nonzeroCPU, i64 nonzeroMem,
//	                   blob affinity (spec.affinity JSON, only when it
//	                   has podAffinity or podAntiAffinity; else empty).
//	SchedOpPodRemove   u32 index (node), u32 podID.
//
// Pod IDs are the host's, unique among the pods of the table, small and
// dense (from 1; the id of a forgotten pod is reused, after its
// SchedOpPodRemove), so a guest may index a table by them. Node indexes
// are small and stable while the node exists; a removed node's index may
// be reused by a later SchedOpNodeSet. The requested resources of a node
// are the sum of its pods' requests (the guest sums them).
//
// Response:
//
//	u8 status       SchedStatus*
//	SchedStatusOK, filter:  u32 nreasons × (u8 count × str reason),
//	                        u32 n, n × u16 code (0 = the candidate passes,
//	                        k = rejected with reason set k-1). n = 0 means
//	                        every candidate passes. A count with bit
//	                        SchedReasonsUnresolvable set marks a set whose
//	                        nodes removing pods cannot make fit (kube's
//	                        UnschedulableAndUnresolvable: preemption skips
//	                        them); the count is the low 7 bits.
//	SchedStatusOK, score:   u32 n, n × i64 score (0..SchedMaxScore; the
//	                        host clamps), one per candidate. n = 0 means
//	                        every score is 0. A module that computes
//	                        several scorers in one walk (score parts, e.g.
//	                        NodeResourcesFit and BalancedAllocation, which
//	                        its settings enabled) appends one such vector
//	                        per part, in order; the host weighs each part
//	                        by its own weight and expects as many vectors
//	                        as the profile configured parts.
//	SchedStatusSkip:        nothing follows: the plugin has nothing to do
//	                        for this pod (kube-scheduler's PreFilter or
//	                        PreScore "Skip"): every candidate passes, or the
//	                        plugin adds no score. The host does not call the
//	                        plugin again for the same attempt's candidates.
//	SchedStatusResync:      u64 the guest's generation (0 = empty table).
//	SchedStatusError:       blob message (UTF-8). The host treats it like
//	                        a trap: the pod's attempt fails and is retried.

// # Relevance (optional, additive within ABI v1)
//
// A scheduler plugin may also export ExportSchedRelevance, () -> packed
// result like ExportManifest, answering after configure:
//
//	u64 filterWhen  SchedWhen* bits: when the filter can reject a node
//	u64 scoreWhen   SchedWhen* bits: when the scorer can tell nodes apart
//
// (further bytes are for later versions and ignored). The host calls the
// entry point only for an attempt where at least one of the facts its
// bits name holds; 0 means always (as for a module without the export),
// and so does any bit the host does not know. A plugin that is not called
// sees nothing of the attempt; the changes it missed come with its next
// call (or, if the host's change log has moved past them, the full
// table). The facts are generic properties of what the request carries
// (the pod part, the node records, the bound-pod summaries), so the host
// evaluates them without knowing any plugin's policy.

// ExportSchedRelevance is the optional relevance entry point of scheduler
// plugins.
const ExportSchedRelevance = "tugboat_sched_relevance"

// Facts a plugin's relevance names (SchedWhen*). Pod facts are about the
// pod being scheduled; Node facts hold when at least one node of the
// table has the property; BoundPod facts when at least one bound or
// assumed pod has it.
const (
	SchedWhenPodNodeName     = 1 << 0 // spec.nodeName is set
	SchedWhenPodNodeSelector = 1 << 1 // spec.nodeSelector is not empty
	SchedWhenPodNodeAffinity = 1 << 2 // spec.affinity.nodeAffinity is set
	SchedWhenPodPodAffinity  = 1 << 3 // spec.affinity.podAffinity or podAntiAffinity is set
	SchedWhenPodSpread       = 1 << 4 // spec.topologySpreadConstraints is not empty
	SchedWhenPodTolerations  = 1 << 5 // spec.tolerations is not empty
	SchedWhenPodHostPorts    = 1 << 6 // a container asks for a host port
	SchedWhenPodControlled   = 1 << 7 // a controller ownerReference (ReplicaSet, StatefulSet, ...)

	SchedWhenNodeUnschedulable = 1 << 16 // a node has spec.unschedulable
	SchedWhenNodeTaints        = 1 << 17 // a node has spec.taints
	SchedWhenNodeImages        = 1 << 18 // a node reports status.images

	SchedWhenBoundPodAffinity = 1 << 24 // a bound pod has podAffinity or podAntiAffinity

	// SchedWhenKnown are the facts this version of the ABI defines.
	SchedWhenKnown = 1<<8 - 1 | 7<<16 | 1<<24
)

// SchedReasonsUnresolvable flags a filter's reason set as unresolvable
// by preemption (in its u8 count).
const SchedReasonsUnresolvable = 0x80

// SchedMaxScore is the highest score a scorer returns (kube-scheduler's
// MaxNodeScore); the host multiplies it by the plugin's weight.
const SchedMaxScore = 100

// Change opcodes of a scheduler request.
const (
	SchedOpNodeSet    = 1
	SchedOpNodeRemove = 2
	SchedOpPodAdd     = 3
	SchedOpPodRemove  = 4
)

// Response statuses of a scheduler call.
const (
	SchedStatusOK     = 0
	SchedStatusResync = 1
	SchedStatusError  = 2
	SchedStatusSkip   = 3
)

// Node flags.
const (
	// SchedNodeUnschedulable: spec.unschedulable (cordoned).
	SchedNodeUnschedulable = 1
)

// Pod summary flags.
const (
	// SchedPodTerminating: metadata.deletionTimestamp is set.
	SchedPodTerminating = 2
)

// Resource ids. Values are milli-units for cpu and whole units (bytes,
// counts) for everything else, as kube-scheduler counts them.
const (
	SchedResNamed            = 0 // followed by the resource name (extended, hugepages-…)
	SchedResCPU              = 1 // "cpu", milli-CPU
	SchedResMemory           = 2 // "memory", bytes
	SchedResEphemeralStorage = 3 // "ephemeral-storage", bytes
	SchedResPods             = 4 // "pods", count
)

// Defaults kube-scheduler assumes for containers without a request, for
// scoring (the nonzero fields).
const (
	SchedDefaultMilliCPU = 100
	SchedDefaultMemory   = 200 << 20
)

// ErrSchedMessage reports a malformed scheduler message.
var errSchedMessage = errors.New("malformed scheduler message")

// ErrSchedMessage returns the error SchedReader methods report for a
// truncated or malformed message.
func ErrSchedMessage() error { return errSchedMessage }

// AppendU8 and the other Append functions append one primitive of the
// scheduler encoding.
func AppendU8(b []byte, v uint8) []byte { return append(b, v) }

// AppendU16 appends v little-endian.
func AppendU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }

// AppendU32 appends v little-endian.
func AppendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

// AppendU64 appends v little-endian.
func AppendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// AppendI64 appends v little-endian.
func AppendI64(b []byte, v int64) []byte { return binary.LittleEndian.AppendUint64(b, uint64(v)) }

// AppendStr appends s as a str (u16 length); longer strings are cut at
// 65535 bytes.
func AppendStr(b []byte, s string) []byte {
	if len(s) > math.MaxUint16 {
		s = s[:math.MaxUint16]
	}
	b = AppendU16(b, uint16(len(s)))
	return append(b, s...)
}

// AppendBlob appends p as a blob (u32 length).
func AppendBlob(b []byte, p []byte) []byte {
	b = AppendU32(b, uint32(len(p)))
	return append(b, p...)
}

// SchedResourceID returns the id of a well-known resource name, or
// SchedResNamed.
func SchedResourceID(name string) uint8 {
	switch name {
	case "cpu":
		return SchedResCPU
	case "memory":
		return SchedResMemory
	case "ephemeral-storage":
		return SchedResEphemeralStorage
	case "pods":
		return SchedResPods
	}
	return SchedResNamed
}

// SchedResourceName returns the name of a well-known resource id ("" for
// SchedResNamed and unknown ids).
func SchedResourceName(id uint8) string {
	switch id {
	case SchedResCPU:
		return "cpu"
	case SchedResMemory:
		return "memory"
	case SchedResEphemeralStorage:
		return "ephemeral-storage"
	case SchedResPods:
		return "pods"
	}
	return ""
}

// AppendResource appends one entry of a resources list (the caller writes
// the count first).
func AppendResource(b []byte, name string, value int64) []byte {
	id := SchedResourceID(name)
	b = append(b, id)
	if id == SchedResNamed {
		b = AppendStr(b, name)
	}
	return AppendI64(b, value)
}

// SchedReader reads the primitives of a scheduler message. After the
// first failure every read returns zero values and Err reports it, so a
// decoder checks once at the end.
type SchedReader struct {
	b   []byte
	off int
	bad bool
}

// NewSchedReader reads b.
func NewSchedReader(b []byte) SchedReader { return SchedReader{b: b} }

// Err returns ErrSchedMessage() if a read ran past the end.
func (r *SchedReader) Err() error {
	if r.bad {
		return errSchedMessage
	}
	return nil
}

// Remaining returns the number of unread bytes.
func (r *SchedReader) Remaining() int { return len(r.b) - r.off }

func (r *SchedReader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b)-r.off < n {
		r.bad = true
		return nil
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

// Rest returns the unread bytes (without copying) and consumes them.
func (r *SchedReader) Rest() []byte {
	if r.bad {
		return nil
	}
	p := r.b[r.off:]
	r.off = len(r.b)
	return p
}

// U8 reads a u8.
func (r *SchedReader) U8() uint8 {
	p := r.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

// U16 reads a u16.
func (r *SchedReader) U16() uint16 {
	p := r.take(2)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(p)
}

// U32 reads a u32.
func (r *SchedReader) U32() uint32 {
	p := r.take(4)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}

// U64 reads a u64.
func (r *SchedReader) U64() uint64 {
	p := r.take(8)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

// I64 reads an i64.
func (r *SchedReader) I64() int64 { return int64(r.U64()) }

// StrBytes reads a str without copying (the result aliases the message).
func (r *SchedReader) StrBytes() []byte { return r.take(int(r.U16())) }

// Str reads a str (a copy).
func (r *SchedReader) Str() string { return string(r.StrBytes()) }

// Blob reads a blob without copying (nil when empty).
func (r *SchedReader) Blob() []byte {
	n := r.U32()
	if n == 0 {
		return nil
	}
	if uint64(n) > uint64(r.Remaining()) {
		r.bad = true
		return nil
	}
	return r.take(int(n))
}

// Resource reads one entry of a resources list: the name ("" with a
// well-known id) and the value.
func (r *SchedReader) Resource() (id uint8, name []byte, value int64) {
	id = r.U8()
	if id == SchedResNamed {
		name = r.StrBytes()
	}
	return id, name, r.I64()
}
