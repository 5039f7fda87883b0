package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tugboat-dev/tugboat/kernel/pki"
)

// freeAddr returns a 127.0.0.1 address with a port nothing listened on a
// moment ago, so that two server runs can share it.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// identity is what must survive a restart unchanged.
type identity struct {
	UID             types.UID
	ResourceVersion string
}

// snapshot reads the objects the restart test created, keyed by kind and
// name.
func snapshot(t testing.TB, k kubectl) map[string]identity {
	t.Helper()
	objs := map[string]identity{}
	var ns corev1.Namespace
	k.getJSON(t, &ns, "namespace", "restart")
	objs["namespace/restart"] = identity{ns.UID, ns.ResourceVersion}
	var cms corev1.ConfigMapList
	k.getJSON(t, &cms, "configmaps", "-n", "restart")
	for _, cm := range cms.Items {
		objs["configmap/"+cm.Name] = identity{cm.UID, cm.ResourceVersion}
		if cm.Data["key"] != cm.Name {
			t.Errorf("configmap %s data %v, want key=%s", cm.Name, cm.Data, cm.Name)
		}
	}
	var d appsv1.Deployment
	k.getJSON(t, &d, "deployment", "httpbin", "-n", "default")
	objs["deployment/httpbin"] = identity{d.UID, d.ResourceVersion}
	if *d.Spec.Replicas != 4 {
		t.Errorf("deployment httpbin spec.replicas %d, want 4", *d.Spec.Replicas)
	}
	return objs
}

// readPKI returns the contents of every file in <dataDir>/pki by name.
func readPKI(t testing.TB, dataDir string) map[string][]byte {
	t.Helper()
	dir := filepath.Join(dataDir, "pki")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	return files
}

// parseRV parses a resourceVersion; Tugboat's are the store's revisions, so
// they compare as numbers.
func parseRV(t testing.TB, rv string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", rv, err)
	}
	return n
}

// TestRestartAfterKill kills the server with SIGKILL and restarts it on the
// same data directory and address: objects keep their uid and
// resourceVersion, the certificates are reused, and the kubeconfig written
// by the first run still works.
func TestRestartAfterKill(t *testing.T) {
	skipShort(t)
	addr := freeAddr(t)
	first := startAPIOnly(t, "--listen", addr)
	k := newKubectl(t, first)

	k.run(t, "create", "namespace", "restart")
	for i := range 5 {
		name := fmt.Sprintf("cm-%d", i)
		k.run(t, "create", "configmap", name, "-n", "restart", "--from-literal=key="+name)
	}
	k.run(t, "apply", "-f", manifest(t, "httpbin-deployment.yaml"))
	// Updates just before the kill: acknowledged writes must be durable.
	k.run(t, "label", "configmap", "cm-0", "-n", "restart", "updated=yes")
	k.run(t, "scale", "deployment", "httpbin", "--replicas=4")

	before := snapshot(t, k)
	if len(before) != 7 {
		t.Fatalf("created %d objects, want 7: %v", len(before), before)
	}
	// kubectl get -o json wraps lists in a List without a resourceVersion;
	// the API's list carries the store revision.
	var list corev1.ConfigMapList
	if raw := k.run(t, "get", "--raw", "/api/v1/configmaps"); json.Unmarshal([]byte(raw), &list) != nil {
		t.Fatalf("decode /api/v1/configmaps: %s", raw)
	}
	lastRV := parseRV(t, list.ResourceVersion)
	for name, id := range before {
		if rv := parseRV(t, id.ResourceVersion); rv > lastRV {
			t.Errorf("%s resourceVersion %d above the list's %d", name, rv, lastRV)
		}
	}
	certs := readPKI(t, first.DataDir)
	for _, name := range []string{pki.CACertFile, pki.CAKeyFile, pki.ServingCertFile, pki.ServingKeyFile, pki.AdminCertFile, pki.AdminKeyFile} {
		if len(certs[name]) == 0 {
			t.Errorf("pki/%s missing or empty after the first start", name)
		}
	}
	kubeconfig, err := os.ReadFile(first.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}

	first.Kill()
	if err := first.Wait(t); err == nil {
		t.Fatal("tugboat server exited with status 0 after SIGKILL")
	}

	second := startAPIOnly(t, "--listen", addr, "--data-dir", first.DataDir)
	if second.URL != first.URL {
		t.Fatalf("restarted server at %s, first run at %s", second.URL, first.URL)
	}

	// The first run's kubeconfig (its file, its certificates) still works.
	after := snapshot(t, k)
	if !maps.Equal(before, after) {
		t.Errorf("objects changed across the restart:\nbefore %v\nafter  %v", before, after)
	}
	if now := readPKI(t, first.DataDir); !maps.EqualFunc(certs, now, bytes.Equal) {
		t.Errorf("pki files changed across the restart: before %v, after %v", slices.Sorted(maps.Keys(certs)), slices.Sorted(maps.Keys(now)))
	}
	if now, err := os.ReadFile(first.Kubeconfig); err != nil || !bytes.Equal(now, kubeconfig) {
		t.Errorf("the first run's kubeconfig changed (%v): the test no longer uses the original file", err)
	}

	k.run(t, "create", "configmap", "after-restart", "-n", "restart")
	var cm corev1.ConfigMap
	k.getJSON(t, &cm, "configmap", "after-restart", "-n", "restart")
	if rv := parseRV(t, cm.ResourceVersion); rv <= lastRV {
		t.Errorf("write after restart got resourceVersion %d, not above %d from before the kill", rv, lastRV)
	}
}
