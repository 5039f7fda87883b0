package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/tugboat-dev/tugboat/hostapi"
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

// BenchmarkAdmitRequireLabels splits one require-labels admission of a
// labelled object: the host's request encoding alone, and the guest call
// (copy in, admit, copy out) on the binary request.
func BenchmarkAdmitRequireLabels(b *testing.B) {
	e, _ := newTestEngine(b)
	p := loadGuest(b, e, PluginConfig{Name: "require-labels", Path: buildPlugin(b, "../plugins/admission/require-labels"),
		Settings: []byte(`{"labels":["team"]}`), PoolSize: 1})
	req := admissionRequest(b, admissionv1.Create, map[string]string{"team": "a", "app": "web"})
	in, err := AppendAdmissionRequest(nil, p.AdmitLayout(), req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		buf := in[:0]
		for b.Loop() {
			buf, _ = AppendAdmissionRequest(buf[:0], p.AdmitLayout(), req)
		}
	})
	b.Run("call", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Call(ctx, hostapi.ExportAdmit, in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendObjectMeta is the host's share of the extracted labels
// and annotations in a binary admission request: a Deployment of about 1 KB
// with two labels and two annotations.
func BenchmarkAppendObjectMeta(b *testing.B) {
	obj := []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{"deployment.kubernetes.io/revision":"3",` +
		`"owner":"payments@example.com"},"labels":{"app":"web","team":"payments"},"name":"web","namespace":"default"},` +
		`"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},` +
		`"spec":{"containers":[{"env":[{"name":"LOG_LEVEL","value":"info"}],"image":"registry.example.com/team/web:1.27.3",` +
		`"name":"web","ports":[{"containerPort":8080,"name":"http"}],"resources":{"limits":{"memory":"256Mi"},` +
		`"requests":{"cpu":"100m","memory":"128Mi"}}}]}}}}`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var ok bool
		if buf, ok = appendObjectMeta(buf[:0], obj); !ok {
			b.Fatal("not extracted")
		}
	}
}
