package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/internal/testenv"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

// burner is a container spec that burns CPU at the lowest priority, to
// spare the machine: on a busy machine it may get only a few millicores,
// so it asks for 10m, which it exceeds many times over even then.
const burner = `{name: burn, image: busybox, command: ["nice", "-n", "19", "sh", "-c", "while :; do :; done"],
  resources: {requests: {cpu: 10m}}}`

// topCPU runs `kubectl top` with args and returns the CPU column of the
// row named name in millicores, or why it cannot.
func topCPU(t testing.TB, k kubectl, name string, args ...string) (int64, string) {
	t.Helper()
	r := k.try(t, append([]string{"top"}, append(args, "--no-headers")...)...)
	if r.code != 0 {
		return 0, "kubectl top: " + r.stdout + r.stderr
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != name {
			continue
		}
		cpu := f[1]
		milli, err := strconv.ParseInt(strings.TrimSuffix(cpu, "m"), 10, 64)
		if err != nil {
			return 0, "cpu column " + cpu
		}
		if !strings.HasSuffix(cpu, "m") {
			milli *= 1000
		}
		return milli, ""
	}
	return 0, "no row " + name + " in:\n" + r.stdout
}

// startMetrics starts a server with a local exec node, the controllers
// (the HPA syncing every second) and metrics scraped every second.
func startMetrics(t *testing.T) kubectl {
	t.Helper()
	skipShort(t)
	wasm := plugintest.BuildWasm(t, filepath.Join("..", "..", "plugins", "controllers", "hpa"))
	config := filepath.Join(t.TempDir(), "tugboat.yaml")
	if err := os.WriteFile(config, []byte(`controllers:
  plugins:
    - name: hpa
      path: `+wasm+`
      settings: {"syncPeriod": "1s", "downscaleStabilization": "3s"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, k := startWithAgent(t, "--controllers-plugins-dir", controllerPlugins(t, allControllers...), "--config", config,
		"--scheduler-plugins-dir", schedulerPlugins(t), "--metrics-interval", "1s")
	return k
}

// TestMetricsTop: a pod burning CPU on the exec runtime shows in `kubectl
// top pod` with CPU > 0 (its rate between two scrapes of the node's stats
// summary), and its node in `kubectl top node`; metrics.k8s.io is in
// discovery.
func TestMetricsTop(t *testing.T) {
	k := startMetrics(t)
	if out := k.run(t, "api-versions"); !strings.Contains(out, "metrics.k8s.io/v1beta1") {
		t.Fatalf("metrics.k8s.io/v1beta1 missing from api-versions:\n%s", out)
	}
	k.apply(t, `
apiVersion: v1
kind: Pod
metadata: {name: burn, labels: {app: burn}}
spec:
  containers: [`+burner+`]
`)
	k.run(t, "wait", "--for=condition=Ready", "pod/burn", "--timeout=60s")
	eventually(t, "burn in kubectl top pod with CPU > 0", func() string {
		cpu, why := topCPU(t, k, "burn", "pod", "-l", "app=burn")
		if why != "" {
			return why
		}
		if cpu <= 0 {
			return fmt.Sprintf("cpu %dm", cpu)
		}
		return ""
	})
	eventually(t, agentNode+" in kubectl top node with CPU > 0", func() string {
		cpu, why := topCPU(t, k, agentNode, "node")
		if why != "" {
			return why
		}
		if cpu <= 0 {
			return fmt.Sprintf("cpu %dm", cpu)
		}
		return ""
	})
	k.run(t, "delete", "pod", "burn", "--grace-period=1", "--wait=true")
}

// TestMetricsHPA: an HPA scales a Deployment of CPU burners (each far
// above its 10m request) from 1 to maxReplicas on real usage read from
// metrics.k8s.io.
func TestMetricsHPA(t *testing.T) {
	k := startMetrics(t)
	k.apply(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: burn}
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [`+burner+`]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 2
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
`)
	t.Cleanup(func() { k.try(t, "delete", "deployment", "burn", "--wait=false") })
	eventually(t, "the HPA scales burn to 2 on real CPU use", func() string {
		var h struct {
			Status struct {
				DesiredReplicas int `json:"desiredReplicas"`
				CurrentMetrics  []struct {
					Resource struct {
						Current struct {
							AverageUtilization int `json:"averageUtilization"`
						} `json:"current"`
					} `json:"resource"`
				} `json:"currentMetrics"`
				Conditions []metav1.Condition `json:"conditions"`
			} `json:"status"`
		}
		k.getJSON(t, &h, "hpa", "burn")
		replicas := k.jsonpath(t, "deployment/burn", "{.spec.replicas}")
		if h.Status.DesiredReplicas != 2 || replicas != "2" || len(h.Status.CurrentMetrics) != 1 ||
			h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization <= 50 {
			return fmt.Sprintf("deployment replicas %s, hpa status %+v", replicas, h.Status)
		}
		return ""
	})
}

// TestMetricsSimNodes: simulated nodes serve stats summaries with their
// pods' annotated usage, so a sim pod annotated 250m shows 250m in
// `kubectl top pod`, and its node the sum in `kubectl top node`.
func TestMetricsSimNodes(t *testing.T) {
	skipShort(t)
	s := testenv.StartServer(t, "--sim-nodes", "1", "--disable-agent", "--metrics-interval", "1s",
		"--controllers-enabled=false", "--scheduler-enabled=false")
	k := newKubectl(t, s)
	k.apply(t, `
apiVersion: v1
kind: Pod
metadata: {name: busy, annotations: {metrics.tugboat.dev/cpu-usage: 250m, metrics.tugboat.dev/memory-usage: 64Mi}}
spec:
  nodeName: sim-0
  containers: [{name: c, image: nginx}]
`)
	for _, row := range []struct{ name, kind string }{{"busy", "pod"}, {"sim-0", "node"}} {
		eventually(t, row.name+" at 250m in kubectl top "+row.kind, func() string {
			cpu, why := topCPU(t, k, row.name, row.kind)
			if why != "" {
				return why
			}
			if cpu < 249 || cpu > 251 { // a rate: a float division
				return fmt.Sprintf("cpu %dm", cpu)
			}
			return ""
		})
	}
}
