package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/tugboat-dev/tugboat/kernel/pki"
)

// envPrefix prefixes every configuration key's environment variable:
// TUGBOAT_ + the key upper-cased with "." and "-" as "_".
const envPrefix = "TUGBOAT"

// configFlag names the flag (and TUGBOAT_CONFIG) that points at the file.
const configFlag = "config"

// Config is the server configuration after flags, environment, file and
// defaults have been merged and validated.
type Config struct {
	// ConfigFile is the file the configuration was read from ("" for none).
	ConfigFile      string        `mapstructure:"-"`
	DataDir         string        `mapstructure:"data-dir"`
	Listen          string        `mapstructure:"listen"`
	WriteKubeconfig string        `mapstructure:"write-kubeconfig"`
	ShutdownTimeout time.Duration `mapstructure:"shutdown-timeout"`
	Log             struct {
		Level  string `mapstructure:"level"`
		Format string `mapstructure:"format"`
	} `mapstructure:"log"`
	TLS struct {
		ExtraSANs []string `mapstructure:"extra-sans"`
	} `mapstructure:"tls"`
	Auth struct {
		TokenFile string `mapstructure:"token-file"`
	} `mapstructure:"auth"`
	API struct {
		MaxBodyBytes int64 `mapstructure:"max-body-bytes"`
	} `mapstructure:"api"`
	Store struct {
		CompactionWindow time.Duration `mapstructure:"compaction-window"`
	} `mapstructure:"store"`
	WasmCacheDir string `mapstructure:"wasm-cache-dir"`
	// Admission is read from the file by readAdmission (viper would
	// lower-case the plugins' settings); viper only sees it as opaque.
	Admission struct {
		Plugins []AdmissionPlugin `mapstructure:"-"`
		Raw     any               `mapstructure:"plugins"`
	} `mapstructure:"admission"`

	// Sections of the server's components (scheduler.go, controllers.go,
	// agent.go); squashed, so each component picks its own keys.
	Scheduler   SchedulerConfig   `mapstructure:",squash"`
	Controllers ControllersConfig `mapstructure:",squash"`
	Agent       AgentConfig       `mapstructure:",squash"`
	Network     NetworkConfig     `mapstructure:",squash"`
}

// A component is a part of the server with its own configuration keys and
// a start function; components() lists them in start order.
type component struct {
	name string
	// options are its flag/env/file keys, as options() lists the core's.
	options func() []option
	// fileKeys are file-only keys (lists of mappings, which viper would
	// lower-case) that read takes from the YAML file itself.
	fileKeys []string
	// read fills the file-only parts of c from the file at path; nil if
	// there are none.
	read func(c *Config, path string) error
	// complete validates the component's section after merging, naming
	// the key in each error.
	complete func(c *Config) []error
	// start runs the component until ctx is done; stop waits for it to
	// end. nil start means the component has nothing to run.
	start func(ctx context.Context, env componentEnv) (stop func(), err error)
}

// components lists the server's components in start order.
func components() []component {
	return []component{networkComponent(), agentComponent(), metricsComponent(), schedulerComponent(), controllersComponent()}
}

// option is one configuration key: its default and its flag's help.
type option struct {
	key  string
	def  any // string, []string, int64, bool or time.Duration: decides the flag type
	help string
}

// options lists every key; configs/tugboat.yaml documents the same keys.
func options() []option {
	opts := []option{
		{"data-dir", defaultDataDir(), "directory for the store, certificates and kubeconfig; the default is /var/lib/tugboat for root, else $XDG_DATA_HOME/tugboat or ~/.local/share/tugboat"},
		{"listen", "127.0.0.1:6443", "host:port to serve the Kubernetes API on (TLS); port 0 picks a free port"},
		{"write-kubeconfig", "", "path of the admin kubeconfig to write (default <data-dir>/admin.kubeconfig)"},
		{"shutdown-timeout", 30 * time.Second, "how long a graceful shutdown waits for in-flight requests"},
		{"log.level", "info", "log level: debug, info, warn or error"},
		{"log.format", "text", "log format: text or json"},
		{"tls.extra-sans", []string{}, "extra IP addresses or DNS names for the serving certificate"},
		{"auth.token-file", "", "Kubernetes static token file (CSV: token,user,uid,\"group1,group2\"); empty disables tokens"},
		{"api.max-body-bytes", int64(3 << 20), "largest accepted request body in bytes; larger bodies get 413"},
		{"store.compaction-window", 5 * time.Minute, "how much store history is kept for watch resumption; 0 disables compaction"},
		{"wasm-cache-dir", "", "compilation cache of the Wasm plugins (default <data-dir>/wasm-cache); servers may share one"},
	}
	for _, c := range components() {
		if c.options != nil {
			opts = append(opts, c.options()...)
		}
	}
	return opts
}

