package scheduler

import (
	"bytes"
	"encoding/json"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// Snapshot is the driver's view of the cluster: every node with the pods
// bound or assumed to it, kept as the pre-encoded records of hostapi's
// scheduler section, plus a log of changes by generation from which each
// plugin instance gets only what it has not seen. It holds no policy.
//
// A Snapshot is not safe for concurrent use; the driver owns it.
type Snapshot struct {
	nodes  []*nodeState // by index; nil = free
	byName map[string]*nodeState
	free   []int32
	order  []int32 // live node indexes, for the rotating search
	pods   map[podKey]*podState
	// orphans are pods bound to nodes the snapshot does not have (yet).
	orphans map[string]map[*podState]bool
	nextID  uint32
	// freeIDs are ids of forgotten pods, reused so that ids stay dense
	// (guests index their pod tables by id).
	freeIDs []uint32

	// nodeFacts counts the nodes with each hostapi.SchedWhenNode* fact
	// (by bit - 16); affinityPods the attached pods with pod (anti-)
	// affinity (hostapi.SchedWhenBoundPodAffinity).
	nodeFacts    [3]int
	affinityPods int

	gen     uint64
	log     []change // log[i] has generation logBase+1+i
	logBase uint64
	// deltas caches encoded changes from a base to gen; deltaMu guards
	// it (plugins may be called in parallel).
	deltaMu sync.Mutex
	deltas  map[uint64]*delta
}

type podKey struct{ namespace, name string }

type nodeState struct {
	index int32
	pos   int // position in order
	name  string
	rec   []byte // the SchedOpNodeSet record (without opcode)
	facts uint64 // hostapi.SchedWhenNode* facts of the node
	pods  []*podState
}

type podState struct {
	key      podKey
	id       uint32
	nodeName string
	node     *nodeState // nil while orphaned
	slot     int        // position in node.pods
	rec      []byte     // the pod summary (after the node index)
	req      requests
	affinity bool // has podAffinity or podAntiAffinity
	// For preemption: the pod's uid, priority, whether it is terminating
	// and when it was created.
	uid         types.UID
	priority    int32
	terminating bool
	created     time.Time
}

// change is one entry of the log.
type change struct {
	op   uint8
	node int32
	id   uint32
	rec  []byte
}

// delta is the encoded changes from one base to the current generation.
type delta struct {
	nops uint32
	ops  []byte
}

// maxLog bounds the change log; plugins further behind get the full table.
const maxLog = 1 << 17

// NewSnapshot returns an empty snapshot.
func NewSnapshot() *Snapshot {
	return &Snapshot{byName: map[string]*nodeState{}, pods: map[podKey]*podState{}, orphans: map[string]map[*podState]bool{}, deltas: map[uint64]*delta{}, gen: 1, logBase: 1}
}

// Generation is the snapshot's current generation (it starts at 1 and
// grows by one per change).
func (s *Snapshot) Generation() uint64 { return s.gen }

// NumNodes returns the number of nodes.
func (s *Snapshot) NumNodes() int { return len(s.order) }

// HasNode reports whether the named node is in the snapshot.
func (s *Snapshot) HasNode(name string) bool { return s.byName[name] != nil }

// record appends a change and bumps the generation.
func (s *Snapshot) record(c change) {
	s.log = append(s.log, c)
	s.gen++
	clear(s.deltas)
}

// SetNode adds node or replaces its object. It reports whether anything a
// plugin sees changed (status heartbeats alone change nothing).
func (s *Snapshot) SetNode(node *corev1.Node) bool {
	rec := nodeRecord(node)
	n := s.byName[node.Name]
	if n != nil {
		if bytes.Equal(n.rec, rec) {
			return false
		}
		n.rec = rec
		s.countNode(n.facts, -1)
		n.facts = nodeFacts(node)
		s.countNode(n.facts, 1)
		s.record(change{op: hostapi.SchedOpNodeSet, node: n.index, rec: rec})
		return true
	}
	n = &nodeState{name: node.Name, rec: rec, facts: nodeFacts(node)}
	s.countNode(n.facts, 1)
	if k := len(s.free); k > 0 {
		n.index, s.free = s.free[k-1], s.free[:k-1]
		s.nodes[n.index] = n
	} else {
		n.index = int32(len(s.nodes))
		s.nodes = append(s.nodes, n)
	}
	n.pos = len(s.order)
	s.order = append(s.order, n.index)
	s.byName[n.name] = n
	s.record(change{op: hostapi.SchedOpNodeSet, node: n.index, rec: rec})
	if o := s.orphans[n.name]; o != nil {
		delete(s.orphans, n.name)
		for p := range o {
			s.attach(p, n)
		}
	}
	return true
}

// RemoveNode removes the named node; its pods stay known and rejoin the
// node if it comes back.
func (s *Snapshot) RemoveNode(name string) bool {
	n := s.byName[name]
	if n == nil {
		return false
	}
	for _, p := range n.pods {
		p.node, p.slot = nil, -1
		if p.affinity {
			s.affinityPods--
		}
		s.addOrphan(p)
	}
	n.pods = nil
	s.countNode(n.facts, -1)
	last := s.order[len(s.order)-1]
	s.order[n.pos] = last
	s.nodes[last].pos = n.pos
	s.order = s.order[:len(s.order)-1]
	s.nodes[n.index] = nil
	s.free = append(s.free, n.index)
	delete(s.byName, name)
	s.record(change{op: hostapi.SchedOpNodeRemove, node: n.index})
	return true
}

// SetPod adds or updates a pod bound to pod.Spec.NodeName (ignored when
// empty). Terminal pods (Succeeded, Failed) are removed instead.
func (s *Snapshot) SetPod(pod *corev1.Pod) {
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		s.RemovePod(pod.Namespace, pod.Name)
		return
	}
	r := podRequests(pod)
	s.place(pod, pod.Spec.NodeName, &r)
}

