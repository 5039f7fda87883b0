package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/runtime"
)

// admissionKey is the file-only key listing admission plugins (a list of
// mappings cannot be a flag or an environment variable).
const admissionKey = "admission.plugins"

// AdmissionPlugin is one entry of admission.plugins, in call order within
// its type (all mutating plugins run before all validating ones). The
// section is read straight from the YAML file rather than through viper,
// which lower-cases every key and would mangle the plugins' settings.
type AdmissionPlugin struct {
	// Name tags the plugin's logs and errors.
	Name string `json:"name"`
	// Path is the .wasm file, relative to the directory the server starts in.
	Path string `json:"path"`
	// Type is Mutating or Validating.
	Type string `json:"type"`
	// Rules say which requests the plugin sees.
	Rules []struct {
		Resources  []string `json:"resources"`
		Operations []string `json:"operations"`
	} `json:"rules"`
	// Settings are passed to the plugin as JSON, which validates them at
	// start.
	Settings json.RawMessage `json:"settings,omitempty"`
	// FailurePolicy is Fail (default) or Ignore: what a plugin error means.
	FailurePolicy string `json:"failure-policy,omitempty"`
	// MemoryLimit is a Kubernetes quantity (default 64Mi).
	MemoryLimit string `json:"memory-limit,omitempty"`
	// Timeout bounds each call, as a Go duration (default 1s).
	Timeout string `json:"timeout,omitempty"`

	timeout time.Duration
}

// readAdmission reads admission.plugins from the YAML file at path,
// refusing unknown fields.
func readAdmission(path string) ([]AdmissionPlugin, error) {
	var plugins []AdmissionPlugin
	if err := readFileOnly(path, admissionKey, &plugins); err != nil {
		return nil, err
	}
	return plugins, nil
}

// validate checks one entry; i is its index for error messages.
func (p *AdmissionPlugin) validate(i int) error {
	key := fmt.Sprintf("%s[%d]", admissionKey, i)
	switch {
	case p.Name == "":
		return fmt.Errorf("invalid configuration: %s.name: required", key)
	case p.Path == "":
		return fmt.Errorf("invalid configuration: %s.path: required (plugin %q)", key, p.Name)
	case p.Type != "Mutating" && p.Type != "Validating":
		return fmt.Errorf("invalid configuration: %s.type: %q is not Mutating or Validating (plugin %q)", key, p.Type, p.Name)
	case p.FailurePolicy != "" && p.FailurePolicy != "Fail" && p.FailurePolicy != "Ignore":
		return fmt.Errorf("invalid configuration: %s.failure-policy: %q is not Fail or Ignore (plugin %q)", key, p.FailurePolicy, p.Name)
	case p.Timeout != "" && !validDuration(p.Timeout, &p.timeout):
		return fmt.Errorf("invalid configuration: %s.timeout: %q is not a positive duration such as 500ms (plugin %q)", key, p.Timeout, p.Name)
	case len(p.Rules) == 0:
		return fmt.Errorf("invalid configuration: %s.rules: at least one rule is required (plugin %q)", key, p.Name)
	}
	if p.MemoryLimit != "" {
		q, err := resource.ParseQuantity(p.MemoryLimit)
		if err != nil || q.Sign() <= 0 {
			return fmt.Errorf("invalid configuration: %s.memory-limit: %q is not a positive quantity (plugin %q)", key, p.MemoryLimit, p.Name)
		}
	}
	for j, r := range p.Rules {
		if len(r.Resources) == 0 || len(r.Operations) == 0 {
			return fmt.Errorf("invalid configuration: %s.rules[%d]: resources and operations are required (plugin %q)", key, j, p.Name)
		}
		for _, op := range r.Operations {
			if !slices.Contains([]string{"CREATE", "UPDATE", "DELETE", "CONNECT", "*"}, op) {
				return fmt.Errorf("invalid configuration: %s.rules[%d].operations: %q is not CREATE, UPDATE, DELETE, CONNECT or * (plugin %q)", key, j, op, p.Name)
			}
		}
	}
	return nil
}

// loadAdmission loads every configured plugin into engine and returns the
// hooks, mutating first. A plugin that fails to load or rejects its
// settings stops the server with an error naming it.
func loadAdmission(ctx context.Context, engine *runtime.Engine, plugins []AdmissionPlugin, logger *slog.Logger) ([]apiserver.AdmissionHook, error) {
	var mutating, validating []apiserver.AdmissionHook
	for _, c := range plugins {
		settings := []byte(c.Settings)
		if len(settings) == 0 {
			settings = []byte("null")
		}
		var limit int64
		if c.MemoryLimit != "" {
			q := resource.MustParse(c.MemoryLimit) // validated at load
			limit = q.Value()
		}
		path, err := filepath.Abs(c.Path)
		if err != nil {
			return nil, fmt.Errorf("admission plugin %q: path: %w", c.Name, err)
		}
		p, err := engine.Load(ctx, runtime.PluginConfig{
			Name:        c.Name,
			Path:        path,
			MemoryLimit: limit,
			Timeout:     c.timeout,
			Settings:    settings,
		})
		if err != nil {
			return nil, fmt.Errorf("admission plugin %q: %w", c.Name, err)
		}
		cfg := runtime.AdmissionConfig{Mutating: c.Type == "Mutating", FailurePolicy: c.FailurePolicy}
		for _, r := range c.Rules {
			cfg.Rules = append(cfg.Rules, runtime.AdmissionRule{Resources: r.Resources, Operations: r.Operations})
		}
		hook, err := runtime.NewAdmission(p, cfg)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("admission plugin %q: %w", c.Name, err), p.Close(ctx))
		}
		logger.Info("loaded admission plugin", "plugin", c.Name, "type", c.Type, "path", path)
		if cfg.Mutating {
			mutating = append(mutating, hook)
		} else {
			validating = append(validating, hook)
		}
	}
	return append(mutating, validating...), nil
}

func validDuration(s string, dst *time.Duration) bool {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return false
	}
	*dst = d
	return true
}
