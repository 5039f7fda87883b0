package runtime

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// Report describes a plugin module, as `tugboat plugin inspect` prints it.
type Report struct {
	Path       string           `json:"path"`
	ABIVersion int              `json:"abiVersion"`
	Manifest   hostapi.Manifest `json:"manifest"`
	// Exports and Imports are function names ("module.name" for imports),
	// sorted.
	Exports []string `json:"exports"`
	Imports []string `json:"imports"`
}

// Inspect compiles the module at path in a throwaway engine, refuses it
// the way Load would (imports the host does not offer, another ABI
// version, no manifest), starts one instance without configuring it and
// reports what the module declares.
func Inspect(ctx context.Context, path string) (rep Report, err error) {
	e, err := NewEngine(ctx, Config{})
	if err != nil {
		return Report{}, err
	}
	defer func() { err = errors.Join(err, e.Close(ctx)) }()
	p, err := newPlugin(e, PluginConfig{Name: filepath.Base(path), Path: path})
	if err != nil {
		return Report{}, err
	}
	if p.compiled, err = e.compile(ctx, path, p.memoryLimit); err != nil {
		return Report{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	if err := e.checkImports(p.compiled); err != nil {
		return Report{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	in, err := p.inspect(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	in.close(ctx)
	rep = Report{Path: path, ABIVersion: hostapi.ABIVersion, Manifest: p.manifest}
	for name := range p.compiled.ExportedFunctions() {
		rep.Exports = append(rep.Exports, name)
	}
	for _, f := range p.compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		rep.Imports = append(rep.Imports, mod+"."+name)
	}
	sort.Strings(rep.Exports)
	sort.Strings(rep.Imports)
	return rep, nil
}