// assume places pod on node before its binding is stored.
func (s *Snapshot) assume(pod *corev1.Pod, node string, r *requests) { s.place(pod, node, r) }

// place records pod on node, emitting changes only if the summary or the
// node changed.
func (s *Snapshot) place(pod *corev1.Pod, node string, r *requests) {
	key := podKey{pod.Namespace, pod.Name}
	p := s.pods[key]
	if p == nil {
		var id uint32
		if k := len(s.freeIDs); k > 0 {
			id, s.freeIDs = s.freeIDs[k-1], s.freeIDs[:k-1]
		} else {
			s.nextID++
			id = s.nextID
		}
		p = &podState{key: key, id: id, slot: -1}
		s.pods[key] = p
	}
	p.uid, p.priority, p.terminating = pod.UID, priority(pod), pod.DeletionTimestamp != nil
	p.created = pod.CreationTimestamp.Time
	rec := podRecord(p.id, pod, r)
	if p.nodeName == node && bytes.Equal(p.rec, rec) {
		return
	}
	s.unplace(p)
	p.rec, p.req, p.nodeName = rec, *r, node
	a := pod.Spec.Affinity
	p.affinity = a != nil && (a.PodAffinity != nil || a.PodAntiAffinity != nil)
	if n := s.byName[node]; n != nil {
		s.attach(p, n)
	} else {
		s.addOrphan(p)
	}
}

// unplace takes p off its node (or out of the orphans).
func (s *Snapshot) unplace(p *podState) {
	if p.node != nil {
		s.detach(p)
	} else if o := s.orphans[p.nodeName]; o != nil {
		delete(o, p)
		if len(o) == 0 {
			delete(s.orphans, p.nodeName)
		}
	}
}

// addOrphan remembers a pod bound to a node the snapshot does not have.
func (s *Snapshot) addOrphan(p *podState) {
	o := s.orphans[p.nodeName]
	if o == nil {
		o = map[*podState]bool{}
		s.orphans[p.nodeName] = o
	}
	o[p] = true
}

// attach puts p on n.
func (s *Snapshot) attach(p *podState, n *nodeState) {
	p.node = n
	p.slot = len(n.pods)
	n.pods = append(n.pods, p)
	if p.affinity {
		s.affinityPods++
	}
	s.record(change{op: hostapi.SchedOpPodAdd, node: n.index, id: p.id, rec: p.rec})
}

