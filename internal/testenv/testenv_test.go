package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

func TestKubectlLDFlags(t *testing.T) {
	tests := []struct{ in, want string }{
		{"v0.37.2", "-X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"},
		{"v0.40.0-rc.1", "-X k8s.io/component-base/version.gitVersion=v1.40.0-rc.1 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=40"},
		{"v1.2.3", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := KubectlLDFlags(tc.in); got != tc.want {
			t.Errorf("KubectlLDFlags(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLastFlag(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--data-dir", "/a"}, "/a"},
		{[]string{"--data-dir=/a", "--data-dir", "/b"}, "/b"},
		{[]string{"--data-dir", "/a", "--data-dir=/c"}, "/c"},
		{[]string{"--data-dirx=/a", "--data-dir"}, ""},
	}
	for _, tc := range tests {
		if got := lastFlag(tc.args, "data-dir"); got != tc.want {
			t.Errorf("lastFlag(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestRequireVersion(t *testing.T) {
	gomod := []byte("module x\n\nrequire k8s.io/api v0.1.0\n\nrequire (\n\tk8s.io/kubectl v0.37.2\n\tk8s.io/cli-runtime v0.37.2 // indirect\n)\n")
	for path, want := range map[string]string{"k8s.io/kubectl": "v0.37.2", "k8s.io/api": "v0.1.0", "k8s.io/cli-runtime": "v0.37.2", "k8s.io/none": ""} {
		if got := requireVersion(gomod, path); got != want {
			t.Errorf("requireVersion(%s) = %q, want %q", path, got, want)
		}
	}
	if got := modfileModule(gomod); got != "x" {
		t.Errorf("modfileModule = %q, want x", got)
	}
}

// TestKubectl builds bin/kubectl if needed (minutes when cold) and checks
// that it runs and carries the pinned version.
func TestKubectl(t *testing.T) {
	if testing.Short() {
		t.Skip("may build kubectl")
	}
	out, err := exec.Command(Kubectl(t), "version", "--client").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Client Version: v1.37.") {
		t.Errorf("kubectl version --client: %s, want v1.37.x", out)
	}
}
