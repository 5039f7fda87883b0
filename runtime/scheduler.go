package runtime

import (
	"fmt"
	"slices"

	"github.com/tugboat-dev/tugboat/hostapi"
	"github.com/tugboat-dev/tugboat/kernel/errdefs"
	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
)

// A loaded plugin is a scheduler plugin for the kernel's driver: its Call
// runs hostapi's filter and score entry points.
var _ kscheduler.Plugin = (*Plugin)(nil)

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
