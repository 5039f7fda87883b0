package wasi_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/runtime/wasi"
	"github.com/tugboat-dev/tugboat/runtime/wasi/wasitest"
)

func TestImageStoreImport(t *testing.T) {
	mod := []byte("\x00asm\x01\x00\x00\x00 module one")
	tests := []struct {
		name      string
		archive   []byte
		wantNames []string
		skipped   int
		wantErr   string
	}{
		{name: "CNCF layout", archive: wasitest.Archive(wasitest.Artifact{Ref: "example.com/hello:1.0", Module: mod}),
			wantNames: []string{"example.com/hello:1.0"}},
		{name: "wasm-to-oci layer type", archive: wasitest.Archive(wasitest.Artifact{Ref: "example.com/w2o:1",
			Module: mod, LayerType: wasi.MediaTypeWasmContentLayer, ConfigType: "application/vnd.wasm.config.v1+json"}),
			wantNames: []string{"example.com/w2o:1"}},
		{name: "short name and full ref.name", archive: wasitest.Archive(wasitest.Artifact{RefName: "hello:2", Module: mod}),
			wantNames: []string{"docker.io/library/hello:2"}},
		{name: "behind an index", archive: wasitest.Archive(wasitest.Artifact{Ref: "example.com/nested:1", Module: mod, Nested: true}),
			wantNames: []string{"example.com/nested:1"}},
		{name: "container images are skipped", archive: wasitest.Archive(
			wasitest.Artifact{Ref: "example.com/app:1", Module: []byte("tar"), LayerType: "application/vnd.oci.image.layer.v1.tar+gzip",
				ConfigType: "application/vnd.oci.image.config.v1+json"},
			wasitest.Artifact{Ref: "example.com/hello:3", Module: mod}),
			wantNames: []string{"example.com/hello:3"}, skipped: 1},
		{name: "a tag is not a name", archive: wasitest.Archive(wasitest.Artifact{RefName: "1.0", Module: mod}), wantErr: "no image name"},
		{name: "not a tarball", archive: []byte("garbage"), wantErr: "read archive"},
		{name: "no index", archive: tarOf(t, map[string][]byte{"oci-layout": []byte("{}")}), wantErr: "no index.json"},
		{name: "blob with a wrong digest", archive: tarOf(t, map[string][]byte{
			"blobs/sha256/" + strings.Repeat("ab", 32): []byte("x"), "index.json": []byte(`{"manifests":[]}`)}), wantErr: "has digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := wasi.OpenImageStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			names, skipped, err := s.Import(bytes.NewReader(tc.archive))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("error %v, want ErrInvalid mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.Join(names, ",") != strings.Join(tc.wantNames, ",") || len(skipped) != tc.skipped {
				t.Fatalf("names %v, skipped %v, error %v; want %v and %d skipped", names, skipped, err, tc.wantNames, tc.skipped)
			}
			for _, n := range names {
				p, err := s.Resolve(n)
				if err != nil {
					t.Fatal(err)
				}
				if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, mod) {
					t.Fatalf("module of %s: %q, %v", n, b, err)
				}
			}
		})
	}
}

// TestImageStoreReimport: importing a name again replaces it; other
// names stay; a name never imported is ErrNotFound.
func TestImageStoreReimport(t *testing.T) {
	s, err := wasi.OpenImageStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	imp := func(arts ...wasitest.Artifact) {
		t.Helper()
		if _, _, err := s.Import(bytes.NewReader(wasitest.Archive(arts...))); err != nil {
			t.Fatal(err)
		}
	}
	imp(wasitest.Artifact{Ref: "example.com/a:1", Module: []byte("a1")}, wasitest.Artifact{Ref: "example.com/b:1", Module: []byte("b1")})
	imp(wasitest.Artifact{Ref: "example.com/a:1", Module: []byte("a2")})
	for ref, want := range map[string]string{"example.com/a:1": "a2", "example.com/b:1": "b1"} {
		p, err := s.Resolve(ref)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("%s resolves to %q, want %q", ref, b, want)
		}
	}
	if names, _ := s.Images(); len(names) != 2 {
		t.Errorf("images %v, want 2", names)
	}
	if _, err := s.Resolve("example.com/c:1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing image: %v, want ErrNotFound", err)
	}
}

// TestRunImportedImage: a pod's image names an imported artifact; a
// missing one fails as the containerd runtime's does, per pull policy.
func TestRunImportedImage(t *testing.T) {
	mod, err := os.ReadFile(workload)
	if err != nil {
		t.Fatal(err)
	}
	imageDir := t.TempDir()
	s, err := wasi.OpenImageStore(imageDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Import(bytes.NewReader(wasitest.Archive(wasitest.Artifact{Ref: "example.com/hello:1.0", Module: mod}))); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, policy := range []string{"", wasi.PullAlways, wasi.PullIfNotPresent, wasi.PullNever} {
		t.Run("policy "+policy, func(t *testing.T) {
			rt, err := wasi.New(ctx, wasi.Options{Dir: t.TempDir(), CacheDir: cacheDir, ImageDir: imageDir, PullPolicy: policy})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			start(t, rt, dataplane.ContainerSpec{ID: "c", Image: "example.com/hello:1.0", Command: []string{"hello", "exit", "3"}})
			if st := waitExited(t, rt, "c"); st.ExitCode != 3 || st.Image != "example.com/hello:1.0" {
				t.Fatalf("exit %d (%s), image %q; want 3", st.ExitCode, st.Message, st.Image)
			}
			err = rt.Start(ctx, dataplane.ContainerSpec{ID: "d", Image: "example.com/missing:1"})
			reason, want := "ErrImagePull", errdefs.ErrUnavailable
			if policy == wasi.PullNever {
				reason, want = "ErrImageNeverPull", errdefs.ErrNotFound
			}
			if err == nil || !strings.Contains(err.Error(), reason) || !errors.Is(err, want) {
				t.Fatalf("missing image: %v, want %s wrapping %v", err, reason, want)
			}
			if _, err := rt.State("d"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("a container that could not start is recorded: %v", err)
			}
		})
	}
	if _, err := wasi.New(ctx, wasi.Options{Dir: t.TempDir(), PullPolicy: "Sometimes"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("bad pull policy: %v, want ErrInvalid", err)
	}
}

// tarOf writes files into a tarball.
func tarOf(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := writeTar(&buf, dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		return err
	}
	return tw.Close()
}
