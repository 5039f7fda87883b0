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
	"github.com/tugboat-dev/tugboat/plugins/controllers/hpa/hpa"
	"github.com/tugboat-dev/tugboat/plugins/controllers/statefulset/statefulset"
	"github.com/tugboat-dev/tugboat/runtime"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

// noObjects is a host without objects: gets and deletes answer
// ErrNotFound, lists nothing, other writes fail.
type noObjects struct{}

func (noObjects) Get(context.Context, hostapi.GetRequest) ([]byte, error) {
	return nil, errdefs.ErrNotFound
}
func (noObjects) List(context.Context, hostapi.ListRequest) ([][]byte, error) { return nil, nil }
func (noObjects) Write(_ context.Context, req hostapi.WriteRequest) ([]byte, error) {
	if req.Verb == hostapi.VerbDelete {
		return nil, errdefs.ErrNotFound
	}
	return nil, errors.New("unexpected write")
}

// TestWorkloadControllersAsWasm loads the workload controllers (daemonset,
// statefulset, cronjob, hpa) as Wasm through the real runtime: manifest
// and spec match the native packages', and a reconcile of a missing object
// is a clean no-op.
func TestWorkloadControllersAsWasm(t *testing.T) {
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
		{"daemonset", daemonset.Manifest(), daemonset.Spec(), daemonset.DaemonSets},
		{"statefulset", statefulset.Manifest(), statefulset.Spec(), statefulset.StatefulSets},
		{"cronjob", cronjob.Manifest(), cronjob.Spec(), cronjob.CronJobs},
		{"hpa", hpa.Manifest(), hpa.Spec(), hpa.HPAs},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			p, err := e.Load(context.Background(), runtime.PluginConfig{Name: tc.dir, Path: plugintest.BuildWasm(t, tc.dir), Host: noObjects{}})
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
