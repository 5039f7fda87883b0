package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tugboat-dev/tugboat/runtime"
)

func newPluginCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Build and inspect Wasm plugins",
	}
	cmd.AddCommand(newPluginBuildCommand(), newPluginInspectCommand())
	return cmd
}

func newPluginBuildCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "build <dir>",
		Short: "Build the plugin (a Go main package) in dir to a .wasm module",
		Long: "build runs `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` on the main package in dir.\n" +
			"The module is written to -o, by default <dir's name>.wasm in the current directory.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return buildPlugin(cmd.Context(), args[0], out, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "path of the .wasm module to write")
	return cmd
}

// buildPlugin builds dir with the Go toolchain on PATH.
func buildPlugin(ctx context.Context, dir, out string, stdout, stderr io.Writer) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return fmt.Errorf("plugin build: %s is not a directory", dir)
	}
	if out == "" {
		out = filepath.Base(abs) + ".wasm"
	}
	if out, err = filepath.Abs(out); err != nil {
		return err
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("plugin build: the go command is needed: %w", err)
	}
	c := exec.CommandContext(ctx, gobin, "build", "-buildmode=c-shared", "-o", out, ".")
	c.Dir = abs
	c.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	c.Stdout, c.Stderr = stdout, stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("plugin build %s: %w", dir, err)
	}
	fmt.Fprintln(stdout, out)
	return nil
}

func newPluginInspectCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect <file.wasm>",
		Short: "Print a module's ABI version, kinds, capabilities, exports and imports",
		Long: "inspect compiles and starts the module without configuring it, and fails if it is not a\n" +
			"Tugboat plugin of this ABI or imports functions the host does not offer.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := runtime.Inspect(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printReport(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printReport(w io.Writer, r runtime.Report) {
	fmt.Fprintf(w, "module:       %s\n", r.Path)
	fmt.Fprintf(w, "abi version:  %d\n", r.ABIVersion)
	fmt.Fprintf(w, "name:         %s\n", r.Manifest.Name)
	fmt.Fprintf(w, "kinds:        %s\n", strings.Join(r.Manifest.Kinds, ", "))
	if len(r.Manifest.Rules) == 0 && len(r.Manifest.Grants) == 0 {
		fmt.Fprintf(w, "capabilities: none\n")
	}
	for _, rule := range r.Manifest.Rules {
		fmt.Fprintf(w, "capability:   %s on %s\n", strings.Join(rule.Verbs, ","), strings.Join(rule.Resources, ","))
	}
	for _, g := range r.Manifest.Grants {
		fmt.Fprintf(w, "grant:        %s\n", g)
	}
	fmt.Fprintf(w, "exports:      %s\n", strings.Join(r.Exports, " "))
	fmt.Fprintf(w, "imports:      %s\n", strings.Join(r.Imports, " "))
}
