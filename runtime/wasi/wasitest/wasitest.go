// Package wasitest builds OCI image layout tarballs of Wasm artifacts for
// tests of the wasm runtime's image store and of `tugboat images import`.
package wasitest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// Artifact is one image of an archive.
type Artifact struct {
	// Ref names the image (io.containerd.image.name); RefName, if set,
	// goes to org.opencontainers.image.ref.name.
	Ref, RefName string
	// Module is the layer's content.
	Module []byte
	// LayerType is the layer's media type; "" means application/wasm.
	LayerType string
	// ConfigType is the config's media type; "" means
	// application/vnd.wasm.config.v0+json.
	ConfigType string
	// Nested puts the manifest behind an image index with a wasip1
	// platform entry.
	Nested bool
}

// Archive returns an OCI image layout tarball holding the artifacts.
func Archive(arts ...Artifact) []byte {
	blobs := map[string][]byte{}
	add := func(b []byte) string {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return d
	}
	var entries []map[string]any
	for _, a := range arts {
		layerType, configType := a.LayerType, a.ConfigType
		if layerType == "" {
			layerType = "application/wasm"
		}
		if configType == "" {
			configType = "application/vnd.wasm.config.v0+json"
		}
		config := mustJSON(map[string]any{"architecture": "wasm", "os": "wasip1", "layerDigests": []string{}})
		m := mustJSON(map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.manifest.v1+json",
			"config":        map[string]any{"mediaType": configType, "digest": add(config), "size": len(config)},
			"layers":        []any{map[string]any{"mediaType": layerType, "digest": add(a.Module), "size": len(a.Module)}},
		})
		desc := map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": add(m), "size": len(m)}
		if a.Nested {
			desc["platform"] = map[string]any{"architecture": "wasm", "os": "wasip1"}
			idx := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
				"manifests": []any{desc}})
			desc = map[string]any{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": add(idx), "size": len(idx)}
		}
		ann := map[string]string{}
		if a.Ref != "" {
			ann["io.containerd.image.name"] = a.Ref
		}
		if a.RefName != "" {
			ann["org.opencontainers.image.ref.name"] = a.RefName
		}
		desc["annotations"] = ann
		entries = append(entries, desc)
	}
	index := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries})
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	file := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)})
		tw.Write(b)
	}
	file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	for d, b := range blobs {
		file("blobs/sha256/"+d[len("sha256:"):], b)
	}
	file("index.json", index)
	tw.Close()
	return out.Bytes()
}

// Write writes Archive(arts...) to path.
func Write(t testing.TB, path string, arts ...Artifact) {
	t.Helper()
	if err := os.WriteFile(path, Archive(arts...), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
