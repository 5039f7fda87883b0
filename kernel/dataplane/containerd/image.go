package containerd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/tugboat-dev/tugboat/kernel/errdefs"
)

// PullPolicy says when an image is pulled (Kubernetes' imagePullPolicy).
type PullPolicy string

// Pull policies.
const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// normalize turns a Kubernetes image name ("busybox") into the reference
// containerd stores ("docker.io/library/busybox:latest").
func normalize(image string) (string, error) {
	named, err := reference.ParseDockerRef(image)
	if err != nil {
		return "", fmt.Errorf("image %q: %v: %w", image, err, errdefs.ErrInvalid)
	}
	return named.String(), nil
}

// ensureImage returns the image ref, pulling it as policy says and
// unpacking it into the snapshotter. A missing image under PullNever
// wraps errdefs.ErrNotFound; a failed pull wraps errdefs.ErrUnavailable.
// Both messages start with "ErrImagePull" / "ErrImageNeverPull" as the
// kubelet's reasons do.
func (r *Runtime) ensureImage(ctx context.Context, ref string, policy PullPolicy) (client.Image, error) {
	name, err := normalize(ref)
	if err != nil {
		return nil, err
	}
	img, err := r.client.GetImage(ctx, name)
	switch {
	case err == nil && policy != PullAlways:
		return img, r.unpack(ctx, img)
	case err != nil && !cerrdefs.IsNotFound(err):
		return nil, fmt.Errorf("image %s: %v: %w", name, err, errdefs.ErrUnavailable)
	case err != nil && policy == PullNever:
		return nil, fmt.Errorf("ErrImageNeverPull: image %s is not present with pull policy Never (import it with `tugboat images import`): %w", name, errdefs.ErrNotFound)
	}
	pctx, cancel := context.WithTimeout(ctx, r.opts.PullTimeout)
	defer cancel()
	pulled, perr := r.client.Pull(pctx, name, client.WithPullUnpack, client.WithPullSnapshotter(r.opts.Snapshotter))
	if perr == nil {
		return pulled, nil
	}
	if img != nil { // Always, but the registry is unreachable: keep the local copy like the kubelet would not; say so
		return nil, fmt.Errorf("ErrImagePull: pull %s (pull policy Always): %v: %w", name, perr, errdefs.ErrUnavailable)
	}
	return nil, fmt.Errorf("ErrImagePull: image %s is not present and pulling it failed (import it with `tugboat images import`): %v: %w", name, perr, errdefs.ErrUnavailable)
}

func (r *Runtime) unpack(ctx context.Context, img client.Image) error {
	ok, err := img.IsUnpacked(ctx, r.opts.Snapshotter)
	if err == nil && ok {
		return nil
	}
	if err := img.Unpack(ctx, r.opts.Snapshotter); err != nil {
		return fmt.Errorf("unpack image %s: %w", img.Name(), err)
	}
	return nil
}

// ImportOptions say where ImportArchive imports to.
type ImportOptions struct {
	// Address is containerd's socket; "" means DefaultAddress.
	Address string
	// Namespace is the containerd namespace; "" means DefaultNamespace.
	Namespace string
	// Snapshotter unpacks the images; "" means containerd's default.
	Snapshotter string
}

// ImportArchive imports the images of an OCI image layout or docker
// save tarball into containerd, unpacks them and returns their names.
// Images without a name in the archive are named by digest
// ("import-<digest>").
func ImportArchive(ctx context.Context, opts ImportOptions, archive io.Reader) ([]string, error) {
	if opts.Address == "" {
		opts.Address = DefaultAddress
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	c, err := client.New(opts.Address, client.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %v: %w", opts.Address, err, errdefs.ErrUnavailable)
	}
	defer c.Close()
	return importArchive(namespaces.WithNamespace(ctx, opts.Namespace), c, opts.Snapshotter, archive)
}

func importArchive(ctx context.Context, c *client.Client, snapshotter string, archive io.Reader) ([]string, error) {
	imgs, err := c.Import(ctx, archive,
		client.WithImageRefTranslator(func(name string) string {
			if n, err := normalize(name); err == nil {
				return n
			}
			return name
		}),
		client.WithDigestRef(func(d digest.Digest) string { return "import-" + d.String() }),
		client.WithSkipDigestRef(func(name string) bool { return name != "" }))
	if err != nil {
		return nil, fmt.Errorf("import: %v: %w", err, errdefs.ErrInvalid)
	}
	names := make([]string, 0, len(imgs))
	for _, i := range imgs {
		img := client.NewImage(c, i)
		if err := img.Unpack(ctx, snapshotter); err != nil {
			return names, fmt.Errorf("unpack %s: %w", i.Name, err)
		}
		names = append(names, i.Name)
	}
	return names, nil
}
