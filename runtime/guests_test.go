package runtime

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testDir holds the guests built by the tests and the compilation cache
// they share, so each guest is built and compiled once per test run.
var testDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tugboat-runtime-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// guestBuild is one guest built at most once per test run.
type guestBuild struct {
	once sync.Once
	path string
	err  error
}

var guestBuilds sync.Map // name -> *guestBuild

// guestPath builds testdata/<name> for wasip1 (once per test run) and
// returns the .wasm file.
func guestPath(t testing.TB, name string) string {
	t.Helper()
	v, _ := guestBuilds.LoadOrStore(name, &guestBuild{})
	b := v.(*guestBuild)
	b.once.Do(func() {
		b.path = filepath.Join(testDir, name+".wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", b.path, ".")
		cmd.Dir = filepath.Join("testdata", name)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("build guest %s: %v\n%s", name, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// logBuffer collects log output for assertions; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// contains reports whether s appears in the log.
func (l *logBuffer) contains(s string) bool { return strings.Contains(l.String(), s) }

// newTestEngine returns an engine sharing the test run's compilation cache
// and a buffer with its log.
func newTestEngine(t testing.TB) (*Engine, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := NewEngine(context.Background(), Config{CacheDir: filepath.Join(testDir, "cache"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(context.Background()); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	return e, logs
}

// loadGuest loads the test guest with cfg (Name and Path filled in when
// empty).
func loadGuest(t testing.TB, e *Engine, cfg PluginConfig) *Plugin {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "guest"
	}
	if cfg.Path == "" {
		cfg.Path = guestPath(t, "guest")
	}
	p, err := e.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// mustCall calls export and fails the test on error.
func mustCall(t testing.TB, p *Plugin, export, input string) string {
	t.Helper()
	out, err := p.Call(context.Background(), export, []byte(input))
	if err != nil {
		t.Fatalf("call %s(%q): %v", export, input, err)
	}
	return string(out)
}
