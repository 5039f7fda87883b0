package kube_test

import (
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/controllers/internal/kube"
	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

func TestLabelSelector(t *testing.T) {
	for _, tc := range []struct {
		sel     string
		str     string
		matches map[string]bool // labels "k=v" -> want
		err     bool
	}{
		{sel: `{"matchLabels":{"app":"web"}}`, str: "app=web", matches: map[string]bool{"app=web": true, "app=db": false, "": false}},
		{sel: `{"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]}]}`,
			str: "app=web,tier in (a,b)", matches: map[string]bool{"app=web,tier=a": true, "app=web,tier=c": false, "app=web": false}},
		{sel: `{"matchExpressions":[{"key":"tier","operator":"NotIn","values":["a"]},{"key":"x","operator":"Exists"},{"key":"y","operator":"DoesNotExist"}]}`,
			str: "tier notin (a),x,!y", matches: map[string]bool{"x=1": true, "x=1,tier=a": false, "x=1,y=2": false, "tier=b": false}},
		{sel: `{}`, str: "", matches: map[string]bool{"": true, "app=x": true}},
		{sel: `{"matchExpressions":[{"key":"tier","operator":"In"}]}`, err: true},
		{sel: `{"matchExpressions":[{"key":"tier","operator":"Near","values":["a"]}]}`, err: true},
	} {
		t.Run(tc.sel, func(t *testing.T) {
			s, err := kube.LabelSelector(rawjson.Value(tc.sel), true)
			if tc.err {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.String() != tc.str {
				t.Errorf("String() = %q, want %q", s.String(), tc.str)
			}
			for labels, want := range tc.matches {
				m := map[string]string{}
				for _, kv := range splitNonEmpty(labels) {
					k, v, _ := cut(kv)
					m[k] = v
				}
				if got := s.Matches(m); got != want {
					t.Errorf("Matches(%v) = %v, want %v", m, got, want)
				}
			}
		})
	}
	if none, _ := kube.LabelSelector(nil, false); none.Valid() || none.Matches(map[string]string{}) {
		t.Error("a missing selector matches")
	}
}

func splitNonEmpty(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

func cut(kv string) (string, string, bool) {
	for i := range len(kv) {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

func TestScaledValue(t *testing.T) {
	for _, tc := range []struct {
		v       string
		total   int64
		roundUp bool
		want    int64
	}{
		{`"25%"`, 10, true, 3}, {`"25%"`, 10, false, 2}, {`3`, 10, true, 3}, {`"0%"`, 10, true, 0},
		{`"100%"`, 7, false, 7}, {`"50%"`, 1, true, 1}, {`"50%"`, 1, false, 0},
	} {
		if got := kube.ScaledValue(rawjson.Value(tc.v), true, "25%", tc.total, tc.roundUp); got != tc.want {
			t.Errorf("ScaledValue(%s, %d, up=%v) = %d, want %d", tc.v, tc.total, tc.roundUp, got, tc.want)
		}
	}
	if got := kube.ScaledValue(nil, false, "25%", 4, true); got != 1 {
		t.Errorf("default 25%% of 4 = %d, want 1", got)
	}
}

func TestDeleteFirst(t *testing.T) {
	unscheduled := &kube.Pod{Phase: "Pending"}
	pending := &kube.Pod{Phase: "Pending", NodeName: "n"}
	notReady := &kube.Pod{Phase: "Running", NodeName: "n"}
	ready := &kube.Pod{Phase: "Running", NodeName: "n", Ready: true}
	order := []*kube.Pod{unscheduled, pending, notReady, ready}
	for i := range order {
		for j := i + 1; j < len(order); j++ {
			if !kube.DeleteFirst(order[i], order[j]) || kube.DeleteFirst(order[j], order[i]) {
				t.Errorf("pod %d should be deleted before pod %d", i, j)
			}
		}
	}
}
