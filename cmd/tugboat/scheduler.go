package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/leaderelect"
	kscheduler "github.com/tugboat-dev/tugboat/kernel/scheduler"
	"github.com/tugboat-dev/tugboat/runtime"
)

// schedulerProfilesKey is the file-only key listing scheduler profiles.
const schedulerProfilesKey = "scheduler.profiles"

// builtinScheduler is one built-in scheduler plugin: its kube-scheduler
// name, its file in the plugins directory and its default score weight
// (kube-scheduler's). Filters run in this order: cheap and selective
// first.
type builtinScheduler struct {
	name   string
	file   string
	weight int64
	// host names the built-in whose module also computes this scorer
	// (as a score part, one walk over the nodes for both) when both run
	// from the built-in files with positive weights; its settings go to
	// the host under hostKey.
	host, hostKey string
}

var builtinSchedulerPlugins = []builtinScheduler{
	{"NodeUnschedulable", "nodeunschedulable.wasm", 0, "", ""},
	{"NodeName", "nodename.wasm", 0, "", ""},
	{"TaintToleration", "tainttoleration.wasm", 3, "", ""},
	{"NodeAffinity", "nodeaffinity.wasm", 2, "", ""},
	{"NodeResourcesFit", "noderesources.wasm", 1, "", ""},
	{"PodTopologySpread", "podtopologyspread.wasm", 2, "", ""},
	{"InterPodAffinity", "interpodaffinity.wasm", 2, "", ""},
	{"NodeResourcesBalancedAllocation", "balancedallocation.wasm", 1, "NodeResourcesFit", "balancedAllocation"},
	{"ImageLocality", "imagelocality.wasm", 1, "", ""},
}

// SchedulerConfig is the scheduler section of Config (squashed into it: the keys it
// declares are top-level unless their mapstructure tags nest them).
type SchedulerConfig struct {
	Scheduler SchedulerSection `mapstructure:"scheduler"`
}

// SchedulerSection holds the scheduler.* keys.
type SchedulerSection struct {
	Enabled     bool          `mapstructure:"enabled"`
	LeaderElect bool          `mapstructure:"leader-elect"`
	PluginsDir  string        `mapstructure:"plugins-dir"`
	BindWorkers int64         `mapstructure:"bind-workers"`
	Timeout     time.Duration `mapstructure:"timeout"`
	MemoryLimit string        `mapstructure:"memory-limit"`
	// Profiles is read from the file by readScheduler.
	Profiles []SchedulerProfile `mapstructure:"-"`
	Raw      any                `mapstructure:"profiles"`

	memoryLimit int64
}

// SchedulerProfile is one entry of scheduler.profiles: the pods whose
// spec.schedulerName is Name are scheduled with the built-in plugins
// (unless NoBuiltins) changed and extended by Plugins.
type SchedulerProfile struct {
	Name string `json:"name"`
	// NoBuiltins starts the profile from no plugins instead of the
	// built-ins.
	NoBuiltins bool                    `json:"no-builtins,omitempty"`
	Plugins    []SchedulerPluginConfig `json:"plugins,omitempty"`
}

// SchedulerPluginConfig adds a plugin to a profile or, named like a
// built-in, changes it.
type SchedulerPluginConfig struct {
	Name string `json:"name"`
	// Path is the .wasm file (required unless Name is a built-in's).
	Path string `json:"path,omitempty"`
	// Weight multiplies the plugin's scores (default: the built-in's, else 1).
	Weight *int64 `json:"weight,omitempty"`
	// Enabled false removes a built-in from the profile.
	Enabled *bool `json:"enabled,omitempty"`
	// Settings are passed to the plugin, which validates them at start.
	Settings    json.RawMessage `json:"settings,omitempty"`
	MemoryLimit string          `json:"memory-limit,omitempty"`
	Timeout     string          `json:"timeout,omitempty"`

	memoryLimit int64
	timeout     time.Duration
	// builtin is set when the entry runs a built-in from its file.
	builtin bool
	// guests are the entries this one's module computes as further score
	// parts (resolved by hostScorers).
	guests []SchedulerPluginConfig
}

