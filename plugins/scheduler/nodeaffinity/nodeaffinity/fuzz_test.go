package nodeaffinity

import (
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/cluster"
	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
)

// FuzzRequired feeds arbitrary spec.affinity JSON to the parser and checks
// that the indexed evaluation agrees with the direct one on a few nodes.
func FuzzRequired(f *testing.F) {
	for _, s := range []string{
		`{"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}`,
		`{"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}, {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}]}}}`,
		`{"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}`,
		`null`, `{}`, `{"nodeAffinity": []}`,
	} {
		f.Add([]byte(s))
	}
	s := cluster.New()
	nodes := []selector.Labels{
		{{Key: "zone", Value: "a"}, {Key: "cores", Value: "8"}},
		{{Key: "zone", Value: "b"}},
		{{Key: "cores", Value: "x"}},
		nil,
	}
	for i, l := range nodes {
		s.SetNode(i, "n"+string(rune('0'+i)), l)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRequired(map[string]string{"zone": "a"}, data)
		if err != nil {
			return
		}
		var set cluster.Bits
		r.Nodes(s, &set)
		for i, l := range nodes {
			if got, want := set.Has(i), r.Matches(s.Name(i), l); got != want {
				t.Fatalf("node %d: indexed %v, direct %v", i, got, want)
			}
		}
	})
}
