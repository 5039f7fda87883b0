package wasi

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"golang.org/x/sys/unix"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// Media types of OCI Wasm artifacts (the CNCF TAG Runtime "Wasm OCI
// artifact" layout and the older wasm-to-oci one), and of OCI manifests
// and indexes.
const (
	MediaTypeWasmConfig       = "application/vnd.wasm.config.v0+json"
	MediaTypeWasmLayer        = "application/wasm"
	MediaTypeWasmContentLayer = "application/vnd.wasm.content.layer.v1+wasm"
	mediaTypeModuleLayer      = "application/vnd.module.wasm.content.layer.v1+wasm"
	mediaTypeManifest         = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeIndex            = "application/vnd.oci.image.index.v1+json"
	mediaTypeDockerList       = "application/vnd.docker.distribution.manifest.list.v2+json"
	annotationRefName         = "org.opencontainers.image.ref.name"
	annotationImageName       = "io.containerd.image.name"
)

// wasmLayerTypes are the layer media types that hold a module.
var wasmLayerTypes = []string{MediaTypeWasmLayer, MediaTypeWasmContentLayer, mediaTypeModuleLayer}

// Pull policies (Kubernetes' imagePullPolicy). There is no registry client:
// an image must have been imported, whatever the policy, and Always uses
// the imported copy.
const (
	PullAlways       = "Always"
	PullIfNotPresent = "IfNotPresent"
	PullNever        = "Never"
)

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
	} `json:"platform,omitempty"`
}

// index is an OCI image index (also a layout's index.json).
type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Manifests     []descriptor `json:"manifests"`
}

// manifest is an OCI image manifest.
type manifest struct {
	MediaType string       `json:"mediaType,omitempty"`
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
}

// ImageStore is the wasm runtime's local image store: an OCI image
// layout directory (oci-layout, blobs/sha256/<hex>, index.json) whose
// index names each imported image by its normalized reference
// (docker.io/library/hello:latest) in the org.opencontainers.image.ref.name
// annotation. `tugboat images import --runtime wasm` writes it; the
// runtime reads it. Safe for concurrent use, also across processes
// (imports take a file lock).
type ImageStore struct {
	dir string
}

