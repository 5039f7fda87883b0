package sdk_test

import (
	"os"
	"testing"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/sdk"
)

// labelCheck is a minimal validating plugin for benchmarks.
type labelCheck struct{}

func (labelCheck) Admit(req *sdk.AdmissionRequest) (*sdk.AdmissionResponse, error) {
	if _, ok := req.Object.Get("metadata", "labels", "team"); ok {
		return sdk.Allowed(), nil
	}
	return sdk.Denied("missing required label(s): team"), nil
}

func BenchmarkModuleAdmit(b *testing.B) {
	in, err := os.ReadFile("testdata/deployment-request.json")
	if err != nil {
		b.Fatal(err)
	}
	mod, err := sdk.NewAdmission(labelCheck{}, sdk.Manifest{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := mod.Call(hostapi.ExportAdmit, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeAdmissionRequest(b *testing.B) {
	in, err := os.ReadFile("testdata/deployment-request.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sdk.DecodeAdmissionRequest(in); err != nil {
			b.Fatal(err)
		}
	}
}