// detach removes p from its node.
func (s *Snapshot) detach(p *podState) {
	n := p.node
	last := len(n.pods) - 1
	n.pods[p.slot] = n.pods[last]
	n.pods[p.slot].slot = p.slot
	n.pods[last] = nil
	n.pods = n.pods[:last]
	p.node, p.slot = nil, -1
	if p.affinity {
		s.affinityPods--
	}
	s.record(change{op: hostapi.SchedOpPodRemove, node: n.index, id: p.id})
}

// RemovePod forgets a pod.
func (s *Snapshot) RemovePod(namespace, name string) bool {
	key := podKey{namespace, name}
	p := s.pods[key]
	if p == nil {
		return false
	}
	s.unplace(p)
	delete(s.pods, key)
	s.freeIDs = append(s.freeIDs, p.id)
	return true
}

// PodNode returns the node the snapshot has the pod on ("" if none).
func (s *Snapshot) PodNode(namespace, name string) string {
	if p := s.pods[podKey{namespace, name}]; p != nil && p.node != nil {
		return p.node.name
	}
	return ""
}

// delta returns the encoded changes from base to the current generation,
// or nil if base is older than the log (the caller sends the full table).
func (s *Snapshot) delta(base uint64) *delta {
	s.deltaMu.Lock()
	defer s.deltaMu.Unlock()
	if base < s.logBase || base > s.gen {
		return nil
	}
	if d := s.deltas[base]; d != nil {
		return d
	}
	d := &delta{}
	for _, c := range s.log[base-s.logBase:] {
		d.ops = appendChange(d.ops, c)
		d.nops++
	}
	s.deltas[base] = d
	return d
}

// full returns the whole table as changes from an empty one.
func (s *Snapshot) full() *delta {
	s.deltaMu.Lock()
	defer s.deltaMu.Unlock()
	if d := s.deltas[0]; d != nil {
		return d
	}
	d := &delta{}
	idx := make([]int32, len(s.order))
	copy(idx, s.order)
	sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
	for _, i := range idx {
		n := s.nodes[i]
		d.ops = appendChange(d.ops, change{op: hostapi.SchedOpNodeSet, node: i, rec: n.rec})
		d.nops++
	}
	for _, i := range idx {
		for _, p := range s.nodes[i].pods {
			d.ops = appendChange(d.ops, change{op: hostapi.SchedOpPodAdd, node: i, id: p.id, rec: p.rec})
			d.nops++
		}
	}
	s.deltas[0] = d
	return d
}

// trim drops log entries every plugin has seen (generation <= minGen),
// and the oldest entries beyond maxLog.
func (s *Snapshot) trim(minGen uint64) {
	drop := 0
	if minGen > s.logBase {
		drop = int(min(minGen-s.logBase, uint64(len(s.log))))
	}
	if len(s.log)-drop > maxLog {
		drop = len(s.log) - maxLog/2
	}
	if drop < 1024 && drop < len(s.log)/2 {
		return
	}
	s.log = append(s.log[:0:0], s.log[drop:]...)
	s.logBase += uint64(drop)
	clear(s.deltas)
}

// appendChange encodes one op.
func appendChange(b []byte, c change) []byte {
	b = append(b, c.op)
	switch c.op {
	case hostapi.SchedOpNodeSet:
		b = hostapi.AppendU32(b, uint32(c.node))
		b = append(b, c.rec...)
	case hostapi.SchedOpNodeRemove:
		b = hostapi.AppendU32(b, uint32(c.node))
	case hostapi.SchedOpPodAdd:
		b = hostapi.AppendU32(b, uint32(c.node))
		b = append(b, c.rec...)
	case hostapi.SchedOpPodRemove:
		b = hostapi.AppendU32(b, uint32(c.node))
		b = hostapi.AppendU32(b, c.id)
	}
	return b
}

