// Package testenv runs real Tugboat binaries for end-to-end tests: it builds
// bin/tugboat and the pinned bin/kubectl with the go command, starts
// `tugboat server` on a free port of 127.0.0.1 with a fresh data directory,
// and hands back its kubeconfig and a client-go rest.Config.
//
// Builds are serialised across test processes (`go test ./...` runs
// packages in parallel) with a lock file in bin/, and happen at most once
// per test process.
package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// modulePath identifies the repository's main module.
const modulePath = "github.com/tugboat-dev/tugboat"

var (
	rootOnce sync.Once
	root     string
	rootErr  error
)

// RepoRoot returns the repository root: the closest parent of the working
// directory whose go.mod declares the Tugboat module.
func RepoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() { root, rootErr = findRoot() })
	if rootErr != nil {
		t.Fatalf("testenv: %v", rootErr)
	}
	return root
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modfileModule(data) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// modfileModule returns the module path a go.mod declares.
func modfileModule(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// requireVersion returns the version go.mod requires of module path, or "".
func requireVersion(gomod []byte, path string) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == path {
			return fields[1]
		}
	}
	return ""
}

// lockBin takes an exclusive lock on bin/.testenv.lock (creating bin/) and
// returns its release function.
func lockBin(t testing.TB, root string) func() {
	t.Helper()
	bin := filepath.Join(root, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	f, err := os.OpenFile(filepath.Join(bin, ".testenv.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("testenv: lock %s: %v", f.Name(), err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}

// goBuild runs `go build args...` in dir, failing t with the output.
func goBuild(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: go build %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, out)
	}
}

var (
	tugboatMu    sync.Mutex
	tugboatBuilt string
)

// Tugboat builds bin/tugboat from the working tree (once per test process;
// the go command leaves it alone when it is up to date) and returns its
// absolute path.
func Tugboat(t testing.TB) string {
	t.Helper()
	tugboatMu.Lock()
	defer tugboatMu.Unlock()
	if tugboatBuilt != "" {
		return tugboatBuilt
	}
	root := RepoRoot(t)
	unlock := lockBin(t, root)
	defer unlock()
	bin := filepath.Join(root, "bin", "tugboat")
	goBuild(t, root, "-o", bin, "./cmd/tugboat")
	tugboatBuilt = bin
	return bin
}

var kubectlMu sync.Mutex

// Kubectl returns the absolute path of bin/kubectl, first building it from
// tools/kubectl (a separate module pinning k8s.io/kubectl) when it is
// missing or older than that module's go.mod, go.sum or main.go. A cold
// build takes minutes; `make kubectl` builds the same binary.
func Kubectl(t testing.TB) string {
	t.Helper()
	kubectlMu.Lock()
	defer kubectlMu.Unlock()
	root := RepoRoot(t)
	bin := filepath.Join(root, "bin", "kubectl")
	src := filepath.Join(root, "tools", "kubectl")
	if !stale(t, bin, src) {
		return bin
	}
	unlock := lockBin(t, root)
	defer unlock()
	if !stale(t, bin, src) { // another test process built it meanwhile
		return bin
	}
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Logf("testenv: building %s (a cold build takes a few minutes)", bin)
	goBuild(t, src, "-ldflags", KubectlLDFlags(requireVersion(gomod, "k8s.io/kubectl")), "-o", bin, ".")
	return bin
}

// KubectlLDFlags returns the -ldflags that stamp kubectl's version (as
// `make kubectl` does): k8s.io/kubectl v0.X.Y is Kubernetes v1.X.Y.
func KubectlLDFlags(kubectlModVersion string) string {
	v, ok := strings.CutPrefix(kubectlModVersion, "v0.")
	if !ok {
		return ""
	}
	minor, _, _ := strings.Cut(v, ".")
	const pkg = "k8s.io/component-base/version"
	return fmt.Sprintf("-X %s.gitVersion=v1.%s -X %s.gitMajor=1 -X %s.gitMinor=%s", pkg, v, pkg, pkg, minor)
}

// stale reports whether bin is missing or older than the module files in
// src.
func stale(t testing.TB, bin, src string) bool {
	t.Helper()
	fi, err := os.Stat(bin)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for _, name := range []string{"go.mod", "go.sum", "main.go"} {
		si, err := os.Stat(filepath.Join(src, name))
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		if si.ModTime().After(fi.ModTime()) {
			return true
		}
	}
	return false
}
