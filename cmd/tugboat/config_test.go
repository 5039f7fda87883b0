package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// parseFlags returns the server command's flag set after parsing args.
func parseFlags(t testing.TB, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := newServerCommand().Flags()
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return fs
}

func writeConfig(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tugboat.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clearEnv unsets every TUGBOAT_ variable for the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, envPrefix+"_") {
			t.Setenv(name, "") // restores the value after the test
			os.Unsetenv(name)
		}
	}
}

func TestConfigPrecedence(t *testing.T) {
	const file = `
data-dir: /from/file
listen: 127.0.0.1:1001
log:
  level: warn
tls:
  extra-sans: [file.example.com]
api:
  max-body-bytes: 1001
store:
  compaction-window: 1m
shutdown-timeout: 11s
`
	type want struct {
		dataDir, listen, level string
		sans                   []string
		maxBody                int64
		window, shutdown       time.Duration
	}
	defaults := want{defaultDataDir(), "127.0.0.1:6443", "info", []string{}, 3 << 20, 5 * time.Minute, 30 * time.Second}
	fromFile := want{"/from/file", "127.0.0.1:1001", "warn", []string{"file.example.com"}, 1001, time.Minute, 11 * time.Second}
	tests := []struct {
		name  string
		file  bool
		env   map[string]string
		flags []string
		want  want
	}{
		{name: "defaults", want: defaults},
		{name: "file over defaults", file: true, want: fromFile},
		{
			name: "env over file",
			file: true,
			env: map[string]string{
				"TUGBOAT_DATA_DIR": "/from/env", "TUGBOAT_LISTEN": "127.0.0.1:2002", "TUGBOAT_LOG_LEVEL": "error",
				"TUGBOAT_TLS_EXTRA_SANS": "env.example.com,10.0.0.2", "TUGBOAT_API_MAX_BODY_BYTES": "2002",
				"TUGBOAT_STORE_COMPACTION_WINDOW": "2m", "TUGBOAT_SHUTDOWN_TIMEOUT": "22s",
			},
			want: want{"/from/env", "127.0.0.1:2002", "error", []string{"env.example.com", "10.0.0.2"}, 2002, 2 * time.Minute, 22 * time.Second},
		},
		{
			name: "env over defaults without a file",
			env:  map[string]string{"TUGBOAT_LOG_LEVEL": "debug"},
			want: func() want { w := defaults; w.level = "debug"; return w }(),
		},
		{
			name: "flags over env over file",
			file: true,
			env:  map[string]string{"TUGBOAT_LISTEN": "127.0.0.1:2002", "TUGBOAT_LOG_LEVEL": "error", "TUGBOAT_API_MAX_BODY_BYTES": "2002"},
			flags: []string{"--data-dir=/from/flag", "--listen=127.0.0.1:3003", "--log-level=debug",
				"--tls-extra-sans=flag.example.com", "--tls-extra-sans=10.0.0.3", "--api-max-body-bytes=3003",
				"--store-compaction-window=3m", "--shutdown-timeout=33s"},
			want: want{"/from/flag", "127.0.0.1:3003", "debug", []string{"flag.example.com", "10.0.0.3"}, 3003, 3 * time.Minute, 33 * time.Second},
		},
		{
			name:  "one flag over file, the rest from the file",
			file:  true,
			flags: []string{"--log-level=error"},
			want:  func() want { w := fromFile; w.level = "error"; return w }(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			flags := tc.flags
			if tc.file {
				flags = append([]string{"--config", writeConfig(t, file)}, flags...)
			}
			cfg, err := loadConfig(parseFlags(t, flags...))
			if err != nil {
				t.Fatal(err)
			}
			got := want{cfg.DataDir, cfg.Listen, cfg.Log.Level, cfg.TLS.ExtraSANs, cfg.API.MaxBodyBytes, cfg.Store.CompactionWindow, cfg.ShutdownTimeout}
			if got.dataDir != tc.want.dataDir || got.listen != tc.want.listen || got.level != tc.want.level ||
				!slices.Equal(got.sans, tc.want.sans) || got.maxBody != tc.want.maxBody ||
				got.window != tc.want.window || got.shutdown != tc.want.shutdown {
				t.Errorf("config\n got %+v\nwant %+v", got, tc.want)
			}
			if wantKC := filepath.Join(tc.want.dataDir, "admin.kubeconfig"); cfg.WriteKubeconfig != wantKC {
				t.Errorf("write-kubeconfig %q, want the default %q", cfg.WriteKubeconfig, wantKC)
			}
		})
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	clearEnv(t)
	t.Setenv("TUGBOAT_CONFIG", writeConfig(t, "log:\n  format: json\n"))
	cfg, err := loadConfig(parseFlags(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Format != "json" {
		t.Errorf("log.format %q, want json from the file named by TUGBOAT_CONFIG", cfg.Log.Format)
	}
}

func TestSampleConfig(t *testing.T) {
	clearEnv(t)
	cfg, err := loadConfig(parseFlags(t, "--config", "../../configs/tugboat.yaml"))
	if err != nil {
		t.Fatalf("configs/tugboat.yaml: %v", err)
	}
	abs, err := filepath.Abs("data/tugboat")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != abs || cfg.Listen != "127.0.0.1:6443" {
		t.Errorf("data-dir %q listen %q, want %q and 127.0.0.1:6443", cfg.DataDir, cfg.Listen, abs)
	}
	// The sample documents every key.
	data, err := os.ReadFile("../../configs/tugboat.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range options() {
		leaf := o.key[strings.LastIndex(o.key, ".")+1:]
		if !strings.Contains(string(data), "\n"+strings.Repeat("  ", strings.Count(o.key, "."))+leaf+":") {
			t.Errorf("configs/tugboat.yaml does not set %s", o.key)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.csv")
	if err := os.WriteFile(tokens, []byte("t,u,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		file  string
		env   map[string]string
		flags []string
		want  []string // substrings of the error
	}{
		{name: "unknown top-level key", file: "lisen: 127.0.0.1:1\n", want: []string{`unknown key "lisen"`}},
		{name: "unknown nested key", file: "log:\n  levle: debug\n", want: []string{`unknown key "log.levle"`}},
		{name: "section given a value", file: "log: debug\n", want: []string{`key "log" must be a mapping`}},
		{name: "config key in the file", file: "config: other.yaml\n", want: []string{`unknown key "config"`}},
		{name: "bad log level in file", file: "log:\n  level: verbose\n", want: []string{"log.level", "verbose"}},
		{name: "bad log format from env", env: map[string]string{"TUGBOAT_LOG_FORMAT": "xml"}, want: []string{"log.format", "xml"}},
		{name: "bad listen flag", flags: []string{"--listen=localhost"}, want: []string{"listen", "host:port"}},
		{name: "bad listen port", file: "listen: 127.0.0.1:99999\n", want: []string{"listen", "99999"}},
		{name: "max body not a number", file: "api:\n  max-body-bytes: lots\n", want: []string{"api.max-body-bytes"}},
		{name: "max body not positive", env: map[string]string{"TUGBOAT_API_MAX_BODY_BYTES": "0"}, want: []string{"api.max-body-bytes", "positive"}},
		{name: "duration without unit", file: "shutdown-timeout: 30\n", want: []string{"shutdown-timeout", "unit"}},
		{name: "bad duration", file: "store:\n  compaction-window: soon\n", want: []string{"store.compaction-window"}},
		{name: "negative compaction window", flags: []string{"--store-compaction-window=-1s"}, want: []string{"store.compaction-window", "negative"}},
		{name: "bad SAN", file: "tls:\n  extra-sans: [\"bad name!\"]\n", want: []string{"tls.extra-sans", "bad name!"}},
		{name: "missing token file", flags: []string{"--auth-token-file=/nonexistent/tokens.csv"}, want: []string{"auth.token-file", "/nonexistent/tokens.csv"}},
		{name: "missing config file", flags: []string{"--config=/nonexistent/tugboat.yaml"}, want: []string{"/nonexistent/tugboat.yaml"}},
		{name: "malformed yaml", file: "log: [\n", want: []string{"config file"}},
		{name: "two bad values are both named", file: "log:\n  level: loud\n  format: fancy\n", want: []string{"log.level", "log.format"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			flags := tc.flags
			if tc.file != "" {
				flags = append([]string{"--config", writeConfig(t, tc.file)}, flags...)
			}
			_, err := loadConfig(parseFlags(t, flags...))
			if err == nil {
				t.Fatal("loadConfig succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	t.Run("valid token file accepted", func(t *testing.T) {
		clearEnv(t)
		if _, err := loadConfig(parseFlags(t, "--auth-token-file", tokens)); err != nil {
			t.Fatal(err)
		}
	})
}
