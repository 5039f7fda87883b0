package gc_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/controllers/garbage-collector/gc"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

func rs(name, uid, extra string) string {
	return `{apiVersion: apps/v1, kind: ReplicaSet, metadata: {name: ` + name + `, namespace: default, uid: ` + uid + extra + `}, spec: {}}`
}

func pod(name string, owners ...string) string {
	var refs []string
	for _, o := range owners {
		name, uid, _ := strings.Cut(o, "=")
		refs = append(refs, `{apiVersion: apps/v1, kind: ReplicaSet, name: `+name+`, uid: `+uid+`, controller: true, blockOwnerDeletion: true}`)
	}
	return `{apiVersion: v1, kind: Pod, metadata: {name: ` + name + `, namespace: default, ownerReferences: [` + strings.Join(refs, ",") + `]}, spec: {}}`
}

func names(c *plugintest.Cluster, res string) []string {
	var out []string
	for _, o := range c.List(res, "default") {
		out = append(out, plugintest.Path(o, "metadata", "name").(string))
	}
	return out
}

func TestCollector(t *testing.T) {
	for _, tc := range []struct {
		name     string
		objs     []string
		wantPods []string
		wantRSs  []string
		check    func(t *testing.T, c *plugintest.Cluster)
	}{
		{name: "owner gone: dependent deleted", objs: []string{pod("p", "a=uid-a")}, wantPods: nil},
		{name: "owner alive: dependent kept", objs: []string{rs("a", "uid-a", ""), pod("p", "a=uid-a")}, wantPods: []string{"p"}, wantRSs: []string{"a"}},
		{name: "owner recreated with another uid: dependent deleted", objs: []string{rs("a", "uid-new", ""), pod("p", "a=uid-old")}, wantRSs: []string{"a"}},
		{name: "one of two owners gone: reference dropped", objs: []string{rs("a", "uid-a", ""), pod("p", "a=uid-a", "b=uid-b")},
			wantPods: []string{"p"}, wantRSs: []string{"a"}, check: func(t *testing.T, c *plugintest.Cluster) {
				refs := plugintest.Path(c.Get("pods", "default", "p"), "metadata", "ownerReferences").([]any)
				if len(refs) != 1 || refs[0].(map[string]any)["uid"] != "uid-a" {
					t.Errorf("owner references %v, want only uid-a", refs)
				}
			}},
		{name: "orphan: dependents released, owner finalized", objs: []string{
			rs("a", "uid-a", ", deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [orphan]"), pod("p", "a=uid-a")},
			wantPods: []string{"p"}, check: func(t *testing.T, c *plugintest.Cluster) {
				if refs := plugintest.Path(c.Get("pods", "default", "p"), "metadata", "ownerReferences"); refs != nil {
					t.Errorf("orphaned pod still has owner references %v", refs)
				}
			}},
		{name: "foreground: dependents deleted, then the owner", objs: []string{
			rs("a", "uid-a", ", deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [foregroundDeletion]"), pod("p", "a=uid-a"), pod("q", "a=uid-a")}},
		{name: "other finalizers are kept", objs: []string{
			rs("a", "uid-a", ", deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [orphan, example.com/keep]")},
			wantRSs: []string{"a"}, check: func(t *testing.T, c *plugintest.Cluster) {
				fins := plugintest.Path(c.Get("replicasets.apps", "default", "a"), "metadata", "finalizers").([]any)
				if len(fins) != 1 || fins[0] != "example.com/keep" {
					t.Errorf("finalizers %v, want only example.com/keep", fins)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := plugintest.NewCluster(t, tc.objs...)
			h := plugintest.NewController(t, gc.New(), gc.Manifest(), gc.Spec(), "", c)
			h.Converge(t, 5, false)
			if got := names(c, "pods"); !slices.Equal(got, tc.wantPods) {
				t.Errorf("pods %v, want %v", got, tc.wantPods)
			}
			if got := names(c, "replicasets.apps"); !slices.Equal(got, tc.wantRSs) {
				t.Errorf("replicasets %v, want %v", got, tc.wantRSs)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestForegroundWaitsForBlockingDependents(t *testing.T) {
	c := plugintest.NewCluster(t,
		rs("a", "uid-a", ", deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [foregroundDeletion]"),
		`{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: default, finalizers: [example.com/slow], ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: a, uid: uid-a, blockOwnerDeletion: true}]}, spec: {}}`)
	h := plugintest.NewController(t, gc.New(), gc.Manifest(), gc.Spec(), "", c)
	res := h.Reconcile(t, "replicasets.apps", "default", "a")
	if res.Error != "" || res.RequeueAfterMillis == 0 {
		t.Errorf("result %+v, want a requeue while the dependent blocks", res)
	}
	if c.Get("replicasets.apps", "default", "a") == nil {
		t.Fatal("owner deleted while a blocking dependent exists")
	}
	if plugintest.Path(c.Get("pods", "default", "p"), "metadata", "deletionTimestamp") == nil {
		t.Error("blocking dependent not deleted")
	}
	c.Remove("pods", "default", "p")
	h.Reconcile(t, "replicasets.apps", "default", "a")
	if c.Get("replicasets.apps", "default", "a") != nil {
		t.Error("owner not finalized once its dependents are gone")
	}
}