// OpenImageStore opens (or creates) the store in dir.
func OpenImageStore(dir string) (*ImageStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	layout := filepath.Join(dir, "oci-layout")
	if _, err := os.Stat(layout); errors.Is(err, os.ErrNotExist) {
		if err := writeFileAtomic(layout, []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	return &ImageStore{dir: dir}, nil
}

// Dir returns the store's directory.
func (s *ImageStore) Dir() string { return s.dir }

// blobPath returns the file of a sha256 digest, or an error for another
// algorithm or a malformed digest.
func (s *ImageStore) blobPath(digest string) (string, error) {
	hexPart, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexPart) != 64 || strings.Trim(hexPart, "0123456789abcdef") != "" {
		return "", fmt.Errorf("digest %q: want sha256:<64 hex digits>: %w", digest, errdefs.ErrInvalid)
	}
	return filepath.Join(s.dir, "blobs", "sha256", hexPart), nil
}

// Normalize returns the name under which the store keeps image
// ("hello:1.0" is "docker.io/library/hello:1.0", like containerd's).
func Normalize(image string) (string, error) {
	named, err := reference.ParseDockerRef(image)
	if err != nil {
		return "", fmt.Errorf("image %q: %v: %w", image, err, errdefs.ErrInvalid)
	}
	return named.String(), nil
}

// Resolve returns the module file of the imported image, or an error
// wrapping errdefs.ErrNotFound when it was not imported.
func (s *ImageStore) Resolve(image string) (string, error) {
	name, err := Normalize(image)
	if err != nil {
		return "", err
	}
	idx, err := s.readIndex()
	if err != nil {
		return "", err
	}
	for _, d := range idx.Manifests {
		if d.Annotations[annotationRefName] != name {
			continue
		}
		layer, err := s.moduleLayer(d)
		if err != nil {
			return "", fmt.Errorf("image %s: %w", name, err)
		}
		return s.blobPath(layer.Digest)
	}
	return "", fmt.Errorf("image %s is not in the wasm image store %s: %w", name, s.dir, errdefs.ErrNotFound)
}

// Images lists the names of the imported images.
func (s *ImageStore) Images() ([]string, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range idx.Manifests {
		names = append(names, d.Annotations[annotationRefName])
	}
	return names, nil
}

func (s *ImageStore) readIndex() (index, error) {
	idx := index{SchemaVersion: 2, MediaType: mediaTypeIndex}
	b, err := os.ReadFile(filepath.Join(s.dir, "index.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return idx, nil
	case err != nil:
		return idx, fmt.Errorf("image store: %w", err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("image store: index.json: %v: %w", err, errdefs.ErrInvalid)
	}
	return idx, nil
}

// readJSON reads and decodes the blob of d.
func (s *ImageStore) readJSON(d descriptor, v any) error {
	p, err := s.blobPath(d.Digest)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("blob %s: %v: %w", d.Digest, err, errdefs.ErrInvalid)
	}
	return nil
}

// moduleLayer follows d (a manifest, or an index whose wasm manifest it
// picks) to the layer that holds the module.
func (s *ImageStore) moduleLayer(d descriptor) (descriptor, error) {
	for depth := 0; depth < 4; depth++ {
		switch d.MediaType {
		case mediaTypeIndex, mediaTypeDockerList:
			var idx index
			if err := s.readJSON(d, &idx); err != nil {
				return descriptor{}, err
			}
			next, ok := pickManifest(idx.Manifests)
			if !ok {
				return descriptor{}, fmt.Errorf("index %s lists no manifests: %w", d.Digest, errdefs.ErrInvalid)
			}
			d = next
			continue
		}
		var m manifest
		if err := s.readJSON(d, &m); err != nil {
			return descriptor{}, err
		}
		return wasmLayer(m)
	}
	return descriptor{}, fmt.Errorf("indexes nested too deeply: %w", errdefs.ErrInvalid)
}

// pickManifest prefers the entry for the wasm platform.
func pickManifest(ds []descriptor) (descriptor, bool) {
	for _, d := range ds {
		if p := d.Platform; p != nil && (p.Architecture == "wasm" || strings.HasPrefix(p.OS, "wasi")) {
			return d, true
		}
	}
	if len(ds) == 0 {
		return descriptor{}, false
	}
	return ds[0], true
}

// wasmLayer returns the module layer of m: the first layer of a wasm
// media type, or the only layer of a manifest whose config is a Wasm
// config.
func wasmLayer(m manifest) (descriptor, error) {
	for _, l := range m.Layers {
		if slices.Contains(wasmLayerTypes, l.MediaType) {
			return l, nil
		}
	}
	if m.Config.MediaType == MediaTypeWasmConfig && len(m.Layers) == 1 {
		return m.Layers[0], nil
	}
	types := make([]string, len(m.Layers))
	for i, l := range m.Layers {
		types[i] = l.MediaType
	}
	return descriptor{}, fmt.Errorf("not a wasm artifact (config %s, layers %v; want a layer of type %s): %w",
		m.Config.MediaType, types, strings.Join(wasmLayerTypes, ", "), errdefs.ErrInvalid)
}

// Import reads an OCI image layout tarball (oci-layout, index.json,
// blobs/sha256/...), stores its blobs (checking their digests) and names
// every Wasm artifact its index.json lists, by the
// io.containerd.image.name or org.opencontainers.image.ref.name
// annotation (a bare tag such as "1.0" is refused: the image needs a
// name). Entries that are not Wasm artifacts (container images) are
// skipped and reported in skipped. It returns the normalized names.
func (s *ImageStore) Import(archive io.Reader) (names, skipped []string, err error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	var archiveIndex []byte
	tr := tar.NewReader(archive)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read archive: %v: %w", err, errdefs.ErrInvalid)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		switch {
		case name == "index.json":
			if archiveIndex, err = io.ReadAll(io.LimitReader(tr, 16<<20)); err != nil {
				return nil, nil, fmt.Errorf("read index.json: %w", err)
			}
		case strings.HasPrefix(name, "blobs/sha256/"):
			if err := s.storeBlob("sha256:"+strings.TrimPrefix(name, "blobs/sha256/"), tr); err != nil {
				return nil, nil, err
			}
		}
	}
	if archiveIndex == nil {
		return nil, nil, fmt.Errorf("archive has no index.json (want an OCI image layout tarball): %w", errdefs.ErrInvalid)
	}
	var in index
	if err := json.Unmarshal(archiveIndex, &in); err != nil {
		return nil, nil, fmt.Errorf("archive index.json: %v: %w", err, errdefs.ErrInvalid)
	}
	idx, err := s.readIndex()
	if err != nil {
		return nil, nil, err
	}
	for _, d := range in.Manifests {
		ref := d.Annotations[annotationImageName]
		if r := d.Annotations[annotationRefName]; ref == "" && strings.ContainsAny(r, "/:") {
			ref = r // a full reference, not just a tag
		}
		if ref == "" {
			return nil, nil, fmt.Errorf("manifest %s has no image name (annotation %s, or %s with a full reference): %w",
				d.Digest, annotationImageName, annotationRefName, errdefs.ErrInvalid)
		}
		name, err := Normalize(ref)
		if err != nil {
			return nil, nil, err
		}
		layer, err := s.moduleLayer(d)
		if errors.Is(err, errdefs.ErrInvalid) {
			skipped = append(skipped, name+": "+err.Error())
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("image %s: %w", name, err)
		}
		if p, err := s.blobPath(layer.Digest); err != nil {
			return nil, nil, err
		} else if _, err := os.Stat(p); err != nil {
			return nil, nil, fmt.Errorf("image %s: module layer %s is not in the archive: %w", name, layer.Digest, errdefs.ErrInvalid)
		}
		entry := descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, Annotations: map[string]string{annotationRefName: name}}
		if entry.MediaType == "" {
			entry.MediaType = mediaTypeManifest
		}
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(e descriptor) bool { return e.Annotations[annotationRefName] == name })
		idx.Manifests = append(idx.Manifests, entry)
		names = append(names, name)
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(s.dir, "index.json"), b); err != nil {
		return nil, nil, fmt.Errorf("image store: %w", err)
	}
	return names, skipped, nil
}

// storeBlob writes r as the blob digest, checking the content's digest.
func (s *ImageStore) storeBlob(digest string, r io.Reader) error {
	p, err := s.blobPath(digest)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".import-*")
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store blob %s: %w", digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("blob %s has digest %s: %w", digest, got, errdefs.ErrInvalid)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("store blob %s: %w", digest, err)
	}
	return nil
}

// lock takes the store's import lock (an flock on <dir>/.lock).
func (s *ImageStore) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("image store: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// writeFileAtomic writes b to p through a temporary file and a rename.
func writeFileAtomic(p string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}