// nodeRecord encodes a SchedOpNodeSet record (after the index): name,
// allocatable and the node JSON without managedFields and condition
// heartbeat times, so heartbeats alone do not make a change.
func nodeRecord(node *corev1.Node) []byte {
	n := *node
	n.ObjectMeta = *node.ObjectMeta.DeepCopy()
	n.ManagedFields = nil
	n.ResourceVersion = ""
	if len(node.Status.Conditions) > 0 {
		n.Status.Conditions = make([]corev1.NodeCondition, len(node.Status.Conditions))
		copy(n.Status.Conditions, node.Status.Conditions)
		for i := range n.Status.Conditions {
			n.Status.Conditions[i].LastHeartbeatTime = metav1.Time{}
		}
	}
	if n.APIVersion == "" {
		n.APIVersion, n.Kind = "v1", "Node"
	}
	js, err := json.Marshal(&n)
	if err != nil {
		js = nil
	}
	b := hostapi.AppendStr(make([]byte, 0, 256+len(js)), node.Name)
	b = appendResources(b, allocatable(node))
	var flags uint8
	if node.Spec.Unschedulable {
		flags |= hostapi.SchedNodeUnschedulable
	}
	b = append(b, flags)
	b = appendStringMap(b, node.Labels)
	b = hostapi.AppendU16(b, uint16(len(node.Spec.Taints)))
	for _, t := range node.Spec.Taints {
		b = hostapi.AppendStr(b, t.Key)
		b = hostapi.AppendStr(b, t.Value)
		b = hostapi.AppendStr(b, string(t.Effect))
	}
	b = hostapi.AppendU16(b, uint16(len(node.Status.Images)))
	for _, im := range node.Status.Images {
		b = hostapi.AppendU16(b, uint16(len(im.Names)))
		for _, n := range im.Names {
			b = hostapi.AppendStr(b, n)
		}
		b = hostapi.AppendI64(b, im.SizeBytes)
	}
	return hostapi.AppendBlob(b, js)
}

// podRecord encodes a pod summary.
func podRecord(id uint32, pod *corev1.Pod, r *requests) []byte {
	b := hostapi.AppendU32(make([]byte, 0, 128), id)
	var flags uint8
	if pod.DeletionTimestamp != nil {
		flags |= hostapi.SchedPodTerminating
	}
	b = append(b, flags)
	b = hostapi.AppendStr(b, string(pod.UID))
	b = hostapi.AppendStr(b, pod.Namespace)
	b = hostapi.AppendStr(b, pod.Name)
	b = appendStringMap(b, pod.Labels)
	b = appendResources(b, r.list)
	b = hostapi.AppendI64(b, r.nonZeroCPU)
	b = hostapi.AppendI64(b, r.nonMem)
	var aff []byte
	if a := pod.Spec.Affinity; a != nil && (a.PodAffinity != nil || a.PodAntiAffinity != nil) {
		aff, _ = json.Marshal(a)
	}
	return hostapi.AppendBlob(b, aff)
}

// nodeFacts returns the hostapi.SchedWhenNode* facts of node.
func nodeFacts(node *corev1.Node) uint64 {
	var f uint64
	if node.Spec.Unschedulable {
		f |= hostapi.SchedWhenNodeUnschedulable
	}
	if len(node.Spec.Taints) > 0 {
		f |= hostapi.SchedWhenNodeTaints
	}
	if len(node.Status.Images) > 0 {
		f |= hostapi.SchedWhenNodeImages
	}
	return f
}

// countNode adds delta to the counts of the node facts f.
func (s *Snapshot) countNode(f uint64, delta int) {
	for i := range s.nodeFacts {
		if f&(hostapi.SchedWhenNodeUnschedulable<<i) != 0 {
			s.nodeFacts[i] += delta
		}
	}
}

// facts returns the hostapi.SchedWhenNode* and SchedWhenBoundPod* facts
// that hold for the snapshot.
func (s *Snapshot) facts() uint64 {
	var f uint64
	for i, c := range s.nodeFacts {
		if c > 0 {
			f |= hostapi.SchedWhenNodeUnschedulable << i
		}
	}
	if s.affinityPods > 0 {
		f |= hostapi.SchedWhenBoundPodAffinity
	}
	return f
}
