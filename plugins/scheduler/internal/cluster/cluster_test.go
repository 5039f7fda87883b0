package cluster

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
)

func lbls(kv ...string) selector.Labels {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return selector.MakeLabels(m)
}

func TestBits(t *testing.T) {
	var a, b Bits
	for _, i := range []int{0, 63, 64, 200} {
		a.Set(i)
	}
	b.Set(63)
	b.Set(500)
	if !a.Has(200) || a.Has(201) || a.Count() != 4 {
		t.Fatalf("a = %v", a)
	}
	var c Bits
	c.CopyFrom(a)
	c.And(b)
	if c.Count() != 1 || !c.Has(63) {
		t.Fatalf("a&b = %v", c)
	}
	c.CopyFrom(a)
	c.Or(b)
	if c.Count() != 5 || !c.Has(500) {
		t.Fatalf("a|b = %v", c)
	}
	c.AndNot(b)
	want := Bits{1, 1, 0, 1 << 8} // a without 63, which b holds too
	if !c.Equal(want) {
		t.Fatalf("(a|b)&^b = %v, want %v", c, want)
	}
	var got []int
	a.Each(func(i int) { got = append(got, i) })
	if len(got) != 4 || got[0] != 0 || got[3] != 200 {
		t.Fatalf("Each = %v", got)
	}
}

func TestLabelIndex(t *testing.T) {
	s := New()
	s.SetNode(0, "n0", lbls("zone", "a", "disk", "ssd"))
	s.SetNode(1, "n1", lbls("zone", "b"))
	s.SetNode(3, "n3", lbls("zone", "a"))
	var b Bits
	s.WithValue(&b, "zone", "a")
	if b.Count() != 2 || !b.Has(0) || !b.Has(3) {
		t.Fatalf("zone=a: %v", b)
	}
	b.Reset()
	s.WithKey(&b, "disk")
	if b.Count() != 1 || !b.Has(0) {
		t.Fatalf("disk: %v", b)
	}
	gen := s.LabelGen()
	s.SetNode(0, "n0", lbls("zone", "b"))
	if s.LabelGen() == gen {
		t.Fatal("label change did not bump LabelGen")
	}
	b.Reset()
	s.WithKey(&b, "disk")
	if b.Count() != 0 {
		t.Fatalf("disk after relabel: %v", b)
	}
	b.Reset()
	s.WithValue(&b, "zone", "b")
	if b.Count() != 2 {
		t.Fatalf("zone=b after relabel: %v", b)
	}
	s.RemoveNode(1)
	if s.NumNodes() != 2 || s.Has(1) {
		t.Fatalf("after remove: %d nodes", s.NumNodes())
	}
	if i, ok := s.NodeByName("n3"); !ok || i != 3 {
		t.Fatalf("NodeByName(n3) = %d %v", i, ok)
	}
	if _, ok := s.NodeByName("n1"); ok {
		t.Fatal("removed node still found by name")
	}
}

// TestCounterMatchesRecount drives random node and pod changes and checks
// that a counter's per-node and per-domain counts always equal a recount.
func TestCounterMatchesRecount(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := New()
	zones := []string{"a", "b", "c"}
	const nodes = 20
	for i := 0; i < nodes; i++ {
		s.SetNode(i, "n"+strconv.Itoa(i), lbls("zone", zones[i%3], "host", "n"+strconv.Itoa(i)))
	}
	zone := s.Topology("zone")
	match := func(p *Pod) bool { v, _ := p.Labels.Get("app"); return v == "web" && p.Namespace == "default" }
	c := NewCounter(s, match, []*Topology{zone, s.Topology("host")}, nil)
	podN := 0
	for step := 0; step < 2000; step++ {
		switch op := r.IntN(10); {
		case op < 5:
			podN++
			app := []string{"web", "db"}[r.IntN(2)]
			ns := []string{"default", "other"}[r.IntN(2)]
			s.AddPod(r.IntN(nodes), &Pod{ID: uint32(podN), Namespace: ns, Labels: lbls("app", app)})
		case op < 8:
			s.RemovePod(uint32(r.IntN(podN + 1)))
		case op < 9:
			i := r.IntN(nodes)
			if r.IntN(4) == 0 {
				s.SetNode(i, "n"+strconv.Itoa(i), lbls("host", "n"+strconv.Itoa(i))) // loses its zone
			} else {
				s.SetNode(i, "n"+strconv.Itoa(i), lbls("zone", zones[r.IntN(3)], "host", "n"+strconv.Itoa(i)))
			}
		default:
			i := r.IntN(nodes)
			if r.IntN(2) == 0 {
				s.RemoveNode(i)
			} else {
				s.SetNode(i, "n"+strconv.Itoa(i), lbls("zone", zones[r.IntN(3)], "host", "n"+strconv.Itoa(i)))
			}
		}
		// Recount.
		perZone := map[string]int32{}
		total, keyed := 0, 0
		for i := 0; i < nodes; i++ {
			var n int32
			for _, p := range s.NodePods(i) {
				if match(p) {
					n++
				}
			}
			if got := c.OnNode(i); got != n {
				t.Fatalf("step %d: node %d count %d, want %d", step, i, got, n)
			}
			total += int(n)
			if z, ok := s.Labels(i).Get("zone"); ok && s.Has(i) {
				perZone[z] += n
				keyed += int(n)
				if d := zone.Domain(i); d < 0 || zone.Value(d) != z {
					t.Fatalf("step %d: node %d domain %d, want %s", step, i, d, z)
				}
			} else if zone.Domain(i) >= 0 {
				t.Fatalf("step %d: node %d without zone has domain %d", step, i, zone.Domain(i))
			}
		}
		if c.Total() != total || c.Keyed(0) != keyed {
			t.Fatalf("step %d: total %d keyed %d, want %d %d", step, c.Total(), c.Keyed(0), total, keyed)
		}
		for _, z := range zones {
			d, ok := zone.ID(z)
			if !ok {
				continue
			}
			if got := c.InDomain(0, d); got != perZone[z] {
				t.Fatalf("step %d: zone %s count %d, want %d", step, z, got, perZone[z])
			}
		}
	}
	c.Close(s)
	if len(s.watchers) != 0 {
		t.Fatal("Close left the watcher registered")
	}
}