// schedulerComponent is the server's scheduler.
func schedulerComponent() component {
	return component{
		name: "scheduler",
		options: func() []option {
			return []option{
				{"scheduler.enabled", true, "run the scheduler (filter and score plugins are Wasm modules)"},
				{"scheduler.leader-elect", true, "schedule only while holding the kube-system/" + kscheduler.DefaultLeaseName + " Lease (one scheduler among servers sharing a store)"},
				{"scheduler.plugins-dir", "", "directory of the built-in scheduler plugins (<name>.wasm); default: plugins/ next to the tugboat binary"},
				{"scheduler.bind-workers", int64(64), "bindings the scheduler writes at once"},
				{"scheduler.timeout", 10 * time.Second, "deadline of one filter or score call (the first call sends every node)"},
				{"scheduler.memory-limit", "512Mi", "memory limit of each scheduler plugin instance (it holds a table of every node)"},
			}
		},
		fileKeys: []string{schedulerProfilesKey},
		read:     readScheduler,
		complete: completeScheduler,
		start:    startScheduler,
	}
}

// readScheduler reads scheduler.profiles from the YAML file at path,
// refusing unknown fields.
func readScheduler(c *Config, path string) error {
	return readFileOnly(path, schedulerProfilesKey, &c.Scheduler.Scheduler.Profiles)
}

func completeScheduler(c *Config) []error {
	sc := &c.Scheduler.Scheduler
	var errs []error
	if sc.BindWorkers < 1 || sc.BindWorkers > 1024 {
		errs = append(errs, invalid("scheduler.bind-workers", sc.BindWorkers, "must be from 1 to 1024"))
	}
	if sc.Timeout <= 0 {
		errs = append(errs, invalid("scheduler.timeout", sc.Timeout, "must be positive"))
	}
	if q, err := resource.ParseQuantity(sc.MemoryLimit); err != nil || q.Value() <= 0 {
		errs = append(errs, invalid("scheduler.memory-limit", sc.MemoryLimit, "must be a positive quantity such as 512Mi"))
	} else {
		sc.memoryLimit = q.Value()
	}
	if sc.PluginsDir != "" {
		if abs, err := filepath.Abs(sc.PluginsDir); err == nil {
			sc.PluginsDir = abs
		}
	}
	names := map[string]bool{}
	for i := range sc.Profiles {
		p := &sc.Profiles[i]
		key := fmt.Sprintf("%s[%d]", schedulerProfilesKey, i)
		switch {
		case p.Name == "":
			errs = append(errs, fmt.Errorf("invalid configuration: %s.name: must not be empty (it is the spec.schedulerName the profile serves)", key))
		case names[p.Name]:
			errs = append(errs, fmt.Errorf("invalid configuration: %s.name: %q is used twice", key, p.Name))
		}
		names[p.Name] = true
		plugins := map[string]bool{}
		for j := range p.Plugins {
			pc := &p.Plugins[j]
			pkey := fmt.Sprintf("%s.plugins[%d]", key, j)
			if pc.Name == "" {
				errs = append(errs, fmt.Errorf("invalid configuration: %s.name: must not be empty", pkey))
			} else if plugins[pc.Name] {
				errs = append(errs, fmt.Errorf("invalid configuration: %s.name: %q is used twice", pkey, pc.Name))
			}
			plugins[pc.Name] = true
			if pc.Path == "" && findBuiltinScheduler(pc.Name) == nil {
				errs = append(errs, fmt.Errorf("invalid configuration: %s.path: required, %q is not a built-in plugin", pkey, pc.Name))
			}
			if pc.Path != "" {
				if abs, err := filepath.Abs(pc.Path); err == nil {
					pc.Path = abs
				}
			}
			if pc.Weight != nil && (*pc.Weight < 0 || *pc.Weight > 100) {
				errs = append(errs, fmt.Errorf("invalid configuration: %s.weight: %d: must be from 0 to 100", pkey, *pc.Weight))
			}
			if pc.MemoryLimit != "" {
				q, err := resource.ParseQuantity(pc.MemoryLimit)
				if err != nil || q.Value() <= 0 {
					errs = append(errs, fmt.Errorf("invalid configuration: %s.memory-limit: %q is not a positive quantity", pkey, pc.MemoryLimit))
				} else {
					pc.memoryLimit = q.Value()
				}
			}
			if pc.Timeout != "" {
				d, err := time.ParseDuration(pc.Timeout)
				if err != nil || d <= 0 {
					errs = append(errs, fmt.Errorf("invalid configuration: %s.timeout: %q is not a positive duration", pkey, pc.Timeout))
				} else {
					pc.timeout = d
				}
			}
		}
	}
	return errs
}

