package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

func TestLoadAndCall(t *testing.T) {
	e, _ := newTestEngine(t)
	p := loadGuest(t, e, PluginConfig{Name: "labels", Settings: []byte(`{"requiredLabels":["team"]}`)})
	if p.Name() != "labels" {
		t.Errorf("Name() = %q", p.Name())
	}
	m := p.Manifest()
	if m.Name != "testguest" || len(m.Kinds) != 2 || len(m.Rules) != 1 {
		t.Errorf("Manifest() = %+v", m)
	}
	if got := mustCall(t, p, "echo", "hello"); got != "hello" {
		t.Errorf("echo = %q", got)
	}
	if got := mustCall(t, p, "echo", ""); got != "" {
		t.Errorf("echo of nothing = %q", got)
	}
	allowed := mustCall(t, p, hostapi.ExportAdmit, `{"uid":"u1","object":{"metadata":{"labels":{"team":"a"}}}}`)
	if allowed != `{"uid":"u1","allowed":true}` {
		t.Errorf("admit with label = %s", allowed)
	}
	denied := mustCall(t, p, hostapi.ExportAdmit, `{"uid":"u2","object":{"metadata":{}}}`)
	if !strings.Contains(denied, `"allowed":false`) || !strings.Contains(denied, "missing required labels: team") {
		t.Errorf("admit without label = %s", denied)
	}
	if _, err := p.Call(context.Background(), "nosuchexport", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("call of a missing export: %v, want ErrNotFound", err)
	}
	if _, err := p.Call(context.Background(), hostapi.ExportAlloc, nil); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("call of an export with the wrong signature: %v, want ErrInvalid", err)
	}
}

