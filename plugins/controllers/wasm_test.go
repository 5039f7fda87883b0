// Package controllers_test loads every built-in controller as Wasm
// through the real runtime and checks that its manifest and spec match
// the native package's, and that a reconcile of a missing object is a
// clean no-op.
package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/plugins/controllers/cronjob/cronjob"
	"github.com/tugboat-dev/tugboat/plugins/controllers/daemonset/daemonset"
	"github.com/tugboat-dev/tugboat/plugins/controllers/deployment/deployment"
	"github.com/tugboat-dev/tugboat/plugins/controllers/endpoints/endpoints"
	"github.com/tugboat-dev/tugboat/plugins/controllers/garbage-collector/gc"
	"github.com/tugboat-dev/tugboat/plugins/controllers/hpa/hpa"
	"github.com/tugboat-dev/tugboat/plugins/controllers/job/job"
	"github.com/tugboat-dev/tugboat/plugins/controllers/namespace/namespace"
	"github.com/tugboat-dev/tugboat/plugins/controllers/node-lifecycle/nodelifecycle"
	"github.com/tugboat-dev/tugboat/plugins/controllers/replicaset/replicaset"
	"github.com/tugboat-dev/tugboat/plugins/controllers/statefulset/statefulset"
	"github.com/tugboat-dev/tugboat/runtime"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

// emptyHost answers every get and delete with ErrNotFound and every list
// with nothing.
type emptyHost struct{}

func (emptyHost) Get(context.Context, hostapi.GetRequest) ([]byte, error) {
	return nil, errdefs.ErrNotFound
}
func (emptyHost) List(context.Context, hostapi.ListRequest) ([][]byte, error) {
	return nil, nil
}
func (emptyHost) Write(_ context.Context, req hostapi.WriteRequest) ([]byte, error) {
	if req.Verb == hostapi.VerbDelete {
		return nil, errdefs.ErrNotFound
	}
	return nil, errors.New("unexpected write")
}

func TestBuiltinControllersAsWasm(t *testing.T) {
	// The compilation cache is shared across runs (like plugintest's), so
	// only the first run compiles the modules.
	cache := filepath.Join(os.TempDir(), fmt.Sprintf("tugboat-plugintest-%d", os.Getuid()), "controllers-cache")
	e, err := runtime.NewEngine(context.Background(), runtime.Config{CacheDir: cache, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	for _, tc := range []struct {
		dir      string
		manifest sdk.Manifest
		spec     sdk.ControllerSpec
		primary  string
	}{
		{"replicaset", replicaset.Manifest(), replicaset.Spec(), replicaset.ReplicaSets},
		{"deployment", deployment.Manifest(), deployment.Spec(), deployment.Deployments},
		{"garbage-collector", gc.Manifest(), gc.Spec(), "pods"},
		{"namespace", namespace.Manifest(), namespace.Spec(), namespace.Namespaces},
		{"endpoints", endpoints.Manifest(), endpoints.Spec(), endpoints.Services},
		{"job", job.Manifest(), job.Spec(), job.Jobs},
		{"node-lifecycle", nodelifecycle.Manifest(), nodelifecycle.Spec(), nodelifecycle.Nodes},
		{"daemonset", daemonset.Manifest(), daemonset.Spec(), daemonset.DaemonSets},
		{"statefulset", statefulset.Manifest(), statefulset.Spec(), statefulset.StatefulSets},
		{"cronjob", cronjob.Manifest(), cronjob.Spec(), cronjob.CronJobs},
		{"hpa", hpa.Manifest(), hpa.Spec(), hpa.HPAs},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			p, err := e.Load(context.Background(), runtime.PluginConfig{Name: tc.dir, Path: plugintest.BuildWasm(t, tc.dir), Host: emptyHost{}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Close(context.Background()) })
			c, err := runtime.NewController(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Manifest(); !reflect.DeepEqual(got, tc.manifest) {
				t.Errorf("manifest %+v, want %+v", got, tc.manifest)
			}
			if got := c.Spec(); !reflect.DeepEqual(got, tc.spec) {
				t.Errorf("spec %+v, want %+v", got, tc.spec)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := c.Reconcile(ctx, hostapi.ReconcileRequest{Resource: tc.primary, Namespace: "default", Name: "missing"})
			if err != nil || res.Error != "" || res.RequeueAfterMillis != 0 {
				t.Errorf("reconcile of a missing object: %+v, %v", res, err)
			}
		})
	}
}
