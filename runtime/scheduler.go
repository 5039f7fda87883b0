package runtime

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/tetratelabs/wazero/api"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
)

// A loaded plugin is a scheduler plugin for the kernel's driver: its Call
// runs hostapi's filter and score entry points.
var (
	_ kscheduler.Plugin     = (*Plugin)(nil)
	_ kscheduler.Relevancer = (*Plugin)(nil)
)

// DefaultSchedulerMemoryLimit is the memory limit SchedulerPluginConfig
// suggests for scheduler plugins, which hold a table of every node.
const DefaultSchedulerMemoryLimit = 512 << 20

// SchedulerPlugin places the loaded plugin p in a scheduler profile with
// weight (0 means 1): it filters if its manifest declares
// hostapi.KindFilter and scores if it declares hostapi.KindScore, and it
// must export the matching entry points. Load scheduler plugins with
// PoolSize 1: the driver calls them one at a time, and each instance keeps
// its own node table (a second instance costs a full resync).
func SchedulerPlugin(p *Plugin, weight int64) (kscheduler.PluginConfig, error) {
	m := p.Manifest()
	cfg := kscheduler.PluginConfig{
		Plugin: p,
		Filter: slices.Contains(m.Kinds, hostapi.KindFilter),
		Score:  slices.Contains(m.Kinds, hostapi.KindScore),
		Weight: weight,
	}
	if !cfg.Filter && !cfg.Score {
		return cfg, fmt.Errorf("plugin %q: manifest kinds %v name neither %s nor %s: %w",
			p.Name(), m.Kinds, hostapi.KindFilter, hostapi.KindScore, errdefs.ErrInvalid)
	}
	for _, need := range []struct {
		on     bool
		export string
	}{{cfg.Filter, hostapi.ExportFilter}, {cfg.Score, hostapi.ExportScore}} {
		if !need.on {
			continue
		}
		if _, ok := p.compiled.ExportedFunctions()[need.export]; !ok {
			return cfg, fmt.Errorf("plugin %q: module does not export %s: %w", p.Name(), need.export, errdefs.ErrInvalid)
		}
	}
	return cfg, nil
}

// Relevance returns what a scheduler plugin's module answered from
// hostapi.ExportSchedRelevance when it was loaded (after configure): the
// hostapi.SchedWhen* facts for which its filter and its scorer are
// called; 0 (always) for modules without the export.
func (p *Plugin) Relevance() (filter, score uint64) { return p.relevance[0], p.relevance[1] }

// readRelevance asks the configured first instance for its relevance, if
// the module exports hostapi.ExportSchedRelevance. The answer depends on
// the settings only, which every instance shares.
func (p *Plugin) readRelevance(ctx context.Context, in *instance) error {
	fn := in.function(hostapi.ExportSchedRelevance)
	if fn == nil {
		return nil
	}
	def := fn.Definition()
	if len(def.ParamTypes()) != 0 || !slices.Equal(def.ResultTypes(), []api.ValueType{api.ValueTypeI64}) {
		return fmt.Errorf("export %s has signature %v -> %v, want () -> i64: %w",
			hostapi.ExportSchedRelevance, def.ParamTypes(), def.ResultTypes(), errdefs.ErrInvalid)
	}
	raw, err := in.invoke(ctx, fn, nil, p.deadline(ctx))
	if err != nil {
		return fmt.Errorf("%s: %w", hostapi.ExportSchedRelevance, err)
	}
	switch {
	case len(raw) == 0:
	case len(raw) < 16:
		return fmt.Errorf("%s: answer of %d bytes, want at least 16: %w", hostapi.ExportSchedRelevance, len(raw), errdefs.ErrInvalid)
	default:
		p.relevance = [2]uint64{binary.LittleEndian.Uint64(raw), binary.LittleEndian.Uint64(raw[8:])}
	}
	return nil
}
