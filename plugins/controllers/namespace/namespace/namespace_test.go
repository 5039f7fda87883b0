package namespace_test

import (
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/plugins/controllers/namespace/namespace"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

func TestNamespace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ns         string
		advance    time.Duration
		wantDelete bool
		wantRetry  bool
	}{
		{name: "active namespace is left alone", ns: `{apiVersion: v1, kind: Namespace, metadata: {name: a}, status: {phase: Active}}`},
		{name: "fresh deletion is left to the API server", wantRetry: true,
			ns: `{apiVersion: v1, kind: Namespace, metadata: {name: a, deletionTimestamp: '2026-01-01T00:00:00Z'}, status: {phase: Terminating}}`},
		{name: "stuck deletion is retried", advance: 5 * time.Second, wantDelete: true, wantRetry: false,
			ns: `{apiVersion: v1, kind: Namespace, metadata: {name: a, deletionTimestamp: '2026-01-01T00:00:00Z'}, status: {phase: Terminating}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := plugintest.NewCluster(t, tc.ns)
			c.Advance(tc.advance)
			h := plugintest.NewController(t, namespace.New(), namespace.Manifest(), namespace.Spec(), "", c)
			res := h.Reconcile(t, namespace.Namespaces, "", "a")
			if res.Error != "" {
				t.Fatal(res.Error)
			}
			deleted := false
			for _, w := range c.Writes() {
				deleted = deleted || (w.Verb == hostapi.VerbDelete && w.Name == "a")
			}
			if deleted != tc.wantDelete || (res.RequeueAfterMillis > 0) != tc.wantRetry {
				t.Errorf("deleted %v requeue %d ms; want delete %v retry %v", deleted, res.RequeueAfterMillis, tc.wantDelete, tc.wantRetry)
			}
		})
	}
}
