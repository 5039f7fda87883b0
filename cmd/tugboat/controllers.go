package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/controller"
	"github.com/tugboat-dev/tugboat/runtime"
)

// controllersPluginsKey is the file-only key listing extra or overriding
// controller plugins.
const controllersPluginsKey = "controllers.plugins"

// builtinControllers are loaded from the plugins directory as <name>.wasm,
// in this order.
var builtinControllers = []string{"replicaset", "deployment", "garbage-collector", "namespace", "endpoints", "job", "node-lifecycle", "daemonset", "statefulset", "cronjob", "hpa"}

// ControllersConfig is the controllers section of Config (squashed into it: the keys it
// declares are top-level unless their mapstructure tags nest them).
type ControllersConfig struct {
	Controllers ControllersSection `mapstructure:"controllers"`
	// Metrics is the resource metrics pipeline's section (metrics.go),
	// kept here so that Config needs no field of its own.
	Metrics MetricsSection `mapstructure:"metrics"`
}

// ControllersSection holds the controllers.* keys.
type ControllersSection struct {
	Enabled     bool          `mapstructure:"enabled"`
	Workers     int64         `mapstructure:"workers"`
	PluginsDir  string        `mapstructure:"plugins-dir"`
	Disabled    []string      `mapstructure:"disabled"`
	LeaderElect bool          `mapstructure:"leader-elect"`
	Timeout     time.Duration `mapstructure:"timeout"`
	// Plugins is read from the file by readControllers.
	Plugins []ControllerPlugin `mapstructure:"-"`
	Raw     any                `mapstructure:"plugins"`
}

// ControllerPlugin is one entry of controllers.plugins: an extra
// controller, or a built-in's replacement when it has a built-in's name.
type ControllerPlugin struct {
	Name        string          `json:"name"`
	Path        string          `json:"path"`
	Workers     int             `json:"workers,omitempty"`
	Settings    json.RawMessage `json:"settings,omitempty"`
	MemoryLimit string          `json:"memory-limit,omitempty"`
	Timeout     string          `json:"timeout,omitempty"`

	memoryLimit int64
	timeout     time.Duration
}

// controllersComponent is the server's controllers.
func controllersComponent() component {
	return component{
		name: "controllers",
		options: func() []option {
			return []option{
				{"controllers.enabled", true, "run the controllers (Wasm plugins) in this server, while it holds the controllers' Lease"},
				{"controllers.workers", int64(2), "keys each controller reconciles at once (one Wasm instance each)"},
				{"controllers.plugins-dir", "", "directory of the built-in controller plugins (<name>.wasm); default: plugins/ next to the tugboat binary"},
				{"controllers.disabled", []string{}, "built-in controllers not to run (e.g. endpoints)"},
				{"controllers.leader-elect", true, "run controllers only while holding the kube-system/tugboat-controllers Lease"},
				{"controllers.timeout", 10 * time.Second, "deadline of one reconcile call of a controller plugin"},
			}
		},
		fileKeys: []string{controllersPluginsKey},
		read:     readControllers,
		complete: completeControllers,
		start:    startControllers,
	}
}

// readControllers reads controllers.plugins from the YAML file at path,
// refusing unknown fields.
func readControllers(c *Config, path string) error {
	return readFileOnly(path, controllersPluginsKey, &c.Controllers.Controllers.Plugins)
}

func completeControllers(c *Config) []error {
	cc := &c.Controllers.Controllers
	var errs []error
	if cc.Workers < 1 || cc.Workers > 64 {
		errs = append(errs, invalid("controllers.workers", cc.Workers, "must be from 1 to 64"))
	}
	if cc.Timeout <= 0 {
		errs = append(errs, invalid("controllers.timeout", cc.Timeout, "must be positive"))
	}
	if cc.PluginsDir != "" {
		if abs, err := filepath.Abs(cc.PluginsDir); err == nil {
			cc.PluginsDir = abs
		}
	}
	names := make(map[string]bool)
	for i := range cc.Plugins {
		p := &cc.Plugins[i]
		key := fmt.Sprintf("%s[%d]", controllersPluginsKey, i)
		switch {
		case p.Name == "":
			errs = append(errs, fmt.Errorf("invalid configuration: %s.name: must not be empty", key))
		case names[p.Name]:
			errs = append(errs, fmt.Errorf("invalid configuration: %s.name: %q is used twice", key, p.Name))
		}
		names[p.Name] = true
		if p.Path == "" {
			errs = append(errs, fmt.Errorf("invalid configuration: %s.path: must not be empty", key))
		}
		if p.Workers < 0 || p.Workers > 64 {
			errs = append(errs, fmt.Errorf("invalid configuration: %s.workers: %d: must be from 0 (default) to 64", key, p.Workers))
		}
		if p.MemoryLimit != "" {
			q, err := resource.ParseQuantity(p.MemoryLimit)
			if err != nil || q.Value() <= 0 {
				errs = append(errs, fmt.Errorf("invalid configuration: %s.memory-limit: %q is not a positive quantity", key, p.MemoryLimit))
			} else {
				p.memoryLimit = q.Value()
			}
		}
		if p.Timeout != "" {
			d, err := time.ParseDuration(p.Timeout)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("invalid configuration: %s.timeout: %q is not a positive duration", key, p.Timeout))
			} else {
				p.timeout = d
			}
		}
	}
	return errs
}

