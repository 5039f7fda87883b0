package interpodaffinity

import (
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
)

// FuzzParseAffinity feeds arbitrary spec.affinity JSON to the parser: it
// must never panic, and what it accepts must be usable (keys set, matching
// callable).
func FuzzParseAffinity(f *testing.F) {
	for _, s := range []string{
		`{"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "zone"}]}}`,
		`{"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 3, "podAffinityTerm": {"labelSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}, "namespaceSelector": {}, "topologyKey": "h", "matchLabelKeys": ["a"]}}]}}`,
		`{"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "z", "namespaces": ["a", "a"], "mismatchLabelKeys": ["b"]}]}}`,
		`null`, `{}`, `[]`, `{"podAffinity": 1}`,
	} {
		f.Add([]byte(s))
	}
	labels := selector.Labels{{Key: "a", Value: "x"}, {Key: "b", Value: "y"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAffinity(data, "default", labels)
		if err != nil || a == nil {
			return
		}
		for _, list := range [][]Term{a.RequiredAffinity, a.RequiredAnti, a.PreferredAffinity, a.PreferredAnti} {
			for i := range list {
				if list[i].Key() == "" || list[i].TopologyKey == "" {
					t.Fatalf("accepted term without key or topology: %+v", list[i])
				}
				_ = list[i].Matches("default", labels)
			}
		}
	})
}
