// Package cluster is the node and pod table the built-in scheduler plugins
// keep inside their guest, updated incrementally from the host's node deltas:
// node labels with a label index (key -> nodes, key=value -> nodes), topology
// domains per label key (node -> interned value), the bound pods of every
// node, and watchers that keep per-domain pod counts current as pods come
// and go, so that a plugin answers for one pod without scanning every node
// and every pod.
//
// A State is not safe for concurrent use; a plugin instance owns one.
package cluster

import (
	"slices"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
)

// Pod is a bound (or assumed) pod as the plugins see it.
type Pod struct {
	// ID identifies the pod across changes (the host's pod id).
	ID        uint32
	Namespace string
	Name      string
	Labels    selector.Labels
	// Terminating is set for pods with a deletionTimestamp.
	Terminating bool
	// Ext is plugin-specific data parsed once when the pod is added (for
	// example InterPodAffinity's terms).
	Ext any

	node   int // node index
	nodeAt int // position in the node's pod list
	nsAt   int // position in the namespace's pod list
}

// Node returns the index of the node the pod is bound to.
func (p *Pod) Node() int { return p.node }

// Watcher is told about every pod added to (delta +1) or removed from
// (delta -1) the state, including the moves a node label change causes (the
// pods of the node are removed under the old labels and added under the
// new ones).
type Watcher interface {
	PodChanged(p *Pod, delta int)
}

type node struct {
	name   string
	labels selector.Labels
	pods   []*Pod
}

type keyIndex struct {
	all    Bits               // nodes having the key
	values map[string][]int32 // value -> nodes
}

// State holds the nodes and their pods.
type State struct {
	nodes    []node
	present  Bits
	count    int
	byName   map[string]int
	keys     map[string]*keyIndex
	topos    map[string]*Topology
	pods     map[uint32]*Pod
	byNS     map[string][]*Pod
	watchers []Watcher
	labelGen uint64
}

// New returns an empty state.
func New() *State {
	return &State{
		byName: map[string]int{},
		keys:   map[string]*keyIndex{},
		topos:  map[string]*Topology{},
		pods:   map[uint32]*Pod{},
		byNS:   map[string][]*Pod{},
	}
}

// NumNodes returns the number of nodes present.
func (s *State) NumNodes() int { return s.count }

// Present returns the set of node indexes present. The caller must not
// modify it.
func (s *State) Present() Bits { return s.present }

// Cap returns one more than the highest node index ever set.
func (s *State) Cap() int { return len(s.nodes) }

// LabelGen changes whenever any node's name or labels change, or a node is
// added or removed: results derived from labels alone stay valid while it
// holds.
func (s *State) LabelGen() uint64 { return s.labelGen }

// Has reports whether node i is present.
func (s *State) Has(i int) bool { return s.present.Has(i) }

// Name returns the name of node i.
func (s *State) Name(i int) string {
	if i < 0 || i >= len(s.nodes) {
		return ""
	}
	return s.nodes[i].name
}

// Labels returns the labels of node i.
func (s *State) Labels(i int) selector.Labels {
	if i < 0 || i >= len(s.nodes) {
		return nil
	}
	return s.nodes[i].labels
}

// NodePods returns the pods bound to node i. The caller must not modify the
// slice.
func (s *State) NodePods(i int) []*Pod {
	if i < 0 || i >= len(s.nodes) {
		return nil
	}
	return s.nodes[i].pods
}

// NodeByName returns the index of the node called name.
func (s *State) NodeByName(name string) (int, bool) {
	i, ok := s.byName[name]
	return i, ok
}

// SetNode adds node i or replaces its name and labels (labels must be sorted
// by key, as selector.ParseLabels returns them). The pods bound to it stay.
func (s *State) SetNode(i int, name string, labels selector.Labels) {
	if i < 0 {
		return
	}
	if i >= len(s.nodes) {
		s.nodes = append(s.nodes, make([]node, i+1-len(s.nodes))...)
	}
	n := &s.nodes[i]
	if s.present.Has(i) {
		if n.name == name && labelsEqual(n.labels, labels) {
			return
		}
		// The pods' domains may change: move them out and back in.
		for _, p := range n.pods {
			s.notify(p, -1)
		}
		s.unindex(i)
	} else {
		s.present.Set(i)
		s.count++
	}
	n.name = name
	n.labels = labels
	s.index(i)
	s.labelGen++
	for _, p := range n.pods {
		s.notify(p, +1)
	}
}

