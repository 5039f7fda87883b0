package selector

import (
	"encoding/json"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// TestLabelSelectorMatchesApimachinery checks every selector against
// apimachinery's metav1.LabelSelectorAsSelector on a set of label sets.
func TestLabelSelectorMatchesApimachinery(t *testing.T) {
	selectors := []string{
		`null`,
		`{}`,
		`{"matchLabels": {"app": "web"}}`,
		`{"matchLabels": {"app": "web", "tier": "front"}}`,
		`{"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}`,
		`{"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}`,
		`{"matchExpressions": [{"key": "tier", "operator": "Exists"}]}`,
		`{"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}`,
		`{"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["back"]}]}`,
	}
	sets := []map[string]string{
		nil,
		{"app": "web"},
		{"app": "db"},
		{"app": "web", "tier": "front"},
		{"app": "web", "tier": "back"},
		{"tier": "front"},
		{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": "8", "i": "9", "app": "web", "tier": "front"},
	}
	for _, js := range selectors {
		var ls *metav1.LabelSelector
		if err := json.Unmarshal([]byte(js), &ls); err != nil {
			t.Fatal(err)
		}
		want, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseLabelSelector(rawjson.Value(js))
		if err != nil {
			t.Fatalf("ParseLabelSelector(%s): %v", js, err)
		}
		if got.Empty() != want.Empty() {
			t.Errorf("%s: Empty() = %v, apimachinery %v", js, got.Empty(), want.Empty())
		}
		for _, m := range sets {
			if g, w := got.Matches(MakeLabels(m)), want.Matches(labels.Set(m)); g != w {
				t.Errorf("%s on %v: Matches = %v, apimachinery %v", js, m, g, w)
			}
		}
	}
}

func TestNodeRequirements(t *testing.T) {
	tests := []struct {
		name    string
		reqs    string
		labels  map[string]string
		want    bool
		wantErr bool
	}{
		{"gt matches", `[{"key": "cores", "operator": "Gt", "values": ["4"]}]`, map[string]string{"cores": "8"}, true, false},
		{"gt equal fails", `[{"key": "cores", "operator": "Gt", "values": ["8"]}]`, map[string]string{"cores": "8"}, false, false},
		{"lt matches", `[{"key": "cores", "operator": "Lt", "values": ["16"]}]`, map[string]string{"cores": "8"}, true, false},
		{"lt missing key", `[{"key": "cores", "operator": "Lt", "values": ["16"]}]`, nil, false, false},
		{"gt non-integer label", `[{"key": "cores", "operator": "Gt", "values": ["1"]}]`, map[string]string{"cores": "many"}, false, false},
		{"notin missing key", `[{"key": "zone", "operator": "NotIn", "values": ["a"]}]`, nil, true, false},
		{"and of two", `[{"key": "zone", "operator": "In", "values": ["a", "b"]}, {"key": "gpu", "operator": "Exists"}]`, map[string]string{"zone": "b", "gpu": "1"}, true, false},
		{"and of two, one fails", `[{"key": "zone", "operator": "In", "values": ["a", "b"]}, {"key": "gpu", "operator": "DoesNotExist"}]`, map[string]string{"zone": "b", "gpu": "1"}, false, false},
		{"gt two values", `[{"key": "cores", "operator": "Gt", "values": ["1", "2"]}]`, nil, false, true},
		{"gt not integer", `[{"key": "cores", "operator": "Gt", "values": ["x"]}]`, nil, false, true},
		{"in without values", `[{"key": "zone", "operator": "In"}]`, nil, false, true},
		{"exists with values", `[{"key": "zone", "operator": "Exists", "values": ["a"]}]`, nil, false, true},
		{"bad operator", `[{"key": "zone", "operator": "Equals", "values": ["a"]}]`, nil, false, true},
		{"no key", `[{"operator": "Exists"}]`, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs, err := ParseNodeSelectorRequirements(rawjson.Value(tt.reqs))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			s := Selector{Reqs: reqs}
			if got := s.Matches(MakeLabels(tt.labels)); got != tt.want {
				t.Fatalf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLabelSelectorRejectsNodeOperators(t *testing.T) {
	_, err := ParseLabelSelector(rawjson.Value(`{"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}`))
	if err == nil {
		t.Fatal("Gt accepted in a label selector")
	}
}

func TestParseLabels(t *testing.T) {
	l, err := ParseLabels(rawjson.Value(`{"b": "2", "a": "1", "c": "3"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 3 || l[0].Key != "a" || l[2].Key != "c" {
		t.Fatalf("labels not sorted: %v", l)
	}
	if v, ok := l.Get("b"); !ok || v != "2" {
		t.Fatalf("Get(b) = %q %v", v, ok)
	}
	if _, err := ParseLabels(rawjson.Value(`{"a": 1}`)); err == nil {
		t.Fatal("non-string label value accepted")
	}
}

func TestSelectorKey(t *testing.T) {
	a, _ := ParseLabelSelector(rawjson.Value(`{"matchLabels": {"app": "web", "x": "y"}}`))
	b, _ := ParseLabelSelector(rawjson.Value(`{"matchLabels": {"x": "y", "app": "web"}}`))
	c, _ := ParseLabelSelector(rawjson.Value(`{"matchLabels": {"app": "webx"}}`))
	ka, kb, kc := string(a.AppendKey(nil)), string(b.AppendKey(nil)), string(c.AppendKey(nil))
	if ka != kb {
		t.Fatalf("equal selectors, different keys %q %q", ka, kb)
	}
	if ka == kc {
		t.Fatalf("different selectors, same key %q", ka)
	}
	if n := string(NothingSelector.AppendKey(nil)); n == string((&Selector{}).AppendKey(nil)) {
		t.Fatal("nothing and everything share a key")
	}
}
