package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/tugboat-dev/tugboat/kernel/dataplane"
	ctrd "github.com/tugboat-dev/tugboat/kernel/dataplane/containerd"
	execrt "github.com/tugboat-dev/tugboat/kernel/dataplane/exec"
	"github.com/tugboat-dev/tugboat/runtime/wasi"
)

// workloadRuntimes are the --runtime values that run pods on this machine
// (sim is handled apart: it runs nothing).
var workloadRuntimes = []string{"exec", "containerd", "wasm"}

// RuntimeConfig configures the containerd and wasm workload runtimes
// (nested keys containerd.* and wasm.* of the agent section).
type RuntimeConfig struct {
	Containerd struct {
		Address     string `mapstructure:"address"`
		Namespace   string `mapstructure:"namespace"`
		Snapshotter string `mapstructure:"snapshotter"`
		PullPolicy  string `mapstructure:"pull-policy"`
		PodNetwork  bool   `mapstructure:"pod-network"`
		PauseBinary string `mapstructure:"pause-binary"`
	} `mapstructure:"containerd"`
	Wasm struct {
		ModuleDir  string `mapstructure:"module-dir"`
		PullPolicy string `mapstructure:"pull-policy"`
	} `mapstructure:"wasm"`
}

func runtimeOptions() []option {
	return []option{
		{"containerd.address", ctrd.DefaultAddress, "containerd socket of the containerd runtime"},
		{"containerd.namespace", ctrd.DefaultNamespace, "containerd namespace the containerd runtime works in"},
		{"containerd.snapshotter", "", "containerd snapshotter; empty means containerd's default (overlayfs)"},
		{"containerd.pull-policy", string(ctrd.PullIfNotPresent), "image pull policy of the containerd runtime: Always, IfNotPresent or Never (no registry is needed for IfNotPresent/Never with `tugboat images import`)"},
		{"containerd.pod-network", false, "give each containerd pod a private network namespace (false: the host network, like exec)"},
		{"containerd.pause-binary", ctrd.DefaultPauseBinary, "static busybox run as each containerd pod's sandbox process"},
		{"wasm.module-dir", "", "directory that relative .wasm image paths of the wasm runtime resolve against"},
		{"wasm.pull-policy", wasi.PullIfNotPresent, "image pull policy of the wasm runtime: Always, IfNotPresent or Never (there is no registry client: images come from tugboat images import --runtime wasm; the policy only changes the error for a missing image)"},
	}
}

// workloadRuntime is a runtime the agent closes when it stops.
type workloadRuntime interface {
	dataplane.Runtime
	Close() error
}

// newWorkloadRuntime opens the named runtime with its state under dir
// (the agent's directory); cacheDir keeps compiled wasm workloads.
func newWorkloadRuntime(ctx context.Context, name, dir, cacheDir string, rc RuntimeConfig, logger *slog.Logger) (workloadRuntime, error) {
	switch name {
	case "exec":
		return execrt.New(execrt.Options{Dir: filepath.Join(dir, "containers"), Logger: logger})
	case "containerd":
		c := rc.Containerd
		return ctrd.New(ctx, ctrd.Options{
			Dir: filepath.Join(dir, "containerd"), Address: c.Address, Namespace: c.Namespace,
			Snapshotter: c.Snapshotter, PullPolicy: ctrd.PullPolicy(c.PullPolicy), PodNetwork: c.PodNetwork,
			PauseBinary: c.PauseBinary, Logger: logger,
		})
	case "wasm":
		return wasi.New(ctx, wasi.Options{Dir: filepath.Join(dir, "wasm"), ModuleDir: rc.Wasm.ModuleDir, PullPolicy: rc.Wasm.PullPolicy, CacheDir: cacheDir, Logger: logger})
	}
	return nil, fmt.Errorf("runtime %q: want exec, containerd, wasm or sim", name)
}
