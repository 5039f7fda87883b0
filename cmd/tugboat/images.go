package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/tugboat-dev/tugboat/kernel/dataplane/containerd"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	"github.com/tugboat-dev/tugboat/runtime/wasi"
)

// newImagesCommand manages the images of the containerd and wasm
// runtimes. No registry is needed: images arrive as OCI image layout (or,
// for containerd, docker save) tarballs.
func newImagesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Manage the images of the containerd and wasm workload runtimes",
	}
	cmd.AddCommand(newImagesImportCommand())
	return cmd
}

// defaultWasmImageDir is the image store of the wasm runtime of the
// server's own node with the default data dir (an agent started with
// --data-dir D keeps its store in D/wasm/images).
func defaultWasmImageDir() string { return filepath.Join(defaultDataDir(), "agent", "wasm", "images") }

func newImagesImportCommand() *cobra.Command {
	var opts containerd.ImportOptions
	var runtime, wasmDir string
	cmd := &cobra.Command{
		Use:   "import <oci.tar>...",
		Short: "Import OCI image tarballs for the containerd runtime (default) or the wasm runtime",
		Long: "import reads image tarballs and makes their images available without a registry, so pods with\n" +
			"imagePullPolicy IfNotPresent or Never run them. It prints each image's name.\n\n" +
			"--runtime containerd (the default) stores OCI image layout or `docker save` tarballs in containerd's\n" +
			"namespace for Tugboat and unpacks them. --runtime wasm needs no containerd: it stores the Wasm\n" +
			"artifacts of OCI image layout tarballs (config " + wasi.MediaTypeWasmConfig + ", layer\n" +
			wasi.MediaTypeWasmLayer + " or " + wasi.MediaTypeWasmContentLayer + ") in the wasm runtime's\n" +
			"local store (--wasm-image-dir; content-addressed blobs and an index of names) and skips container\n" +
			"images. --runtime all does both.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			toContainerd, toWasm := runtime == "containerd" || runtime == "all", runtime == "wasm" || runtime == "all"
			if !toContainerd && !toWasm {
				return fmt.Errorf("images import: --runtime %q: want containerd, wasm or all", runtime)
			}
			var store *wasi.ImageStore
			if toWasm {
				var err error
				if store, err = wasi.OpenImageStore(wasmDir); err != nil {
					return fmt.Errorf("images import: %w", err)
				}
			}
			for _, path := range args {
				names, err := importImages(cmd, path, opts, toContainerd, store)
				if err != nil {
					return fmt.Errorf("images import %s: %w", path, err)
				}
				for _, n := range names {
					fmt.Fprintln(cmd.OutOrStdout(), n)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&runtime, "runtime", "containerd", "runtime to import for: containerd, wasm or all")
	cmd.Flags().StringVar(&wasmDir, "wasm-image-dir", defaultWasmImageDir(),
		"image store of the wasm runtime: <data-dir>/agent/wasm/images for a server, <data-dir>/wasm/images for `tugboat agent`")
	cmd.Flags().StringVar(&opts.Address, "address", containerd.DefaultAddress, "containerd's socket")
	cmd.Flags().StringVar(&opts.Namespace, "namespace", containerd.DefaultNamespace, "containerd namespace of the runtime")
	cmd.Flags().StringVar(&opts.Snapshotter, "snapshotter", "", "snapshotter to unpack into (containerd's default when empty)")
	return cmd
}

// importImages imports one tarball into containerd and/or store and
// returns the names imported (each once).
func importImages(cmd *cobra.Command, path string, opts containerd.ImportOptions, toContainerd bool, store *wasi.ImageStore) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	if toContainerd {
		if names, err = containerd.ImportArchive(cmd.Context(), opts, f); err != nil {
			return nil, err
		}
		if store == nil {
			return names, nil
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
	}
	wasmNames, skipped, err := store.Import(f)
	switch {
	case err != nil && toContainerd && errors.Is(err, errdefs.ErrInvalid):
		// --runtime all with an archive the wasm store cannot read (a
		// docker save tarball): containerd has the images.
		fmt.Fprintln(cmd.ErrOrStderr(), "wasm image store: skipped:", err)
		return names, nil
	case err != nil:
		return nil, err
	}
	if !toContainerd {
		for _, s := range skipped {
			fmt.Fprintln(cmd.ErrOrStderr(), "skipped (not a Wasm artifact):", s)
		}
		if len(wasmNames) == 0 {
			return nil, fmt.Errorf("no Wasm artifact in the archive (%d other images)", len(skipped))
		}
	}
	for _, n := range wasmNames {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, nil
}
