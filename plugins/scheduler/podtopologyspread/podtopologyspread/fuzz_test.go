package podtopologyspread

import (
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/scheduler/internal/selector"
)

// FuzzParseConstraints feeds arbitrary topologySpreadConstraints JSON to
// the parser: it must never panic, and accepted constraints must be valid.
func FuzzParseConstraints(f *testing.F) {
	for _, s := range []string{
		`[{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"a": "b"}}}]`,
		`[{"maxSkew": 2, "minDomains": 3, "topologyKey": "h", "whenUnsatisfiable": "ScheduleAnyway", "nodeAffinityPolicy": "Ignore", "nodeTaintsPolicy": "Honor", "matchLabelKeys": ["a"]}]`,
		`null`, `[]`, `{}`, `[1]`, `[{"maxSkew": -1}]`,
	} {
		f.Add([]byte(s))
	}
	labels := selector.Labels{{Key: "a", Value: "x"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := ParseConstraints(data, labels)
		if err != nil {
			return
		}
		for _, c := range cs {
			if c.MaxSkew <= 0 || c.TopologyKey == "" || c.MinDomains < 0 {
				t.Fatalf("accepted invalid constraint %+v", c)
			}
		}
	})
}