// defaultDataDir follows the XDG base directory spec for users and the
// FHS for root (like podman and k3s).
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/tugboat"
	}
	if dir := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "tugboat")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "tugboat")
	}
	return "data"
}

// flagName is the flag for a key: "log.level" -> "log-level".
func flagName(key string) string { return strings.ReplaceAll(key, ".", "-") }

// envName is the environment variable for a key: "log.level" ->
// "TUGBOAT_LOG_LEVEL".
func envName(key string) string {
	return envPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// addFlags defines --config and one flag per key on fs.
func addFlags(fs *pflag.FlagSet) {
	fs.String(configFlag, "", "YAML configuration file (env "+envName(configFlag)+")")
	for _, o := range options() {
		help := o.help + " (env " + envName(o.key) + ")"
		switch def := o.def.(type) {
		case string:
			fs.String(flagName(o.key), def, help)
		case []string:
			fs.StringSlice(flagName(o.key), def, help)
		case int64:
			fs.Int64(flagName(o.key), def, help)
		case time.Duration:
			fs.Duration(flagName(o.key), def, help)
		case bool:
			fs.Bool(flagName(o.key), def, help)
		default:
			panic(fmt.Sprintf("option %s: unsupported default type %T", o.key, o.def))
		}
	}
}

// loadConfig merges, with decreasing precedence, the flags set on fs, the
// TUGBOAT_* environment, the configuration file (from --config or
// TUGBOAT_CONFIG) and the defaults, then validates the result. Errors name
// the offending key.
func loadConfig(fs *pflag.FlagSet) (Config, error) {
	v := viper.New()
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	known := map[string]bool{admissionKey: true}
	for _, c := range components() {
		for _, k := range c.fileKeys {
			known[k] = true
		}
	}
	for _, o := range options() {
		known[o.key] = true
		v.SetDefault(o.key, o.def)
		if err := v.BindPFlag(o.key, fs.Lookup(flagName(o.key))); err != nil {
			return Config{}, fmt.Errorf("bind flag for %s: %w", o.key, err)
		}
	}

	path, err := fs.GetString(configFlag)
	if err != nil {
		return Config{}, err
	}
	if !fs.Changed(configFlag) {
		path = os.Getenv(envName(configFlag))
	}
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		if err := checkKeys(v.AllKeys(), known); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	var plugins []AdmissionPlugin
	if path != "" {
		if plugins, err = readAdmission(path); err != nil {
			return Config{}, err
		}
	}

	var cfg Config
	hook := mapstructure.ComposeDecodeHookFunc(
		durationOnlyFromString,
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)
	if err := v.UnmarshalExact(&cfg, viper.DecodeHook(hook)); err != nil {
		// mapstructure lists the errors after a generic header; each
		// names its key ('api.max-body-bytes' cannot parse ...).
		msg := err.Error()
		if _, list, ok := strings.Cut(msg, "error(s):"); ok {
			msg = strings.Join(strings.Fields(list), " ")
		}
		return Config{}, fmt.Errorf("invalid configuration: %s", msg)
	}
	cfg.Admission.Plugins = plugins
	cfg.ConfigFile = path
	for _, c := range components() {
		if c.read != nil && path != "" {
			if err := c.read(&cfg, path); err != nil {
				return Config{}, err
			}
		}
	}
	if err := cfg.complete(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// readFileOnly decodes the file-only key (a list of mappings such as
// "scheduler.profiles") from the YAML file at path into dst, refusing
// unknown fields; a missing key leaves dst alone. Viper would lower-case
// the mappings' keys (and so plugins' settings), hence the separate read.
func readFileOnly(path, key string, dst any) error {
	section, name, _ := strings.Cut(key, ".")
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var loose map[string]json.RawMessage
	if err := yaml.Unmarshal(raw, &loose); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var sec map[string]json.RawMessage
	if err := json.Unmarshal(loose[section], &sec); err != nil {
		return nil // absent, or malformed: viper reports that
	}
	list, ok := sec[name]
	if !ok {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(list))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("config file %s: %s: %w", path, key, err)
	}
	return nil
}

// checkKeys reports the first key (in sorted order) that is not a known
// option, saying whether it is a misplaced section or unknown.
func checkKeys(keys []string, known map[string]bool) error {
	slices.Sort(keys)
	for _, k := range keys {
		if known[k] {
			continue
		}
		for _, o := range options() {
			if strings.HasPrefix(o.key, k+".") {
				return fmt.Errorf("key %q must be a mapping (of e.g. %q), not a value", k, strings.TrimPrefix(o.key, k+"."))
			}
		}
		return fmt.Errorf("unknown key %q", k)
	}
	return nil
}

// durationOnlyFromString refuses numbers for durations: YAML's
// `shutdown-timeout: 30` would otherwise silently mean 30 nanoseconds.
func durationOnlyFromString(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[time.Duration]() || from.Kind() == reflect.String || from == to {
		return data, nil
	}
	return nil, fmt.Errorf("%v is not a duration; write it with a unit, like \"30s\" or \"5m\"", data)
}

// invalid returns the error for a bad value of key.
func invalid(key string, value any, why string) error {
	return fmt.Errorf("invalid value for %s: %q: %s", key, fmt.Sprint(value), why)
}

// complete validates c and fills in derived defaults (the kubeconfig path);
// paths become absolute.
func (c *Config) complete() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, invalid("data-dir", c.DataDir, "must not be empty"))
	} else if abs, err := filepath.Abs(c.DataDir); err != nil {
		errs = append(errs, invalid("data-dir", c.DataDir, err.Error()))
	} else {
		c.DataDir = abs
	}
	if err := validateListen(c.Listen); err != nil {
		errs = append(errs, invalid("listen", c.Listen, err.Error()))
	}
	if c.WasmCacheDir == "" {
		c.WasmCacheDir = filepath.Join(c.DataDir, "wasm-cache")
	} else if abs, err := filepath.Abs(c.WasmCacheDir); err != nil {
		errs = append(errs, invalid("wasm-cache-dir", c.WasmCacheDir, err.Error()))
	} else {
		c.WasmCacheDir = abs
	}
	if c.WriteKubeconfig == "" {
		c.WriteKubeconfig = filepath.Join(c.DataDir, "admin.kubeconfig")
	} else if abs, err := filepath.Abs(c.WriteKubeconfig); err != nil {
		errs = append(errs, invalid("write-kubeconfig", c.WriteKubeconfig, err.Error()))
	} else {
		c.WriteKubeconfig = abs
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, invalid("shutdown-timeout", c.ShutdownTimeout, "must be positive"))
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		errs = append(errs, invalid("log.level", c.Log.Level, "want debug, info, warn or error"))
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		errs = append(errs, invalid("log.format", c.Log.Format, "want text or json"))
	}
	for _, san := range c.TLS.ExtraSANs {
		if err := pki.ValidateSAN(san); err != nil {
			errs = append(errs, invalid("tls.extra-sans", san, "neither an IP address nor a DNS name"))
		}
	}
	if c.Auth.TokenFile != "" {
		if _, err := os.Stat(c.Auth.TokenFile); err != nil {
			errs = append(errs, invalid("auth.token-file", c.Auth.TokenFile, err.Error()))
		}
	}
	if c.API.MaxBodyBytes <= 0 {
		errs = append(errs, invalid("api.max-body-bytes", c.API.MaxBodyBytes, "must be positive"))
	}
	if c.Store.CompactionWindow < 0 {
		errs = append(errs, invalid("store.compaction-window", c.Store.CompactionWindow, "must not be negative (0 disables compaction)"))
	}
	names := make(map[string]bool)
	for i := range c.Admission.Plugins {
		p := &c.Admission.Plugins[i]
		if err := p.validate(i); err != nil {
			errs = append(errs, err)
		} else if names[p.Name] {
			errs = append(errs, fmt.Errorf("invalid configuration: %s[%d].name: %q is used twice", admissionKey, i, p.Name))
		}
		names[p.Name] = true
	}
	for _, comp := range components() {
		if comp.complete != nil {
			errs = append(errs, comp.complete(c)...)
		}
	}
	return errors.Join(errs...)
}

// validateListen checks a host:port listen address.
func validateListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil && len(validation.IsDNS1123Subdomain(strings.ToLower(host))) > 0 {
		return fmt.Errorf("host %q is neither an IP address nor a host name", host)
	}
	return nil
}
