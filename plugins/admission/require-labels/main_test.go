package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const settings = `{"labels": ["team"]}`

// TestPlugin runs the same requests through the registered plugin natively
// and through the Tugboat runtime as Wasm; both must answer alike.
func TestPlugin(t *testing.T) {
	targets := []struct {
		name string
		r    plugintest.Reviewer
	}{
		{"native", plugintest.NewRegistered(t, settings, nil)},
		{"wasm", plugintest.RunWasm(t, ".", settings)},
	}
	tests := []struct {
		name        string
		req         plugintest.Request
		wantAllowed bool
		wantMessage string
	}{
		{
			name: "labelled deployment",
			req: plugintest.Request{Object: `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, labels: {team: payments}}
spec: {replicas: 1}`},
			wantAllowed: true,
		},
		{
			name:        "unlabelled deployment",
			req:         plugintest.Request{Object: `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}`},
			wantMessage: "missing required label(s): team",
		},
		{
			name: "delete",
			req: plugintest.Request{Operation: sdk.Delete,
				OldObject: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}`},
			wantAllowed: true,
		},
	}
	for _, target := range targets {
		for _, tt := range tests {
			t.Run(target.name+"/"+tt.name, func(t *testing.T) {
				got := target.r.Review(t, tt.req)
				if got.Allowed != tt.wantAllowed || got.Message != tt.wantMessage {
					t.Fatalf("allowed %v message %q, want allowed %v message %q",
						got.Allowed, got.Message, tt.wantAllowed, tt.wantMessage)
				}
			})
		}
	}
}

func TestWasmBadSettings(t *testing.T) {
	_, err := plugintest.LoadWasm(t, ".", `{"labels": [1]}`)
	if err == nil || !strings.Contains(err.Error(), "labels[0] must be a string") {
		t.Fatalf("LoadWasm with bad settings: %v, want the plugin's message", err)
	}
}

// BenchmarkAdmit compares one admission call on a 2.3 KB Deployment
// request: the Wasm module through the runtime's Plugin.Call, and the same
// bytes-in, bytes-out path natively (sdk.Module.Call); then the same two
// behind the API server's view (encode admissionv1 request, decode
// response), which is what the admission adapter costs end to end.
func BenchmarkAdmit(b *testing.B) {
	in, err := os.ReadFile("../../../sdk/testdata/deployment-request.json")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("native", func(b *testing.B) {
		mod, err := sdk.Registered()
		if err != nil {
			b.Fatal(err)
		}
		if msg, _ := mod.Call(hostapi.ExportConfigure, []byte(settings)); len(msg) > 0 {
			b.Fatal(string(msg))
		}
		for b.Loop() {
			if _, err := mod.Call(hostapi.ExportAdmit, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wasm", func(b *testing.B) {
		p := plugintest.RunWasm(b, ".", settings)
		ctx := context.Background()
		for b.Loop() {
			if _, err := p.Plugin.Call(ctx, hostapi.ExportAdmit, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	var req admissionv1.AdmissionRequest
	if err := json.Unmarshal(in, &req); err != nil {
		b.Fatal(err)
	}
	b.Run("native-adapter", func(b *testing.B) {
		mod, _ := sdk.Registered()
		for b.Loop() {
			raw, _ := json.Marshal(&req)
			out, err := mod.Call(hostapi.ExportAdmit, raw)
			var resp admissionv1.AdmissionResponse
			if err != nil || json.Unmarshal(out, &resp) != nil || !resp.Allowed {
				b.Fatalf("%s %v", out, err)
			}
		}
	})
	b.Run("wasm-adapter", func(b *testing.B) {
		p := plugintest.RunWasm(b, ".", settings)
		ctx := context.Background()
		for b.Loop() {
			resp, err := p.Admission.Admit(ctx, &req)
			if err != nil || !resp.Allowed {
				b.Fatal(err)
			}
		}
	})
}
