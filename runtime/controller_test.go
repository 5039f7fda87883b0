package runtime

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// fakeHost serves one ConfigMap per name with data.action = name and
// records writes.
type fakeHost struct {
	mu     sync.Mutex
	writes []hostapi.WriteRequest
}

func (h *fakeHost) Get(_ context.Context, req hostapi.GetRequest) ([]byte, error) {
	if req.Name == "missing" {
		return nil, errdefs.ErrNotFound
	}
	return []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"` + req.Name + `"},"data":{"action":"` + req.Name + `"}}`), nil
}

func (h *fakeHost) List(context.Context, hostapi.ListRequest) ([][]byte, error) { return nil, nil }

func (h *fakeHost) Write(_ context.Context, req hostapi.WriteRequest) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writes = append(h.writes, req)
	return []byte(`{}`), nil
}

func TestController(t *testing.T) {
	e, logs := newTestEngine(t)
	path := filepath.Join(testDir, "probe.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", path, ".")
	cmd.Dir = filepath.Join("..", "plugins", "controllers", "testdata", "probe")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	host := &fakeHost{}
	p := loadGuest(t, e, PluginConfig{Name: "probe", Path: path, Host: host})
	c, err := NewController(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Spec().Watches; len(w) != 1 || w[0] != (hostapi.Watch{Resource: "configmaps", Enqueue: hostapi.EnqueueSelf}) {
		t.Errorf("spec watches %+v", w)
	}
	for _, tc := range []struct {
		name      string
		wantErr   error  // of the call
		wantRes   string // substring of the result's error
		wantWrite bool
	}{
		{name: "patch", wantWrite: true},
		{name: "noop"},
		{name: "missing", wantRes: "not found"},
		{name: "secret", wantRes: "permission denied"},
		{name: "fail", wantRes: "probe failed on purpose"},
		{name: "panic", wantErr: errdefs.ErrPluginTrap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host.mu.Lock()
			host.writes = nil
			host.mu.Unlock()
			res, err := c.Reconcile(context.Background(), hostapi.ReconcileRequest{Resource: "configmaps", Namespace: "default", Name: tc.name})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Reconcile: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.RequeueAfterMillis != 1234 {
				t.Errorf("requeueAfterMillis %d, want 1234", res.RequeueAfterMillis)
			}
			if tc.wantRes == "" && res.Error != "" || !strings.Contains(res.Error, tc.wantRes) {
				t.Errorf("result error %q, want %q", res.Error, tc.wantRes)
			}
			host.mu.Lock()
			defer host.mu.Unlock()
			if got := len(host.writes) > 0; got != tc.wantWrite {
				t.Errorf("writes %+v, want some: %v", host.writes, tc.wantWrite)
			}
			if tc.wantWrite && (host.writes[0].Verb != hostapi.VerbPatch || string(host.writes[0].Object) != `{"data":{"seen":"yes"}}` ||
				host.writes[0].PatchType != hostapi.PatchMerge) {
				t.Errorf("write %+v", host.writes[0])
			}
		})
	}
	if !logs.contains("may not patch secrets") {
		t.Errorf("the refused write is not logged:\n%s", logs.String())
	}
	// The trapped instance was replaced: the plugin still works.
	if res, err := c.Reconcile(context.Background(), hostapi.ReconcileRequest{Resource: "configmaps", Name: "noop"}); err != nil || res.Error != "" {
		t.Errorf("after a trap: %+v, %v", res, err)
	}
}

func TestNewControllerRefusesOtherKinds(t *testing.T) {
	e, _ := newTestEngine(t)
	p := loadGuest(t, e, PluginConfig{Settings: []byte(`{"requiredLabels":["team"]}`)})
	if _, err := NewController(context.Background(), p); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("NewController of an admission plugin: %v, want ErrInvalid", err)
	}
}
