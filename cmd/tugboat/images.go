package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tugboat-dev/tugboat/kernel/dataplane/containerd"
)

// newImagesCommand manages the images of the containerd runtime. No
// registry is needed: images arrive as OCI image layout (or docker save)
// tarballs.
func newImagesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Manage the images of the containerd workload runtime",
	}
	cmd.AddCommand(newImagesImportCommand())
	return cmd
}

func newImagesImportCommand() *cobra.Command {
	var opts containerd.ImportOptions
	cmd := &cobra.Command{
		Use:   "import <oci.tar>...",
		Short: "Import OCI image tarballs into containerd for the containerd runtime",
		Long: "import reads OCI image layout tarballs (oci-layout, index.json, blobs/) or `docker save` archives,\n" +
			"stores their images in containerd's namespace for Tugboat and unpacks them, so pods with\n" +
			"imagePullPolicy IfNotPresent or Never run them without a registry. It prints each image's name.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, path := range args {
				f, err := os.Open(path)
				if err != nil {
					return fmt.Errorf("images import: %w", err)
				}
				names, err := containerd.ImportArchive(cmd.Context(), opts, f)
				f.Close()
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
	cmd.Flags().StringVar(&opts.Address, "address", containerd.DefaultAddress, "containerd's socket")
	cmd.Flags().StringVar(&opts.Namespace, "namespace", containerd.DefaultNamespace, "containerd namespace of the runtime")
	cmd.Flags().StringVar(&opts.Snapshotter, "snapshotter", "", "snapshotter to unpack into (containerd's default when empty)")
	return cmd
}