func TestLoadErrors(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := t.TempDir()
	guest, err := os.ReadFile(guestPath(t, "guest"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	corruptCode := append([]byte(nil), guest...)
	copy(corruptCode[len(corruptCode)/2:], strings.Repeat("\xff", 64)) // garbage in the code or data section
	tests := []struct {
		name string
		cfg  PluginConfig
		want []string
		is   error
	}{
		{"wrong abi version", PluginConfig{Path: guestPath(t, "abi2")},
			[]string{"abi2.wasm", "ABI version 2", "expects version 1"}, errdefs.ErrInvalid},
		{"unknown imports", PluginConfig{Path: guestPath(t, "badimport")},
			[]string{"tugboat_v1.frobnicate", "env.launch_missiles"}, errdefs.ErrInvalid},
		{"not wasm", PluginConfig{Path: write("text.wasm", []byte("hello, world"))},
			[]string{"text.wasm", "not valid WebAssembly", "bad magic"}, errdefs.ErrInvalid},
		{"truncated", PluginConfig{Path: write("truncated.wasm", guest[:len(guest)/3])},
			[]string{"truncated.wasm", "truncated"}, errdefs.ErrInvalid},
		{"garbage inside", PluginConfig{Path: write("garbage.wasm", corruptCode)},
			[]string{"garbage.wasm"}, errdefs.ErrInvalid},
		{"empty file", PluginConfig{Path: write("empty.wasm", nil)},
			[]string{"empty.wasm", "bad magic"}, errdefs.ErrInvalid},
		{"missing file", PluginConfig{Path: filepath.Join(dir, "missing.wasm")},
			[]string{"missing.wasm"}, os.ErrNotExist},
		{"settings refused", PluginConfig{Settings: []byte(`{"reject":"requiredLabels must not be empty"}`)},
			[]string{`plugin "broken"`, "requiredLabels must not be empty"}, errdefs.ErrInvalid},
		{"settings not json", PluginConfig{Settings: []byte(`{`)},
			[]string{"settings: unexpected end of JSON input"}, errdefs.ErrInvalid},
		{"memory limit below the module's start", PluginConfig{MemoryLimit: 64 << 10},
			[]string{"above the limit of 64 KiB"}, errdefs.ErrTooLarge},
		{"negative timeout", PluginConfig{Timeout: -time.Second}, []string{"negative"}, errdefs.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Name = "broken"
			if tc.cfg.Path == "" {
				tc.cfg.Path = guestPath(t, "guest")
			}
			p, err := e.Load(context.Background(), tc.cfg)
			if err == nil {
				_ = p.Close(context.Background())
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			for _, w := range append(tc.want, `"broken"`) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestInfiniteLoopIsStopped(t *testing.T) {
	e, logs := newTestEngine(t)
	const timeout = 300 * time.Millisecond
	p := loadGuest(t, e, PluginConfig{Name: "spinner", Timeout: timeout, PoolSize: 1})
	for round := 0; round < 2; round++ {
		start := time.Now()
		_, err := p.Call(context.Background(), "loop", nil)
		elapsed := time.Since(start)
		if !errors.Is(err, errdefs.ErrPluginTimeout) || !strings.Contains(err.Error(), `"spinner"`) {
			t.Fatalf("round %d: loop: %v, want ErrPluginTimeout naming the plugin", round, err)
		}
		// A hang guard, not a performance check (tests make no timing
		// claims on a shared CI machine): without working interruption the
		// loop never returns. The 2x bound of the issue is measured by
		// `make bench-plugins`.
		if elapsed > 10*timeout {
			t.Errorf("round %d: loop stopped after %v, more than 10x the %v deadline", round, elapsed, timeout)
		}
		if got := mustCall(t, p, "echo", "after"); got != "after" {
			t.Fatalf("echo after the timeout = %q", got)
		}
	}
	if n := p.started.Load(); n != 3 {
		t.Errorf("instances started = %d, want 3 (the first and one replacement per timeout)", n)
	}
	if logs.contains("panic") {
		t.Errorf("log mentions a panic:\n%s", logs)
	}
}

func TestDeadlineFromContext(t *testing.T) {
	e, _ := newTestEngine(t)
	// Cancellation is best effort (it needs a goroutine to run), the
	// plugin's timeout is not: keep it long but finite.
	p := loadGuest(t, e, PluginConfig{Timeout: 5 * time.Second, PoolSize: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := p.Call(ctx, "loop", nil); !errors.Is(err, errdefs.ErrPluginTimeout) {
		t.Errorf("loop under a context deadline: %v, want ErrPluginTimeout", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := p.Call(ctx, "loop", nil)
	if !errors.Is(err, errdefs.ErrPluginTimeout) || !errors.Is(err, context.Canceled) {
		t.Errorf("loop under a canceled context: %v, want ErrPluginTimeout and context.Canceled", err)
	}
	if got := mustCall(t, p, "echo", "still here"); got != "still here" {
		t.Errorf("echo = %q", got)
	}
}

func TestGuestFaults(t *testing.T) {
	e, logs := newTestEngine(t)
	// A generous deadline: these faults are about traps, and growing memory
	// to the limit takes over a second on a loaded machine under -race.
	p := loadGuest(t, e, PluginConfig{Name: "faulty", MemoryLimit: 32 << 20, MaxResultSize: 1 << 20, PoolSize: 1, Timeout: 30 * time.Second})
	tests := []struct {
		export, input string
		is            error
		want          string
		replaced      bool // the instance is discarded
	}{
		{"membomb", "", errdefs.ErrPluginTrap, "of the 32768 KiB limit", true},
		{"panic", "at the disco", errdefs.ErrPluginTrap, "runtime.gopanic", true},
		{"exit", "", errdefs.ErrPluginTrap, "exited with code 3", true},
		{"big", fmt.Sprint(2 << 20), errdefs.ErrTooLarge, "above the limit of 1048576", false},
		{"badresult", "", errdefs.ErrInvalid, "outside memory", true},
	}
	for _, tc := range tests {
		t.Run(tc.export, func(t *testing.T) {
			before := p.started.Load()
			_, err := p.Call(context.Background(), tc.export, []byte(tc.input))
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"faulty"`) {
				t.Fatalf("%s: %v, want %v mentioning %q and the plugin", tc.export, err, tc.is, tc.want)
			}
			if got := mustCall(t, p, "echo", "ok"); got != "ok" {
				t.Fatalf("echo after %s = %q", tc.export, got)
			}
			if replaced := p.started.Load() > before; replaced != tc.replaced {
				t.Errorf("instance replaced = %v, want %v", replaced, tc.replaced)
			}
		})
	}
	if got := mustCall(t, p, "big", "1000"); len(got) != 1000 {
		t.Errorf("big(1000) returned %d bytes", len(got))
	}
	// The panic message reached the host log, tagged with the plugin.
	if !logs.contains("boom: at the disco") || !logs.contains("plugin=faulty") {
		t.Errorf("log lacks the guest's panic message:\n%s", logs)
	}
}

func TestSlowSometimesUnderConcurrency(t *testing.T) {
	e, _ := newTestEngine(t)
	// Slow calls end at their context's deadline. A guest spinning in
	// machine code delays the Go runtime's stop-the-world pauses until it
	// stops, which freezes every other goroutine meanwhile; fast calls get
	// the plugin's (much longer) timeout so such a freeze cannot make them
	// miss their deadline.
	p := loadGuest(t, e, PluginConfig{Name: "moody", Timeout: 10 * time.Second, PoolSize: 4})
	const calls = 32
	type result struct {
		input string
		out   []byte
		err   error
	}
	results := make(chan result, calls)
	for i := 0; i < calls; i++ {
		input := fmt.Sprintf("fast-%d", i)
		if i%8 == 3 {
			input = "slow"
		}
		go func() {
			ctx := context.Background()
			if input == "slow" {
				c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				ctx = c
			}
			out, err := p.Call(ctx, "slow", []byte(input))
			results <- result{input, out, err}
		}()
	}
	slow := 0
	for i := 0; i < calls; i++ {
		r := <-results
		switch {
		case r.input == "slow":
			slow++
			if !errors.Is(r.err, errdefs.ErrPluginTimeout) {
				t.Errorf("slow call: %v, want ErrPluginTimeout", r.err)
			}
		case r.err != nil:
			t.Errorf("fast call %s: %v", r.input, r.err)
		case string(r.out) != r.input:
			t.Errorf("fast call %s returned %q", r.input, r.out)
		}
	}
	if slow != 4 {
		t.Errorf("%d slow calls answered, want 4", slow)
	}
	if idle, busy := p.pool.size(); busy != 0 || idle > 4 {
		t.Errorf("pool after the calls: %d idle, %d busy; want at most 4 idle and none busy", idle, busy)
	}
}
