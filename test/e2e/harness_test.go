package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/internal/testenv"
)

// kubectlTimeout bounds one kubectl run and the wait for lines from a
// background kubectl; it only guards against a hung test.
const kubectlTimeout = time.Minute

// result is what one kubectl run printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

// try runs kubectl like run but hands back the exit code instead of failing
// t when it is not zero.
func (k kubectl) try(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	full := append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir}, args...)
	cmd := exec.CommandContext(ctx, k.bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("kubectl %s: no exit within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), kubectlTimeout, res.stdout, res.stderr)
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// getJSON runs `kubectl get args... -o json` and decodes the output into v.
func (k kubectl) getJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out := k.run(t, append(append([]string{"get"}, args...), "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("decode kubectl get %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// names runs `kubectl get args... -o name` and returns the names, sorted.
func (k kubectl) names(t testing.TB, args ...string) []string {
	t.Helper()
	out := strings.Fields(k.run(t, append(append([]string{"get"}, args...), "-o", "name")...))
	slices.Sort(out)
	return out
}

// clientset returns a client-go clientset for s's admin kubeconfig.
func clientset(t testing.TB, s *testenv.Server) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatalf("client-go: %v", err)
	}
	return cs
}

// manifest returns the path of testdata/name after replacing each
// placeholder (old, new pairs) in a copy under t.TempDir(); without pairs it
// returns the testdata path itself.
func manifest(t testing.TB, name string, oldnew ...string) string {
	t.Helper()
	path := filepath.Join("testdata", name)
	if len(oldnew) == 0 {
		return path
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(oldnew...).Replace(string(data))
	out := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// parseTable splits kubectl's human-readable output into rows keyed by
// column header. Columns start where the header line has a word after two or
// more spaces (kubectl aligns cells with a tabwriter), so headers with one
// space ("NOMINATED NODE") and empty cells both work.
func parseTable(t testing.TB, out string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := lines[0]
	var starts []int
	for i := range header {
		if header[i] != ' ' && (i == 0 || i >= 2 && header[i-1] == ' ' && header[i-2] == ' ') {
			starts = append(starts, i)
		}
	}
	if len(starts) == 0 {
		t.Fatalf("no table header in kubectl output:\n%s", out)
	}
	cell := func(line string, c int) string {
		from, to := starts[c], len(line)
		if c+1 < len(starts) {
			to = min(starts[c+1], len(line))
		}
		if from >= to {
			return ""
		}
		return strings.TrimSpace(line[from:to])
	}
	var rows []map[string]string
	for _, line := range lines[1:] {
		row := make(map[string]string, len(starts))
		for c := range starts {
			row[cell(header, c)] = cell(line, c)
		}
		rows = append(rows, row)
	}
	return rows
}

// rowNamed returns the table row whose NAME column is name.
func rowNamed(t testing.TB, rows []map[string]string, name string) map[string]string {
	t.Helper()
	for _, r := range rows {
		if r["NAME"] == name {
			return r
		}
	}
	t.Fatalf("no row named %q in %v", name, rows)
	return nil
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: builds and runs tugboat and kubectl")
	}
}

// lineReader collects the lines a background kubectl prints.
type lineReader struct {
	lines chan string
	seen  []string
}

// start runs kubectl args... in the background until the test ends
// and returns a reader of its stdout lines.
func (k kubectl) start(t testing.TB, args ...string) *lineReader {
	t.Helper()
	full := append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir}, args...)
	cmd := exec.Command(k.bin, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kubectl %s: %v", strings.Join(args, " "), err)
	}
	r := &lineReader{lines: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		cmd.Wait()
		if t.Failed() {
			t.Logf("kubectl %s stderr:\n%s", strings.Join(args, " "), stderr.String())
		}
	})
	return r
}

// next returns the fields of the next line whose first two fields are
// event and name, skipping other lines; it fails t if kubectl exits or
// prints no such line within kubectlTimeout.
func (r *lineReader) next(t testing.TB, event, name string) []string {
	t.Helper()
	deadline := time.After(kubectlTimeout)
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				t.Fatalf("kubectl exited before printing %s %s; it printed:\n%s", event, name, strings.Join(r.seen, "\n"))
			}
			r.seen = append(r.seen, line)
			if f := strings.Fields(line); len(f) >= 2 && f[0] == event && f[1] == name {
				return f
			}
		case <-deadline:
			t.Fatalf("no %s %s line from kubectl within %v; it printed:\n%s", event, name, kubectlTimeout, strings.Join(r.seen, "\n"))
		}
	}
}

// apiOnly are the server flags of tests about the API server alone: no
// controllers, scheduler or node agent act on the objects they create
// (a Deployment would otherwise get pods and status writes, moving its
// resourceVersion under the test).
var apiOnly = []string{"--controllers-enabled=false", "--scheduler-enabled=false", "--disable-agent"}

// startAPIOnly starts a server with apiOnly and args.
func startAPIOnly(t testing.TB, args ...string) *testenv.Server {
	t.Helper()
	return testenv.StartServer(t, append(slices.Clone(apiOnly), args...)...)
}
