package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// Benchmarks of the per-call and per-instance costs; `make bench-plugins`
// has the end-to-end numbers.

func BenchmarkCallEcho(b *testing.B) {
	e, _ := newTestEngine(b)
	p := loadGuest(b, e, PluginConfig{PoolSize: 1})
	in := []byte("hello")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Call(ctx, "echo", in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewInstance(b *testing.B) {
	e, _ := newTestEngine(b)
	p := loadGuest(b, e, PluginConfig{PoolSize: 1})
	ctx := context.Background()
	for b.Loop() {
		in, err := p.startConfigured(ctx)
		if err != nil {
			b.Fatal(err)
		}
		in.close(ctx)
	}
}

// BenchmarkWatchdog compares arming and disarming the kernel watchdog with
// the Go timer one.
func BenchmarkWatchdog(b *testing.B) {
	e, _ := newTestEngine(b)
	p := loadGuest(b, e, PluginConfig{PoolSize: 1})
	in, err := p.startConfigured(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer in.close(context.Background())
	stop := in.mod.ExportedGlobal(interruptExport).(api.MutableGlobal)
	for _, tc := range []struct {
		name string
		wd   watchdog
	}{{"kernel", in.wd}, {"timer", newTimerWatchdog(stop)}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				now := time.Now()
				tc.wd.arm(now.Add(time.Second), now.Add(time.Second+watchdogSlack))
				tc.wd.disarm()
			}
		})
	}
}

func BenchmarkNewWatchdog(b *testing.B) {
	e, _ := newTestEngine(b)
	p := loadGuest(b, e, PluginConfig{PoolSize: 1})
	in, err := p.startConfigured(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer in.close(context.Background())
	stop := in.mod.ExportedGlobal(interruptExport).(api.MutableGlobal)
	for b.Loop() {
		wd, err := newWatchdog(stop)
		if err != nil {
			b.Fatal(err)
		}
		wd.close()
	}
}
