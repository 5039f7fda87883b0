package kernel_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is the import path of the Tugboat module.
const module = "github.com/tugboat-dev/tugboat"

// listedPackage is the part of `go list -json` output the import rules need.
type listedPackage struct {
	ImportPath string
	ForTest    string // set on test variants of a package
	Standard   bool
	DepOnly    bool // listed only because a root depends on it
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// path is the package's import path without go list's " [p.test]" suffix.
func (p listedPackage) path() string {
	path, _, _ := strings.Cut(p.ImportPath, " ")
	return path
}

// isTestBuild reports whether p exists only in a test build: a test variant
// of a package or an external _test package.
func (p listedPackage) isTestBuild() bool {
	return p.ForTest != ""
}

// isTestMain reports whether p is a generated test main ("p.test"); it only
// imports the test variants, which are checked themselves.
func (p listedPackage) isTestMain() bool {
	return p.ForTest == "" && strings.HasSuffix(p.ImportPath, ".test")
}

// importRule is one layering rule of docs/ARCHITECTURE.md.
type importRule struct {
	name string
	// tree is the folder (relative to the module) whose packages the rule
	// binds: the package itself and everything below it.
	tree string
	// withTests also applies the rule to the packages' test builds.
	withTests bool
	// allowed reports whether a package of the tree may depend on dep.
	allowed func(dep string, standard map[string]bool) bool
}

// underTree reports whether importPath is root or lies below it.
func underTree(importPath, root string) bool {
	return importPath == root || strings.HasPrefix(importPath, root+"/")
}

var importRules = []importRule{
	{
		name:      "kernel never imports wazero, runtime, sdk or plugins",
		tree:      "kernel",
		withTests: true,
		allowed: func(dep string, _ map[string]bool) bool {
			for _, banned := range []string{
				"github.com/tetratelabs/wazero",
				module + "/runtime",
				module + "/sdk",
				module + "/plugins",
			} {
				if underTree(dep, banned) {
					return false
				}
			}
			return true
		},
	},
	{
		name: "hostapi imports only the standard library",
		tree: "hostapi",
		allowed: func(dep string, standard map[string]bool) bool {
			return standard[dep] || underTree(dep, module+"/hostapi")
		},
	},
}

// violations returns "pkg -> dep" for every dependency (direct or
// transitive) of a package in the rule's tree that the rule forbids.
func violations(rule importRule, pkgs []listedPackage) []string {
	standard := make(map[string]bool)
	for _, p := range pkgs {
		if p.Standard {
			standard[p.path()] = true
		}
	}
	root := module + "/" + rule.tree
	var found []string
	for _, p := range pkgs {
		if p.DepOnly || p.isTestMain() || !underTree(p.path(), root) {
			continue
		}
		if p.isTestBuild() && !rule.withTests {
			continue
		}
		// Imports as well as Deps: when a dependency cannot be resolved
		// (not in go.mod), go list -e still names it in Imports.
		for _, dep := range slices.Concat(p.Imports, p.Deps) {
			dep, _, _ = strings.Cut(dep, " ")
			if !rule.allowed(dep, standard) {
				v := p.ImportPath + " -> " + dep
				if !slices.Contains(found, v) {
					found = append(found, v)
				}
			}
		}
	}
	return found
}

// goList runs `go list -e -deps -test -json` on patterns and decodes the
// stream of package objects. A pattern that matches nothing (a folder that
// does not exist yet) yields no packages, not an error.
func goList(t testing.TB, patterns ...string) []listedPackage {
	t.Helper()
	args := append([]string{"list", "-e", "-deps", "-test", "-json"}, patterns...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestImportRules enforces the layering of docs/ARCHITECTURE.md on the
// packages that exist today; folders not created yet are simply empty.
func TestImportRules(t *testing.T) {
	var patterns []string
	for _, rule := range importRules {
		patterns = append(patterns, module+"/"+rule.tree+"/...")
	}
	pkgs := goList(t, patterns...)

	// Guard against a rule that can never fire because go list saw nothing.
	var sawKernel bool
	for _, p := range pkgs {
		if !p.DepOnly && underTree(p.path(), module+"/kernel") {
			sawKernel = true
		}
		if !p.DepOnly && p.Error != nil {
			t.Logf("go list reports %s: %s", p.ImportPath, p.Error.Err)
		}
	}
	if !sawKernel {
		t.Fatalf("go list found no packages under %s/kernel; the rules check nothing", module)
	}

	for _, rule := range importRules {
		t.Run(rule.tree, func(t *testing.T) {
			for _, v := range violations(rule, pkgs) {
				t.Errorf("%s: %s", rule.name, v)
			}
		})
	}
}

// TestImportRulesCatchViolations feeds the rules made-up package graphs so the
// check itself is known to fire (the real tree should have no violations).
func TestImportRulesCatchViolations(t *testing.T) {
	std := func(path string) listedPackage {
		return listedPackage{ImportPath: path, Standard: true, DepOnly: true}
	}
	dep := func(path string) listedPackage {
		return listedPackage{ImportPath: path, DepOnly: true}
	}
	rules := make(map[string]importRule)
	for _, r := range importRules {
		rules[r.tree] = r
	}
	tests := []struct {
		name string
		rule string
		pkgs []listedPackage
		want []string
	}{
		{
			name: "kernel clean",
			rule: "kernel",
			pkgs: []listedPackage{
				{ImportPath: module + "/kernel/store", Imports: []string{"context"}, Deps: []string{"context", "github.com/dgraph-io/badger/v4"}},
				std("context"), dep("github.com/dgraph-io/badger/v4"),
			},
		},
		{
			name: "kernel imports wazero directly",
			rule: "kernel",
			pkgs: []listedPackage{
				{ImportPath: module + "/kernel/x", Imports: []string{"github.com/tetratelabs/wazero/api"}, Deps: []string{"github.com/tetratelabs/wazero/api"}},
				dep("github.com/tetratelabs/wazero/api"),
			},
			want: []string{module + "/kernel/x -> github.com/tetratelabs/wazero/api"},
		},
		{
			name: "kernel reaches runtime transitively",
			rule: "kernel",
			pkgs: []listedPackage{
				{ImportPath: module + "/kernel/x", Imports: []string{module + "/kernel/y"}, Deps: []string{module + "/kernel/y", module + "/runtime"}},
				{ImportPath: module + "/kernel/y", Imports: []string{module + "/runtime"}, Deps: []string{module + "/runtime"}},
				dep(module + "/runtime"),
			},
			want: []string{
				module + "/kernel/x -> " + module + "/runtime",
				module + "/kernel/y -> " + module + "/runtime",
			},
		},
		{
			name: "kernel test imports sdk",
			rule: "kernel",
			pkgs: []listedPackage{
				{ImportPath: module + "/kernel/x_test [" + module + "/kernel/x.test]", ForTest: module + "/kernel/x", Imports: []string{module + "/sdk/guest"}},
			},
			want: []string{module + "/kernel/x_test [" + module + "/kernel/x.test] -> " + module + "/sdk/guest"},
		},
		{
			name: "kernel may import a package merely named like a banned one",
			rule: "kernel",
			pkgs: []listedPackage{
				{ImportPath: module + "/kernel/x", Imports: []string{module + "/sdkfoo", "runtime"}, Deps: []string{module + "/sdkfoo", "runtime"}},
			},
		},
		{
			name: "kernel unresolved plugins import still caught",
			rule: "kernel",
			pkgs: []listedPackage{
				{ImportPath: module + "/kernel/x", Imports: []string{module + "/plugins/filter"}, Error: &struct{ Err string }{"no required module"}},
			},
			want: []string{module + "/kernel/x -> " + module + "/plugins/filter"},
		},
		{
			name: "hostapi stdlib and own subpackages",
			rule: "hostapi",
			pkgs: []listedPackage{
				{ImportPath: module + "/hostapi/abi", Imports: []string{"encoding/binary", module + "/hostapi"}, Deps: []string{"encoding/binary", module + "/hostapi"}},
				{ImportPath: module + "/hostapi", Imports: []string{"errors"}, Deps: []string{"errors"}},
				std("encoding/binary"), std("errors"),
			},
		},
		{
			name: "hostapi imports kernel",
			rule: "hostapi",
			pkgs: []listedPackage{
				{ImportPath: module + "/hostapi", Imports: []string{module + "/kernel/errdefs"}, Deps: []string{"errors", module + "/kernel/errdefs"}},
				std("errors"), dep(module + "/kernel/errdefs"),
			},
			want: []string{module + "/hostapi -> " + module + "/kernel/errdefs"},
		},
		{
			name: "hostapi imports a third-party module",
			rule: "hostapi",
			pkgs: []listedPackage{
				{ImportPath: module + "/hostapi", Imports: []string{"github.com/google/go-cmp/cmp"}, Deps: []string{"github.com/google/go-cmp/cmp"}},
				dep("github.com/google/go-cmp/cmp"),
			},
			want: []string{module + "/hostapi -> github.com/google/go-cmp/cmp"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule, ok := rules[tt.rule]
			if !ok {
				t.Fatalf("no rule for tree %q", tt.rule)
			}
			got := violations(rule, tt.pkgs)
			if !slices.Equal(got, tt.want) {
				t.Errorf("violations = %q, want %q", got, tt.want)
			}
		})
	}
}
