// Command tugboat is the single Tugboat binary. This file and its siblings
// only wire kernel packages together:
//
//	tugboat server [flags]   serve the Kubernetes API over TLS from the kernel store
//	tugboat version          print the build's version
//
// Every server setting is a key of the YAML file given with --config (see
// configs/tugboat.yaml), an environment variable TUGBOAT_<KEY> and a flag;
// flags win over the environment, which wins over the file, which wins over
// the defaults.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time (-ldflags "-X main.version=v0.1.0"); empty
// means: use the module version from the build info.
var version string

func main() {
	installClientGoLog()
	cmd := newRootCommand()
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "tugboat: %v\n", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "tugboat",
		Short:         "Tugboat: a Kubernetes-compatible orchestrator with a Wasm-extensible microkernel",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCommand(), newPluginCommand(), newVersionCommand())
	root.AddCommand(newAgentCommand())
	root.AddCommand(newImagesCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this build",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			printVersion(cmd.OutOrStdout())
			return nil
		},
	}
}

// printVersion writes tugboat's version, the Go toolchain and the
// Kubernetes API version the binary was built with.
func printVersion(w io.Writer) {
	v, apiVersion := version, "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		for _, dep := range info.Deps {
			// k8s.io/api and apimachinery are released together.
			if dep.Path == "k8s.io/api" || (dep.Path == "k8s.io/apimachinery" && apiVersion == "unknown") {
				apiVersion = dep.Version
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	fmt.Fprintf(w, "tugboat %s\n", v)
	fmt.Fprintf(w, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "kubernetes api: %s\n", apiVersion)
}