// controllersUser is the identity the controllers act as.
var controllersUser = apiserver.User{Name: "system:kube-controller-manager", Groups: []string{"system:masters"}}

// startControllers loads the controller plugins and runs the driver.
func startControllers(ctx context.Context, env componentEnv) (func(), error) {
	cc := env.Config.Controllers.Controllers
	log := env.Logger.With("component", "controllers")
	if !cc.Enabled {
		return func() {}, nil
	}
	drv, err := controller.New(controller.Config{
		Client:         env.Client(controllersUser),
		Logger:         log,
		LeaderElection: cc.LeaderElect,
		Identity:       controllerIdentity(env.Config),
	})
	if err != nil {
		return nil, err
	}
	plugins, err := controllerPlugins(cc, log)
	if err != nil {
		return nil, err
	}
	var loaded []*runtime.Plugin
	closeAll := func() {
		for _, p := range loaded {
			_ = p.Close(context.Background())
		}
	}
	for _, cp := range plugins {
		workers := cp.Workers
		if workers == 0 {
			workers = int(cc.Workers)
		}
		timeout := cp.timeout
		if timeout == 0 {
			timeout = cc.Timeout
		}
		p, err := env.Engine.Load(ctx, runtime.PluginConfig{
			Name: cp.Name, Path: cp.Path, Settings: cp.Settings, Host: drv,
			PoolSize: workers, Timeout: timeout, MemoryLimit: cp.memoryLimit,
		})
		if err != nil {
			closeAll()
			return nil, err
		}
		loaded = append(loaded, p)
		c, err := runtime.NewController(ctx, p)
		if err != nil {
			closeAll()
			return nil, err
		}
		if err := drv.Add(controller.Registration{Name: cp.Name, Spec: c.Spec(), Reconciler: c, Workers: workers}); err != nil {
			closeAll()
			return nil, err
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := drv.Run(runCtx); err != nil {
			log.Error("controller driver stopped", "err", err)
		}
	}()
	log.Info("controllers loaded", "count", len(plugins))
	return func() {
		cancel()
		<-done
		closeAll()
	}, nil
}

// controllerPlugins lists the plugins to load: the built-ins found in the
// plugins directory (minus disabled ones and those the file overrides),
// then the file's. A built-in missing from the default directory is
// skipped with a warning; from a configured directory it is an error.
func controllerPlugins(cc ControllersSection, log *slog.Logger) ([]ControllerPlugin, error) {
	dir, explicit := cc.PluginsDir, cc.PluginsDir != ""
	if !explicit {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("controllers: find the plugins directory: %w", err)
		}
		dir = filepath.Join(filepath.Dir(exe), "plugins")
	}
	skip := make(map[string]bool)
	for _, n := range cc.Disabled {
		skip[n] = true
	}
	for _, p := range cc.Plugins {
		skip[p.Name] = true
	}
	var out []ControllerPlugin
	for _, name := range builtinControllers {
		if skip[name] {
			continue
		}
		path := filepath.Join(dir, name+".wasm")
		if _, err := os.Stat(path); err != nil {
			if !explicit && errors.Is(err, os.ErrNotExist) {
				log.Warn("built-in controller not found; run `make plugins`", "controller", name, "path", path)
				continue
			}
			return nil, fmt.Errorf("controllers: built-in controller %q: %w (build it with `make plugins`, or list it in controllers.disabled)", name, err)
		}
		out = append(out, ControllerPlugin{Name: name, Path: path})
	}
	return append(out, cc.Plugins...), nil
}

// controllerIdentity is this server's leader-election identity: stable
// across restarts of the same server (host name and data directory), so a
// restarted server takes its Lease back at once.
func controllerIdentity(c Config) string {
	host, err := os.Hostname()
	if err != nil {
		host = "tugboat"
	}
	return host + ":" + c.DataDir
}
