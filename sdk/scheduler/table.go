package scheduler

import (
	"errors"
	"strconv"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Snapshot is the instance's table of every node in the cluster, with the
// pods bound or assumed to each. The SDK updates it before each call;
// plugins only read it.
type Snapshot struct {
	keepRaw bool // the plugin wants Node.Raw
	// lean: the plugin reads only resources (ResourcesOnly); labels,
	// taints, images and pod names are not decoded.
	lean   bool
	nodes  []*Node // by index; nil for free indexes
	byName map[string]*Node
	// pods by host id: the host keeps ids dense (it reuses freed ones),
	// and a slice costs a fraction of a map in Wasm.
	pods  []*PodInfo
	npods int
	count int
	gen   uint64
}

func newSnapshot() *Snapshot {
	return &Snapshot{byName: map[string]*Node{}}
}

// Node returns the node at index, or nil.
func (s *Snapshot) Node(index int32) *Node {
	if index < 0 || int(index) >= len(s.nodes) {
		return nil
	}
	return s.nodes[index]
}

// NodeByName returns the named node, or nil.
func (s *Snapshot) NodeByName(name string) *Node { return s.byName[name] }

// Nodes returns the table by index; free indexes hold nil. The slice is
// the SDK's: do not modify it or keep it across calls.
func (s *Snapshot) Nodes() []*Node { return s.nodes }

// Len returns the number of nodes.
func (s *Snapshot) Len() int { return s.count }

// MaxIndex returns one more than the highest node index in use (the
// length of Nodes), for sizing per-index arrays and bitsets.
func (s *Snapshot) MaxIndex() int { return len(s.nodes) }

// Pod returns the bound or assumed pod with the host's id, or nil.
func (s *Snapshot) Pod(id uint32) *PodInfo {
	if int64(id) >= int64(len(s.pods)) {
		return nil
	}
	return s.pods[id]
}

// NumPods returns the number of bound or assumed pods.
func (s *Snapshot) NumPods() int { return s.npods }

// Pods calls fn for every bound or assumed pod until it returns false.
func (s *Snapshot) Pods(fn func(*PodInfo) bool) {
	for _, p := range s.pods {
		if p != nil && !fn(p) {
			return
		}
	}
}

// Generation is the host generation the table reflects.
func (s *Snapshot) Generation() uint64 { return s.gen }

// hooks are the plugin's optional watchers.
type hooks struct {
	node  NodeWatcher
	pod   PodWatcher
	reset Resetter
}

var errTable = errors.New("sdk: scheduler changes do not match the node table")

// reset empties the table.
func (s *Snapshot) reset(h *hooks) {
	if h.reset != nil {
		h.reset.Reset()
	}
	clear(s.nodes)
	s.nodes = s.nodes[:0]
	clear(s.byName)
	clear(s.pods)
	s.pods = s.pods[:0]
	s.npods = 0
	s.count = 0
	s.gen = 0
}

// apply reads nops changes from r and applies them, calling the hooks.
func (s *Snapshot) apply(r *hostapi.SchedReader, nops uint32, h *hooks) error {
	for range nops {
		var err error
		switch op := r.U8(); op {
		case hostapi.SchedOpNodeSet:
			err = s.setNode(r, h)
		case hostapi.SchedOpNodeRemove:
			err = s.removeNode(r.U32(), h)
		case hostapi.SchedOpPodAdd:
			err = s.addPod(r, h)
		case hostapi.SchedOpPodRemove:
			idx := r.U32()
			err = s.removePod(idx, r.U32(), h)
		default:
			err = errors.New("sdk: unknown scheduler op " + strconv.Itoa(int(op)))
		}
		if err == nil {
			err = r.Err()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Snapshot) setNode(r *hostapi.SchedReader, h *hooks) error {
	idx := r.U32()
	name := r.Str()
	var alloc Resources
	readResources(r, &alloc)
	flags := r.U8()
	var labels map[string]string
	var taints []Taint
	var images []Image
	if s.lean {
		labels = noLabels
		skipNodeDetails(r)
	} else {
		labels = readStringMap(r, nil, true)
		for range int(r.U16()) {
			taints = append(taints, Taint{Key: r.Str(), Value: r.Str(), Effect: r.Str()})
		}
		for range int(r.U16()) {
			var im Image
			for range int(r.U16()) {
				im.Names = append(im.Names, r.Str())
			}
			im.SizeBytes = r.I64()
			images = append(images, im)
		}
	}
	raw := r.Blob()
	if err := r.Err(); err != nil {
		return err
	}
	if idx > 1<<24 {
		return errTable
	}
	for int(idx) >= len(s.nodes) {
		s.nodes = append(s.nodes, nil)
	}
	n := s.nodes[idx]
	if n != nil && n.Name != name {
		if err := s.removeNode(idx, h); err != nil {
			return err
		}
		n = nil
	}
	var old *Node
	if n == nil {
		n = &Node{Index: int32(idx), Name: name}
		s.nodes[idx] = n
		s.byName[name] = n
		s.count++
	} else {
		cp := *n
		old = &cp
	}
	n.Allocatable = alloc
	n.Unschedulable = flags&hostapi.SchedNodeUnschedulable != 0
	n.Labels, n.Taints, n.Images = labels, taints, images
	if s.keepRaw {
		n.Raw = rawjson.Value(append([]byte(nil), raw...))
	}
	n.Generation++
	if h.node != nil {
		h.node.NodeChanged(old, n)
	}
	return nil
}

func (s *Snapshot) removeNode(idx uint32, h *hooks) error {
	if int(idx) >= len(s.nodes) || s.nodes[idx] == nil {
		return errTable
	}
	n := s.nodes[idx]
	for len(n.Pods) > 0 {
		p := n.Pods[len(n.Pods)-1]
		if err := s.removePod(idx, p.ID, h); err != nil {
			return err
		}
	}
	s.nodes[idx] = nil
	delete(s.byName, n.Name)
	s.count--
	for len(s.nodes) > 0 && s.nodes[len(s.nodes)-1] == nil {
		s.nodes = s.nodes[:len(s.nodes)-1]
	}
	if h.node != nil {
		h.node.NodeChanged(n, nil)
	}
	return nil
}

func (s *Snapshot) addPod(r *hostapi.SchedReader, h *hooks) error {
	idx := r.U32()
	p := &PodInfo{ID: r.U32()}
	flags := r.U8()
	p.Terminating = flags&hostapi.SchedPodTerminating != 0
	if s.lean {
		for range 3 {
			r.StrBytes()
		}
		for range 2 * int(r.U16()) {
			r.StrBytes()
		}
		p.Labels = noLabels
	} else {
		p.UID = r.Str()
		p.Namespace = r.Str()
		p.Name = r.Str()
		nl := int(r.U16())
		p.Labels = make(map[string]string, nl)
		for range nl {
			k := r.Str()
			p.Labels[k] = r.Str()
		}
	}
	readResources(r, &p.Requests)
	p.NonZeroMilliCPU = r.I64()
	p.NonZeroMemory = r.I64()
	if aff := r.Blob(); len(aff) > 0 {
		p.Affinity = rawjson.Value(append([]byte(nil), aff...))
	}
	if err := r.Err(); err != nil {
		return err
	}
	if int(idx) >= len(s.nodes) || s.nodes[idx] == nil {
		return errTable
	}
	if p.ID > 1<<26 {
		return errTable
	}
	if old := s.Pod(p.ID); old != nil {
		// A re-add replaces (assumed -> bound, or a changed summary).
		if err := s.removePod(uint32(old.Node.Index), old.ID, h); err != nil {
			return err
		}
	}
	n := s.nodes[idx]
	p.Node = n
	p.slot = len(n.Pods)
	n.Pods = append(n.Pods, p)
	n.Requested.Add(&p.Requests)
	n.NonZeroMilliCPU += p.NonZeroMilliCPU
	n.NonZeroMemory += p.NonZeroMemory
	n.Generation++
	for int(p.ID) >= len(s.pods) {
		s.pods = append(s.pods, nil)
	}
	s.pods[p.ID] = p
	s.npods++
	if h.pod != nil {
		h.pod.PodAdded(p)
	}
	return nil
}

func (s *Snapshot) removePod(idx, id uint32, h *hooks) error {
	p := s.Pod(id)
	if p == nil || uint32(p.Node.Index) != idx {
		return errTable
	}
	n := p.Node
	last := len(n.Pods) - 1
	n.Pods[p.slot] = n.Pods[last]
	n.Pods[p.slot].slot = p.slot
	n.Pods[last] = nil
	n.Pods = n.Pods[:last]
	n.Requested.Sub(&p.Requests)
	n.NonZeroMilliCPU -= p.NonZeroMilliCPU
	n.NonZeroMemory -= p.NonZeroMemory
	n.Generation++
	s.pods[id] = nil
	s.npods--
	if h.pod != nil {
		h.pod.PodRemoved(p)
	}
	return nil
}

// readResources reads a resources list into res.
func readResources(r *hostapi.SchedReader, res *Resources) {
	n := int(r.U8())
	for range n {
		id, name, v := r.Resource()
		switch id {
		case hostapi.SchedResCPU:
			res.MilliCPU = v
		case hostapi.SchedResMemory:
			res.Memory = v
		case hostapi.SchedResEphemeralStorage:
			res.EphemeralStorage = v
		case hostapi.SchedResPods:
			res.Pods = v
		default:
			if res.Scalar == nil {
				res.Scalar = make(map[string]int64, n)
			}
			res.Scalar[string(name)] = v
		}
	}
}

// noLabels is the empty label map of lean tables (never written).
var noLabels = map[string]string{}

// skipNodeDetails steps over a node record's labels, taints and images.
func skipNodeDetails(r *hostapi.SchedReader) {
	for range 2 * int(r.U16()) {
		r.StrBytes()
	}
	for range 3 * int(r.U16()) {
		r.StrBytes()
	}
	for range int(r.U16()) {
		for range int(r.U16()) {
			r.StrBytes()
		}
		r.I64()
	}
}
