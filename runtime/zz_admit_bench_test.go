package runtime

import (
	"context"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

func BenchmarkZZAdmit(b *testing.B) {
	e, _ := newTestEngine(b)
	p := loadGuest(b, e, PluginConfig{Name: "rl", Path: "/tmp/wasmh/rl.wasm", Settings: []byte(`{"labels":["team"]}`), PoolSize: 1})
	a, err := NewAdmission(p, AdmissionConfig{Rules: deploymentRules})
	if err != nil {
		b.Fatal(err)
	}
	req := admissionRequest(b, admissionv1.Create, map[string]string{"team": "a", "app": "web"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Admit(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