// RemoveNode removes node i and its pods.
func (s *State) RemoveNode(i int) {
	if !s.present.Has(i) {
		return
	}
	n := &s.nodes[i]
	for len(n.pods) > 0 {
		s.RemovePod(n.pods[len(n.pods)-1].ID)
	}
	s.unindex(i)
	s.present.Clear(i)
	s.count--
	*n = node{}
	s.labelGen++
}

func labelsEqual(a, b selector.Labels) bool {
	return slices.Equal(a, b)
}

func (s *State) index(i int) {
	n := &s.nodes[i]
	if n.name != "" {
		s.byName[n.name] = i
	}
	for _, kv := range n.labels {
		ki := s.keys[kv.Key]
		if ki == nil {
			ki = &keyIndex{values: map[string][]int32{}}
			s.keys[kv.Key] = ki
		}
		ki.all.Set(i)
		ki.values[kv.Value] = append(ki.values[kv.Value], int32(i))
	}
	for _, t := range s.topos {
		v, ok := n.labels.Get(t.Key)
		t.set(i, v, ok)
	}
}

func (s *State) unindex(i int) {
	n := &s.nodes[i]
	if j, ok := s.byName[n.name]; ok && j == i {
		delete(s.byName, n.name)
	}
	for _, kv := range n.labels {
		ki := s.keys[kv.Key]
		if ki == nil {
			continue
		}
		ki.all.Clear(i)
		list := ki.values[kv.Value]
		if k := slices.Index(list, int32(i)); k >= 0 {
			list[k] = list[len(list)-1]
			list = list[:len(list)-1]
		}
		if len(list) == 0 {
			delete(ki.values, kv.Value)
		} else {
			ki.values[kv.Value] = list
		}
		if len(ki.values) == 0 {
			delete(s.keys, kv.Key)
		}
	}
	for _, t := range s.topos {
		t.set(i, "", false)
	}
}

// WithKey adds to dst the nodes having label key.
func (s *State) WithKey(dst *Bits, key string) {
	if ki := s.keys[key]; ki != nil {
		dst.Or(ki.all)
	}
}

// WithValue adds to dst the nodes whose label key has value v.
func (s *State) WithValue(dst *Bits, key, v string) {
	if ki := s.keys[key]; ki != nil {
		for _, i := range ki.values[v] {
			dst.Set(int(i))
		}
	}
}

// EachValue calls fn with every value label key has on some node, with the
// nodes carrying it (the caller must not modify the slice).
func (s *State) EachValue(key string, fn func(v string, nodes []int32)) {
	if ki := s.keys[key]; ki != nil {
		for v, nodes := range ki.values {
			fn(v, nodes)
		}
	}
}

// AddPod binds pod p to node i (which must be present; the pod is ignored
// otherwise). A pod with the same ID is replaced.
func (s *State) AddPod(i int, p *Pod) {
	if !s.present.Has(i) {
		return
	}
	if old := s.pods[p.ID]; old != nil {
		s.RemovePod(p.ID)
	}
	p.node = i
	n := &s.nodes[i]
	p.nodeAt = len(n.pods)
	n.pods = append(n.pods, p)
	list := s.byNS[p.Namespace]
	p.nsAt = len(list)
	s.byNS[p.Namespace] = append(list, p)
	s.pods[p.ID] = p
	s.notify(p, +1)
}