func findBuiltinScheduler(name string) *builtinScheduler {
	for i := range builtinSchedulerPlugins {
		if builtinSchedulerPlugins[i].name == name {
			return &builtinSchedulerPlugins[i]
		}
	}
	return nil
}

// schedulerUser is the identity the scheduler acts as.
var schedulerUser = apiserver.User{Name: "system:kube-scheduler", Groups: []string{"system:masters"}}

// startScheduler resolves the profiles' plugins (a missing file stops the
// server, naming it), then loads them and runs the driver in the
// background: compiling a dozen modules takes seconds, which must delay
// neither the other components nor a shutdown. A plugin that fails to
// load (bad settings, a broken module) is logged and the scheduler does
// not run.
func startScheduler(ctx context.Context, env componentEnv) (func(), error) {
	sc := env.Config.Scheduler.Scheduler
	log := env.Logger.With("component", "scheduler")
	if !sc.Enabled {
		return func() {}, nil
	}
	profiles := sc.Profiles
	if len(profiles) == 0 {
		profiles = []SchedulerProfile{{Name: kscheduler.DefaultSchedulerName}}
	}
	resolved := make([][]SchedulerPluginConfig, len(profiles))
	for i, sp := range profiles {
		plugins, err := schedulerPlugins(sc, sp, log)
		if err != nil {
			return nil, err
		}
		resolved[i], err = hostScorers(plugins)
		if err != nil {
			return nil, fmt.Errorf("scheduler profile %q: %w", sp.Name, err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := runScheduler(runCtx, env, sc, profiles, resolved, log); err != nil && runCtx.Err() == nil {
			log.Error("scheduler not running", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}, nil
}

// runScheduler loads the plugins and runs the driver until ctx ends.
func runScheduler(ctx context.Context, env componentEnv, sc SchedulerSection, profiles []SchedulerProfile,
	resolved [][]SchedulerPluginConfig, log *slog.Logger) error {
	var loaded []*runtime.Plugin
	defer func() {
		for _, p := range loaded {
			_ = p.Close(context.Background())
		}
	}()
	var profs []*kscheduler.Profile
	for i, sp := range profiles {
		var cfgs []kscheduler.PluginConfig
		for _, pc := range resolved[i] {
			settings := []byte(pc.Settings)
			if len(settings) == 0 {
				settings = []byte("null")
			}
			limit, timeout := pc.memoryLimit, pc.timeout
			if limit == 0 {
				limit = sc.memoryLimit
			}
			if timeout == 0 {
				timeout = sc.Timeout
			}
			p, err := env.Engine.Load(ctx, runtime.PluginConfig{
				Name: pc.Name, Path: pc.Path, Settings: settings, PoolSize: 1, Timeout: timeout, MemoryLimit: limit,
			})
			if err != nil {
				return fmt.Errorf("scheduler profile %q: %w", sp.Name, err)
			}
			loaded = append(loaded, p)
			cfg, err := runtime.SchedulerPlugin(p, *pc.Weight)
			if err != nil {
				return fmt.Errorf("scheduler profile %q: %w", sp.Name, err)
			}
			if len(pc.guests) > 0 {
				cfg.Parts = []kscheduler.ScorePart{{Name: pc.Name, Weight: *pc.Weight}}
				for _, g := range pc.guests {
					cfg.Parts = append(cfg.Parts, kscheduler.ScorePart{Name: g.Name, Weight: *g.Weight})
				}
			}
			if *pc.Weight == 0 {
				cfg.Score = false
			}
			if cfg.Filter || cfg.Score {
				cfgs = append(cfgs, cfg)
			}
		}
		prof, err := kscheduler.NewProfile(sp.Name, cfgs)
		if err != nil {
			return err
		}
		if len(cfgs) == 0 {
			log.Warn("scheduler profile has no plugins: pods go to any node", "profile", sp.Name)
		}
		profs = append(profs, prof)
	}
	cfg := kscheduler.Config{
		Client: env.Client(schedulerUser), Profiles: profs, Logger: log, BindWorkers: int(sc.BindWorkers),
	}
	if sc.LeaderElect {
		cfg.LeaderElection = &leaderelect.Config{Identity: controllerIdentity(env.Config)}
	}
	s, err := kscheduler.New(cfg)
	if err != nil {
		return err
	}
	log.Info("scheduler starting", "profiles", len(profs), "plugins", len(loaded))
	return s.Run(ctx)
}

// schedulerPlugins resolves a profile's plugins: the built-ins found in
// the plugins directory (unless the profile has no-builtins), changed by
// the entries named like them, then the extra entries. Weight is always
// set. A built-in missing from the default directory is skipped with a
// warning; from a configured directory, or one the profile names, it is
// an error.
func schedulerPlugins(sc SchedulerSection, sp SchedulerProfile, log *slog.Logger) ([]SchedulerPluginConfig, error) {
	dir, explicit := sc.PluginsDir, sc.PluginsDir != ""
	if !explicit {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("scheduler: find the plugins directory: %w", err)
		}
		dir = filepath.Join(filepath.Dir(exe), "plugins")
	}
	byName := map[string]SchedulerPluginConfig{}
	for _, pc := range sp.Plugins {
		byName[pc.Name] = pc
	}
	var out []SchedulerPluginConfig
	used := map[string]bool{}
	for _, b := range builtinSchedulerPlugins {
		pc, named := byName[b.name]
		if sp.NoBuiltins && !named {
			continue
		}
		used[b.name] = true
		if pc.Enabled != nil && !*pc.Enabled {
			continue
		}
		pc.Name = b.name
		if pc.Weight == nil {
			w := b.weight
			pc.Weight = &w
		}
		if pc.Path == "" {
			pc.builtin = true
			pc.Path = filepath.Join(dir, b.file)
			// A scorer its host's module computes needs no file.
			hosted := b.host != "" && *pc.Weight > 0 && slices.ContainsFunc(out, func(h SchedulerPluginConfig) bool {
				return h.Name == b.host && h.builtin && *h.Weight > 0
			})
			if _, err := os.Stat(pc.Path); err != nil && !hosted {
				if !explicit && !named && errors.Is(err, os.ErrNotExist) {
					log.Warn("built-in scheduler plugin not found; run `make plugins`", "plugin", b.name, "path", pc.Path)
					continue
				}
				return nil, fmt.Errorf("scheduler profile %q: built-in plugin %s: %w (build it with `make plugins`, or disable it with enabled: false)", sp.Name, b.name, err)
			}
		}
		out = append(out, pc)
	}
	for _, pc := range sp.Plugins {
		if used[pc.Name] || (pc.Enabled != nil && !*pc.Enabled) {
			continue
		}
		if pc.Weight == nil {
			one := int64(1)
			pc.Weight = &one
		}
		out = append(out, pc)
	}
	return out, nil
}

// hostScorers moves each built-in scorer that another built-in's module
// can compute (builtinScheduler.host) into that module as a score part:
// both must run from the built-in files with positive weights; the
// guest's settings go into the host's under the guest's hostKey (e.g.
// NodeResourcesFit's settings get "balancedAllocation"), and the guest's
// own file is then not needed.
func hostScorers(plugins []SchedulerPluginConfig) ([]SchedulerPluginConfig, error) {
	at := map[string]int{}
	for i, pc := range plugins {
		at[pc.Name] = i
	}
	var out []SchedulerPluginConfig
	moved := map[string]bool{}
	for _, pc := range plugins {
		b := findBuiltinScheduler(pc.Name)
		if b == nil || b.host == "" || !pc.builtin || *pc.Weight == 0 {
			continue
		}
		h, ok := at[b.host]
		if !ok || !plugins[h].builtin || *plugins[h].Weight == 0 {
			continue
		}
		host := &plugins[h]
		settings := map[string]json.RawMessage{}
		if len(host.Settings) > 0 && string(host.Settings) != "null" {
			if err := json.Unmarshal(host.Settings, &settings); err != nil {
				return nil, fmt.Errorf("plugin %s: settings must be an object: %w", host.Name, err)
			}
		}
		guest := json.RawMessage(`{}`)
		if len(pc.Settings) > 0 && string(pc.Settings) != "null" {
			guest = pc.Settings
		}
		settings[b.hostKey] = guest
		js, err := json.Marshal(settings)
		if err != nil {
			return nil, err
		}
		host.Settings = js
		// The guest's file is not loaded: its path must not be required.
		pc.Path = host.Path
		host.guests = append(host.guests, pc)
		moved[pc.Name] = true
	}
	for _, pc := range plugins {
		if !moved[pc.Name] {
			out = append(out, pc)
		}
	}
	return out, nil
}
