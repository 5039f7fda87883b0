package cluster

// Counter counts the pods matching a predicate, per node and per domain of
// some topology keys, and keeps the counts current as pods come and go (it
// is a Watcher). Built once with one scan of the candidate pods, it answers
// "how many matching pods in this node's zone" in O(1) afterwards.
type Counter struct {
	match  func(*Pod) bool
	topos  []*Topology
	counts [][]int32 // per topology, per domain
	inDom  []int     // per topology: number of matching pods on nodes with the key
	node   []int32   // per node
	total  int
	// LastUse is for the owner's cache eviction.
	LastUse uint64
}

// NewCounter counts the pods of s that match, per domain of each topology.
// namespaces lists the only namespaces whose pods may match (the initial
// scan looks at those only); nil means any. The counter watches s until
// Close.
func NewCounter(s *State, match func(*Pod) bool, topos []*Topology, namespaces []string) *Counter {
	c := &Counter{
		match:  match,
		topos:  topos,
		counts: make([][]int32, len(topos)),
		inDom:  make([]int, len(topos)),
	}
	add := func(p *Pod) bool {
		if match(p) {
			c.add(p, 1)
		}
		return true
	}
	if namespaces == nil {
		s.EachPod(add)
	} else {
		for _, ns := range namespaces {
			for _, p := range s.NamespacePods(ns) {
				add(p)
			}
		}
	}
	s.Watch(c)
	return c
}

// Close stops watching s.
func (c *Counter) Close(s *State) { s.Unwatch(c) }

// PodChanged implements Watcher.
func (c *Counter) PodChanged(p *Pod, delta int) {
	if c.match(p) {
		c.add(p, delta)
	}
}

func (c *Counter) add(p *Pod, delta int) {
	c.total += delta
	n := p.node
	for n >= len(c.node) {
		c.node = append(c.node, 0)
	}
	c.node[n] += int32(delta)
	for k, t := range c.topos {
		d := t.Domain(n)
		if d < 0 {
			continue
		}
		cs := c.counts[k]
		for int(d) >= len(cs) {
			cs = append(cs, 0)
		}
		cs[d] += int32(delta)
		c.counts[k] = cs
		c.inDom[k] += delta
	}
}

// Total returns the number of matching pods.
func (c *Counter) Total() int { return c.total }

// OnNode returns the number of matching pods on node i.
func (c *Counter) OnNode(i int) int32 {
	if i < len(c.node) {
		return c.node[i]
	}
	return 0
}

// PerNode returns the per-node counts (indexed by node; nodes beyond its
// length have none). The caller must not modify it.
func (c *Counter) PerNode() []int32 { return c.node }

// InDomain returns the number of matching pods in domain d of the k-th
// topology.
func (c *Counter) InDomain(k int, d int32) int32 {
	if d < 0 {
		return 0
	}
	if cs := c.counts[k]; int(d) < len(cs) {
		return cs[d]
	}
	return 0
}

// DomainCounts returns the per-domain counts of the k-th topology (indexed
// by domain id; domains beyond its length have none). The caller must not
// modify it.
func (c *Counter) DomainCounts(k int) []int32 { return c.counts[k] }

// Keyed returns the number of matching pods on nodes that carry the k-th
// topology's key.
func (c *Counter) Keyed(k int) int { return c.inDom[k] }