// RemovePod removes the pod with id (a no-op if unknown).
func (s *State) RemovePod(id uint32) {
	p := s.pods[id]
	if p == nil {
		return
	}
	s.notify(p, -1)
	delete(s.pods, id)
	n := &s.nodes[p.node]
	last := n.pods[len(n.pods)-1]
	n.pods[p.nodeAt] = last
	last.nodeAt = p.nodeAt
	n.pods[len(n.pods)-1] = nil
	n.pods = n.pods[:len(n.pods)-1]
	list := s.byNS[p.Namespace]
	lastNS := list[len(list)-1]
	list[p.nsAt] = lastNS
	lastNS.nsAt = p.nsAt
	list[len(list)-1] = nil
	list = list[:len(list)-1]
	if len(list) == 0 {
		delete(s.byNS, p.Namespace)
	} else {
		s.byNS[p.Namespace] = list
	}
}

// Pod returns the pod with id.
func (s *State) Pod(id uint32) *Pod { return s.pods[id] }

// NumPods returns the number of pods.
func (s *State) NumPods() int { return len(s.pods) }

// NamespacePods returns the pods of namespace ns. The caller must not
// modify the slice.
func (s *State) NamespacePods(ns string) []*Pod { return s.byNS[ns] }

// EachPod calls fn for every pod until it returns false.
func (s *State) EachPod(fn func(p *Pod) bool) {
	for _, list := range s.byNS {
		for _, p := range list {
			if !fn(p) {
				return
			}
		}
	}
}

// Watch registers w for pod changes from now on.
func (s *State) Watch(w Watcher) { s.watchers = append(s.watchers, w) }

// Unwatch removes w.
func (s *State) Unwatch(w Watcher) {
	if k := slices.Index(s.watchers, w); k >= 0 {
		s.watchers = slices.Delete(s.watchers, k, k+1)
	}
}

func (s *State) notify(p *Pod, delta int) {
	for _, w := range s.watchers {
		w.PodChanged(p, delta)
	}
}

// Topology returns the domains of label key, created on first use (one
// scan of the nodes) and maintained incrementally afterwards.
func (s *State) Topology(key string) *Topology {
	if t := s.topos[key]; t != nil {
		return t
	}
	t := &Topology{Key: key, ids: map[string]int32{}}
	s.topos[key] = t
	s.present.Each(func(i int) {
		v, ok := s.nodes[i].labels.Get(key)
		t.set(i, v, ok)
	})
	return t
}

// Topology maps nodes to the interned values of one label key (their
// domains). Domain ids are dense and never reused.
type Topology struct {
	Key   string
	dom   []int32 // node -> domain id, -1 without the label
	ids   map[string]int32
	names []string
	nodes []int32 // domain -> number of nodes in it
}

// Domain returns the domain of node i, or -1 if the node lacks the label.
func (t *Topology) Domain(i int) int32 {
	if i < 0 || i >= len(t.dom) {
		return -1
	}
	return t.dom[i]
}

// Domains returns the per-node domain table (indexed by node, -1 without
// the label; nodes beyond its length lack the label). The caller must not
// modify it.
func (t *Topology) Domains() []int32 { return t.dom }

// NumDomains returns the number of domain ids handed out (including domains
// that no longer have nodes).
func (t *Topology) NumDomains() int { return len(t.names) }

// Value returns the label value of domain d.
func (t *Topology) Value(d int32) string { return t.names[d] }

// NodesIn returns the number of nodes in domain d.
func (t *Topology) NodesIn(d int32) int { return int(t.nodes[d]) }

// ID returns the domain of value v.
func (t *Topology) ID(v string) (int32, bool) {
	d, ok := t.ids[v]
	return d, ok
}

func (t *Topology) set(i int, v string, ok bool) {
	for i >= len(t.dom) {
		t.dom = append(t.dom, -1)
	}
	if old := t.dom[i]; old >= 0 {
		t.nodes[old]--
	}
	if !ok {
		t.dom[i] = -1
		return
	}
	d, seen := t.ids[v]
	if !seen {
		d = int32(len(t.names))
		t.ids[v] = d
		t.names = append(t.names, v)
		t.nodes = append(t.nodes, 0)
	}
	t.dom[i] = d
	t.nodes[d]++
}
