package runtime

import (
	"context"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// TestSnapshot: instances after the first start from the plugin's
// snapshot (no _initialize, no configure) and behave like the first: the
// configured require-labels keeps denying unlabelled objects, the raw test
// guest echoes and survives a trap (its replacement is restored too).
// Plugins granted the clock start every instance the long way.
func TestSnapshot(t *testing.T) {
	e, _ := newTestEngine(t)
	ctx := context.Background()
	const n = 3
	rl := loadGuest(t, e, PluginConfig{Name: "require-labels", Path: buildPlugin(t, "../plugins/admission/require-labels"),
		Settings: []byte(`{"labels":["team"]}`), PoolSize: n})
	if rl.snap == nil {
		t.Fatal("no snapshot for an SDK plugin without grants")
	}
	if started, err := rl.Warm(ctx, n); err != nil || started != n-1 {
		t.Fatalf("warm: %d started, %v", started, err)
	}
	restored := 0
	for _, in := range rl.pool.idle {
		if in.restored {
			restored++
		}
	}
	if restored != n-1 {
		t.Fatalf("%d of %d instances restored, want %d", restored, len(rl.pool.idle), n-1)
	}
	a, err := NewAdmission(rl, AdmissionConfig{Rules: deploymentRules})
	if err != nil {
		t.Fatal(err)
	}
	// Every instance must see the settings: hold n calls at once.
	labelled := admissionRequest(t, admissionv1.Create, map[string]string{"team": "a"})
	unlabelled := admissionRequest(t, admissionv1.Create, map[string]string{"app": "web"})
	var wg sync.WaitGroup
	errs := make(chan string, 8*n)
	for range 4 * n {
		wg.Go(func() {
			for _, tc := range []struct {
				name    string
				req     *admissionv1.AdmissionRequest
				allowed bool
			}{{"labelled", labelled, true}, {"unlabelled", unlabelled, false}} {
				resp, err := a.Admit(ctx, tc.req)
				if err != nil || resp.Allowed != tc.allowed {
					errs <- tc.name + ": wrong verdict or error"
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}

	g := loadGuest(t, e, PluginConfig{PoolSize: 1})
	if g.snap == nil {
		t.Fatal("no snapshot for the test guest")
	}
	if _, err := g.Call(ctx, "panic", nil); err == nil {
		t.Fatal("panic call succeeded")
	}
	for i := range 3 {
		if got := mustCall(t, g, "echo", "again"); got != "again" {
			t.Fatalf("echo %d after the trap = %q", i, got)
		}
	}
	if st := g.Stats(); st.Started != 2 || !g.pool.idle[0].restored {
		t.Fatalf("after a trap: %d instances started, restored %v; want 2 and a restored one", st.Started, g.pool.idle[0].restored)
	}

	clock, err := e.Load(ctx, PluginConfig{Name: "clock", Path: guestPath(t, "clock"), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer clock.Close(ctx)
	if clock.snap != nil {
		t.Error("a plugin granted the clock got a snapshot")
	}
}
