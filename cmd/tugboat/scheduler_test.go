package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSchedulerProfilesConfig(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	for _, b := range builtinSchedulerPlugins {
		if err := os.WriteFile(filepath.Join(dir, b.file), []byte("wasm"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := writeConfig(t, `
scheduler:
  plugins-dir: `+dir+`
  profiles:
  - name: default-scheduler
  - name: gpu-scheduler
    plugins:
    - name: NodeResourcesFit
      weight: 5
      settings: {scoringStrategy: {type: MostAllocated}}
    - name: ImageLocality
      enabled: false
    - name: MyFilter
      path: /opt/my-filter.wasm
  - name: bare
    no-builtins: true
    plugins:
    - name: NodeName
`)
	cfg, err := loadConfig(parseFlags(t, "--config", path))
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.Scheduler.Scheduler
	if len(sc.Profiles) != 3 || sc.memoryLimit != 512<<20 {
		t.Fatalf("profiles %+v, memory limit %d", sc.Profiles, sc.memoryLimit)
	}
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		profile int
		want    string
	}{
		{0, "NodeUnschedulable:0 NodeName:0 TaintToleration:3 NodeAffinity:2 NodeResourcesFit:1 PodTopologySpread:2 InterPodAffinity:2 NodeResourcesBalancedAllocation:1 ImageLocality:1"},
		{1, "NodeUnschedulable:0 NodeName:0 TaintToleration:3 NodeAffinity:2 NodeResourcesFit:5 PodTopologySpread:2 InterPodAffinity:2 NodeResourcesBalancedAllocation:1 MyFilter:1"},
		{2, "NodeName:0"},
	} {
		plugins, err := schedulerPlugins(sc, sc.Profiles[tc.profile], log)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range plugins {
			got = append(got, p.Name+":"+strconv.FormatInt(*p.Weight, 10))
			if p.Name == "NodeResourcesFit" && tc.profile == 1 && !strings.Contains(string(p.Settings), "MostAllocated") {
				t.Errorf("settings %s", p.Settings)
			}
			if p.Name != "MyFilter" && filepath.Dir(p.Path) != dir {
				t.Errorf("%s from %s, want %s", p.Name, p.Path, dir)
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("profile %s: %s\nwant %s", sc.Profiles[tc.profile].Name, strings.Join(got, " "), tc.want)
		}
	}
	// balancedallocation.wasm is not needed while NodeResourcesFit's
	// module computes it.
	if err := os.Remove(filepath.Join(dir, "balancedallocation.wasm")); err != nil {
		t.Fatal(err)
	}
	if _, err := schedulerPlugins(sc, sc.Profiles[0], log); err != nil {
		t.Fatalf("without balancedallocation.wasm: %v", err)
	}
	// A missing built-in in a configured directory stops the server.
	if err := os.Remove(filepath.Join(dir, "imagelocality.wasm")); err != nil {
		t.Fatal(err)
	}
	if _, err := schedulerPlugins(sc, sc.Profiles[0], log); err == nil || !strings.Contains(err.Error(), "imagelocality.wasm") {
		t.Fatalf("missing built-in: %v", err)
	}
}

func TestSchedulerConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, config, want string
	}{
		{"profile without name", "scheduler:\n  profiles:\n  - plugins: []\n", "scheduler.profiles[0].name: must not be empty"},
		{"duplicate profile", "scheduler:\n  profiles:\n  - name: a\n  - name: a\n", `scheduler.profiles[1].name: "a" is used twice`},
		{"unknown plugin without path", "scheduler:\n  profiles:\n  - name: a\n    plugins:\n    - name: Nope\n", `"Nope" is not a built-in plugin`},
		{"bad weight", "scheduler:\n  profiles:\n  - name: a\n    plugins:\n    - name: NodeAffinity\n      weight: 500\n", "weight: 500: must be from 0 to 100"},
		{"unknown field", "scheduler:\n  profiles:\n  - name: a\n    plugin: []\n", "unknown field"},
		{"bad memory limit", "scheduler:\n  memory-limit: lots\n", "scheduler.memory-limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			_, err := loadConfig(parseFlags(t, "--config", writeConfig(t, tc.config)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestHostScorers: NodeResourcesBalancedAllocation runs inside the
// NodeResourcesFit module (a score part) when both are built-ins from
// their files with positive weights, with its settings under
// "balancedAllocation"; otherwise it stays a module of its own.
func TestHostScorers(t *testing.T) {
	w := func(v int64) *int64 { return &v }
	fit := SchedulerPluginConfig{Name: "NodeResourcesFit", Path: "/p/noderesources.wasm", Weight: w(1), builtin: true}
	bal := SchedulerPluginConfig{Name: "NodeResourcesBalancedAllocation", Path: "/p/balancedallocation.wasm", Weight: w(1), builtin: true}
	other := SchedulerPluginConfig{Name: "NodeName", Path: "/p/nodename.wasm", Weight: w(0), builtin: true}
	with := func(pc SchedulerPluginConfig, f func(*SchedulerPluginConfig)) SchedulerPluginConfig {
		f(&pc)
		return pc
	}
	for _, tc := range []struct {
		name     string
		in       []SchedulerPluginConfig
		names    string // resulting entries, guests in brackets
		settings string // of NodeResourcesFit
	}{
		{"defaults", []SchedulerPluginConfig{other, fit, bal}, "NodeName NodeResourcesFit[NodeResourcesBalancedAllocation:1]", `{"balancedAllocation":{}}`},
		{"settings merged", []SchedulerPluginConfig{
			with(fit, func(p *SchedulerPluginConfig) { p.Settings = []byte(`{"scoringStrategy":{"type":"MostAllocated"}}`) }),
			with(bal, func(p *SchedulerPluginConfig) { p.Settings = []byte(`{"resources":[{"name":"cpu"}]}`); p.Weight = w(4) }),
		}, "NodeResourcesFit[NodeResourcesBalancedAllocation:4]", `{"balancedAllocation":{"resources":[{"name":"cpu"}]},"scoringStrategy":{"type":"MostAllocated"}}`},
		{"own module", []SchedulerPluginConfig{fit, with(bal, func(p *SchedulerPluginConfig) { p.builtin = false; p.Path = "/opt/b.wasm" })},
			"NodeResourcesFit NodeResourcesBalancedAllocation", ``},
		{"fit filters only", []SchedulerPluginConfig{with(fit, func(p *SchedulerPluginConfig) { p.Weight = w(0) }), bal},
			"NodeResourcesFit NodeResourcesBalancedAllocation", ``},
		{"fit disabled", []SchedulerPluginConfig{bal}, "NodeResourcesBalancedAllocation", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := hostScorers(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, pc := range out {
				name := pc.Name
				if len(pc.guests) > 0 {
					var gs []string
					for _, g := range pc.guests {
						gs = append(gs, g.Name+":"+strconv.FormatInt(*g.Weight, 10))
					}
					name += "[" + strings.Join(gs, " ") + "]"
				}
				names = append(names, name)
				if pc.Name == "NodeResourcesFit" && string(pc.Settings) != tc.settings {
					t.Errorf("NodeResourcesFit settings %s, want %s", pc.Settings, tc.settings)
				}
			}
			if got := strings.Join(names, " "); got != tc.names {
				t.Errorf("plugins %s, want %s", got, tc.names)
			}
		})
	}
}
