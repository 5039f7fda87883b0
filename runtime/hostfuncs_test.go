package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// objects is a HostServices over a map of "resource/namespace/name" to
// object JSON, standing in for the kernel's caches.
type objects struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func (o *objects) Get(_ context.Context, req hostapi.GetRequest) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	obj, ok := o.objs[req.Resource+"/"+req.Namespace+"/"+req.Name]
	if !ok {
		return nil, fmt.Errorf("get %s %s/%s: %w", req.Resource, req.Namespace, req.Name, errdefs.ErrNotFound)
	}
	return obj, nil
}

func (o *objects) List(_ context.Context, req hostapi.ListRequest) ([][]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var keys []string
	for k := range o.objs {
		if strings.HasPrefix(k, req.Resource+"/"+req.Namespace+"/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	items := make([][]byte, 0, len(keys))
	for _, k := range keys {
		items = append(items, o.objs[k])
	}
	return items, nil
}

func (o *objects) Write(context.Context, hostapi.WriteRequest) ([]byte, error) {
	return nil, fmt.Errorf("write: %w", errdefs.ErrInvalid)
}

func TestHostFunctions(t *testing.T) {
	e, logs := newTestEngine(t)
	host := &objects{objs: map[string][]byte{
		"pods/default/web":   []byte(`{"metadata":{"name":"web"}}`),
		"pods/default/db":    []byte(`{"metadata":{"name":"db"}}`),
		"secrets/default/pw": []byte(`{"data":{"pw":"aHVudGVyMg=="}}`),
	}}
	p := loadGuest(t, e, PluginConfig{Name: "reader", Host: host})
	blind := loadGuest(t, e, PluginConfig{Name: "blind"}) // no HostServices

	tests := []struct {
		name   string
		p      *Plugin
		export string
		input  string
		want   string
	}{
		{"get a granted resource", p, "get", `{"resource":"pods","namespace":"default","name":"web"}`, `{"metadata":{"name":"web"}}`},
		{"get a missing object", p, "get", `{"resource":"pods","namespace":"default","name":"nope"}`, "code=-1"},
		{"get a resource not granted", p, "get", `{"resource":"secrets","namespace":"default","name":"pw"}`, "code=-2"},
		{"get a malformed request", p, "get", `{"resource":`, "code=-3"},
		{"get without host services", blind, "get", `{"resource":"pods","namespace":"default","name":"web"}`, "code=-2"},
		{"list a granted resource", p, "list", `{"resource":"pods","namespace":"default"}`,
			mustJSON(t, hostapi.ListResponse{Items: []hostapi.RawObject{[]byte(`{"metadata":{"name":"db"}}`), []byte(`{"metadata":{"name":"web"}}`)}})},
		{"list a resource not granted", p, "list", `{"resource":"secrets"}`, "code=-2"},
		{"read the clock without the grant", p, "now", "", fmt.Sprint(hostapi.ErrCodePermission)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustCall(t, tc.p, tc.export, tc.input); got != tc.want {
				t.Errorf("%s(%s) = %s, want %s", tc.export, tc.input, got, tc.want)
			}
		})
	}
	if !logs.contains(`may not get secrets/default`) && !logs.contains(`may not get secrets`) {
		t.Errorf("refused host call not logged:\n%s", logs)
	}

	mustCall(t, p, "log", "hello from the guest")
	for _, want := range []string{"msg=\"hello from the guest\"", "msg=\"stdout: hello from the guest\"", "plugin=reader"} {
		if !logs.contains(want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGuestOutputIsRateLimited(t *testing.T) {
	e, logs := newTestEngine(t)
	p := loadGuest(t, e, PluginConfig{Name: "chatty"})
	for i := 0; i < int(logBurst)+50; i++ {
		mustCall(t, p, "log", fmt.Sprintf("line %d", i))
	}
	attempted := 2 * (int(logBurst) + 51) // each call logs through the host and prints to stdout
	if n := strings.Count(logs.String(), "msg=\"line "); n >= attempted || n < int(logBurst)/2 {
		t.Errorf("%d of %d guest lines logged with a burst of %v", n, attempted, logBurst)
	}
	if !logs.contains("guest output over its rate limit") {
		t.Error("no line reports the dropped output")
	}
}

func TestClockGrant(t *testing.T) {
	e, _ := newTestEngine(t)
	granted, err := e.Load(context.Background(), PluginConfig{Name: "clock", Path: guestPath(t, "clock"), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer granted.Close(context.Background())
	plain := loadGuest(t, e, PluginConfig{Name: "no-clock"})
	near := func(s string) bool {
		ns, err := strconv.ParseInt(s, 10, 64)
		return err == nil && time.Since(time.Unix(0, ns)).Abs() < time.Hour
	}
	for _, tc := range []struct {
		p      *Plugin
		export string
		real   bool
	}{
		{granted, "now", true},
		{granted, "walltime", true},
		{plain, "walltime", false}, // wazero's fixed fake clock
	} {
		if got := mustCall(t, tc.p, tc.export, ""); near(got) != tc.real {
			t.Errorf("%s %s = %s; real time: %v, want %v", tc.p.Name(), tc.export, got, near(got), tc.real)
		}
	}
	// A granted sleep ends at the deadline, not later.
	if _, err := granted.Call(context.Background(), "sleep", []byte("60000")); !errors.Is(err, errdefs.ErrPluginTimeout) {
		t.Errorf("sleep past the deadline: %v, want ErrPluginTimeout", err)
	}
}
