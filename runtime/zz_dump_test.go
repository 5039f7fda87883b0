package runtime

import (
	"encoding/json"
	"os"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

func TestZZDump(t *testing.T) {
	full, _ := os.ReadFile("/work/main/sdk/testdata/deployment-request.json")
	var ar admissionv1.AdmissionRequest
	json.Unmarshal(full, &ar)
	input, _ := AppendAdmissionRequest(nil, 1, &ar)
	os.WriteFile("/tmp/wasmh/binary.bin", input, 0o644)
}
