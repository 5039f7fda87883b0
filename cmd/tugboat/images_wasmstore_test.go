package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/runtime/wasi"
	"github.com/tugboat-dev/tugboat/runtime/wasi/wasitest"
)

// TestImagesImportWasm: --runtime wasm needs no containerd; it fills the
// wasm runtime's image store and refuses an archive without any Wasm
// artifact.
func TestImagesImportWasm(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "images")
	hello := filepath.Join(dir, "hello.tar")
	wasitest.Write(t, hello, wasitest.Artifact{Ref: "example.com/hello:1.0", Module: []byte("\x00asm\x01\x00\x00\x00")})
	app := filepath.Join(dir, "app.tar")
	wasitest.Write(t, app, wasitest.Artifact{Ref: "example.com/app:1", Module: []byte("layer"),
		LayerType: "application/vnd.oci.image.layer.v1.tar", ConfigType: "application/vnd.oci.image.config.v1+json"})
	for _, tc := range []struct {
		name, runtime, archive string
		wantOut, wantErr       string
	}{
		{"wasm artifact", "wasm", hello, "example.com/hello:1.0\n", ""},
		{"again", "wasm", hello, "example.com/hello:1.0\n", ""},
		{"container image only", "wasm", app, "", "no Wasm artifact"},
		{"bad runtime", "docker", hello, "", "want containerd, wasm or all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := newRootCommand()
			cmd.SetOut(&out)
			cmd.SetErr(&errOut)
			cmd.SetArgs([]string{"images", "import", "--runtime", tc.runtime, "--wasm-image-dir", store, tc.archive})
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || out.String() != tc.wantOut {
				t.Fatalf("output %q, error %v; want %q", out.String(), err, tc.wantOut)
			}
		})
	}
	s, err := wasi.OpenImageStore(store)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Resolve("example.com/hello:1.0")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "\x00asm\x01\x00\x00\x00" {
		t.Errorf("stored module %q", b)
	}
}
