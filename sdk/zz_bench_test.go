package sdk

import (
	"os"
	"testing"
)

func BenchmarkZZDecodeBinary(b *testing.B) {
	in, err := os.ReadFile("/tmp/wasmh/binary.bin")
	if err != nil {
		b.Skip()
	}
	var last lastStrings
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeRequest(in, &last); err != nil {
			b.Fatal(err)
		}
	}
}
