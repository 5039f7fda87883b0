package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tugboat-dev/tugboat/internal/testenv"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

// startWorkloads starts a server with the built-in controllers, the
// scheduler and the workload controllers named (loaded through the
// controllers.plugins config key, so the test does not depend on them
// being built-ins yet).
func startWorkloads(t *testing.T, controllers []string, args ...string) (*testenv.Server, kubectl, *kubernetes.Clientset) {
	t.Helper()
	var cfg strings.Builder
	cfg.WriteString("controllers:\n  plugins:\n")
	for _, name := range controllers {
		wasm := plugintest.BuildWasm(t, filepath.Join("..", "..", "plugins", "controllers", name))
		fmt.Fprintf(&cfg, "    - name: %s\n      path: %s\n", name, wasm)
	}
	config := filepath.Join(t.TempDir(), "tugboat.yaml")
	if err := os.WriteFile(config, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := controllerPlugins(t, allControllers...)
	s := testenv.StartServer(t, append([]string{"--controllers-plugins-dir", dir, "--config", config,
		"--scheduler-plugins-dir", schedulerPlugins(t), "--disable-agent"}, args...)...)
	return s, newKubectl(t, s), clientset(t, s)
}

// daemonPods returns the nodes of the live, Running pods labelled
// app=<app>, sorted, and the number of pods in total.
func daemonPods(t testing.TB, cs *kubernetes.Clientset, app string) (running []string, total int) {
	t.Helper()
	l, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		total++
		if p.Status.Phase == corev1.PodRunning {
			running = append(running, p.Spec.NodeName)
		}
	}
	slices.Sort(running)
	return running, total
}

// TestWorkloadsDaemonSet: a DaemonSet with a nodeSelector runs one pod on
// each matching sim node (bound by the scheduler through the pods' node
// affinity), follows node relabelling both ways, keeps running on a
// cordoned node, and rolls out a template change.
func TestWorkloadsDaemonSet(t *testing.T) {
	skipShort(t)
	_, k, cs := startWorkloads(t, []string{"daemonset"}, "--sim-nodes", "3")
	ctx := context.Background()
	k.run(t, "label", "node", "sim-0", "sim-1", "disk=ssd")
	k.run(t, "label", "node", "sim-2", "disk=hdd")
	k.apply(t, `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ssd-monitor}
spec:
  selector: {matchLabels: {app: ssd-monitor}}
  template:
    metadata: {labels: {app: ssd-monitor}}
    spec:
      nodeSelector: {disk: ssd}
      containers: [{name: main, image: luksa/ssd-monitor}]
`)
	on := func(want ...string) func() string {
		return func() string {
			running, total := daemonPods(t, cs, "ssd-monitor")
			if !slices.Equal(running, want) || total != len(want) {
				return fmt.Sprintf("%d pods, Running on %v; want on %v", total, running, want)
			}
			ds, err := cs.AppsV1().DaemonSets("default").Get(ctx, "ssd-monitor", metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			st := ds.Status
			n := int32(len(want))
			if st.DesiredNumberScheduled != n || st.CurrentNumberScheduled != n || st.NumberReady != n ||
				st.NumberAvailable != n || st.UpdatedNumberScheduled != n || st.ObservedGeneration != ds.Generation {
				return fmt.Sprintf("status %+v (generation %d), want %d everywhere", st, ds.Generation, n)
			}
			return ""
		}
	}
	eventually(t, "pods on the ssd nodes", on("sim-0", "sim-1"))
	k.run(t, "rollout", "status", "daemonset/ssd-monitor", "--timeout=60s")

	k.run(t, "label", "node", "sim-0", "disk=hdd", "--overwrite")
	eventually(t, "sim-0 relabelled ssd -> hdd loses its pod", on("sim-1"))
	k.run(t, "label", "node", "sim-2", "disk=ssd", "--overwrite")
	eventually(t, "sim-2 relabelled hdd -> ssd gets a pod", on("sim-1", "sim-2"))

	k.run(t, "cordon", "sim-2")
	k.run(t, "label", "node", "sim-0", "disk=ssd", "--overwrite")
	eventually(t, "pods on sim-0 and the cordoned sim-2", on("sim-0", "sim-1", "sim-2"))
	k.run(t, "uncordon", "sim-2")

	k.run(t, "set", "image", "daemonset/ssd-monitor", "main=luksa/ssd-monitor:v2")
	k.run(t, "rollout", "status", "daemonset/ssd-monitor", "--timeout=60s")
	eventually(t, "rolled out", func() string {
		if why := on("sim-0", "sim-1", "sim-2")(); why != "" {
			return why
		}
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=ssd-monitor"})
		if err != nil {
			return err.Error()
		}
		for _, p := range l.Items {
			if p.Spec.Containers[0].Image != "luksa/ssd-monitor:v2" {
				return fmt.Sprintf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
			}
		}
		return ""
	})
}
