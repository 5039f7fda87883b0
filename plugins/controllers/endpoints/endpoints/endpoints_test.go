package endpoints_test

import (
	"testing"

	"github.com/tugboat-dev/tugboat/plugins/controllers/endpoints/endpoints"
	"github.com/tugboat-dev/tugboat/sdk/plugintest"
)

const svc = `{apiVersion: v1, kind: Service, metadata: {name: web, namespace: default, uid: svc-1, labels: {team: a}},
  spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}, {name: raw, port: 81, targetPort: 9000}]}}`

func pod(name, ip, ready string) string {
	return `{apiVersion: v1, kind: Pod, metadata: {name: ` + name + `, namespace: default, uid: u-` + name + `, labels: {app: web}},
  spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]},
  status: {phase: Running, podIP: '` + ip + `', conditions: [{type: Ready, status: '` + ready + `'}]}}`
}

func TestEndpoints(t *testing.T) {
	c := plugintest.NewCluster(t, svc, pod("a", "10.0.0.2", "True"), pod("b", "10.0.0.1", "False"), pod("c", "", "False"),
		`{apiVersion: v1, kind: Pod, metadata: {name: other, namespace: default, labels: {app: db}}, spec: {}, status: {podIP: 10.0.0.9}}`)
	h := plugintest.NewController(t, endpoints.New(), endpoints.Manifest(), endpoints.Spec(), "", c)
	if res := h.Reconcile(t, endpoints.Services, "default", "web"); res.Error != "" {
		t.Fatal(res.Error)
	}
	ep := c.Get(endpoints.Endpoints, "default", "web")
	if ep == nil {
		t.Fatal("no endpoints")
	}
	sub := plugintest.Path(ep, "subsets").([]any)[0].(map[string]any)
	ready, notReady := sub["addresses"].([]any), sub["notReadyAddresses"].([]any)
	if len(ready) != 1 || ready[0].(map[string]any)["ip"] != "10.0.0.2" || len(notReady) != 1 || notReady[0].(map[string]any)["ip"] != "10.0.0.1" {
		t.Errorf("subsets %v", sub)
	}
	ports := sub["ports"].([]any)
	if len(ports) != 2 || ports[0].(map[string]any)["port"] != 8080.0 || ports[1].(map[string]any)["port"] != 9000.0 {
		t.Errorf("ports %v, want the named port resolved to 8080 and 9000", ports)
	}
	if plugintest.Path(ep, "metadata", "labels", "team") != "a" {
		t.Errorf("endpoints labels %v", plugintest.Path(ep, "metadata", "labels"))
	}
	slices := c.List(endpoints.EndpointSlices, "default")
	if len(slices) != 1 {
		t.Fatalf("%d endpointslices", len(slices))
	}
	s := slices[0]
	if plugintest.Path(s, "metadata", "labels", endpoints.ServiceNameLabel) != "web" || len(s["endpoints"].([]any)) != 2 ||
		plugintest.Path(s, "metadata", "ownerReferences").([]any)[0].(map[string]any)["uid"] != "svc-1" {
		t.Errorf("endpointslice %v", s)
	}

	t.Run("unchanged pods cost no write", func(t *testing.T) {
		c.ResetWrites()
		h.Reconcile(t, endpoints.Services, "default", "web")
		if w := c.Writes(); len(w) != 0 {
			t.Errorf("writes %+v", w)
		}
	})

	t.Run("a pod turning ready moves to addresses", func(t *testing.T) {
		c.Update(t, "pods", "default", "b", func(p map[string]any) {
			p["status"].(map[string]any)["conditions"] = []any{map[string]any{"type": "Ready", "status": "True"}}
		})
		if res := h.Reconcile(t, endpoints.Services, "default", "web"); res.Error != "" {
			t.Fatal(res.Error)
		}
		sub := plugintest.Path(c.Get(endpoints.Endpoints, "default", "web"), "subsets").([]any)[0].(map[string]any)
		if len(sub["addresses"].([]any)) != 2 || sub["notReadyAddresses"] != nil {
			t.Errorf("subsets %v", sub)
		}
	})

	t.Run("service deleted", func(t *testing.T) {
		c.Remove(endpoints.Services, "default", "web")
		h.Reconcile(t, endpoints.Services, "default", "web")
		if c.Get(endpoints.Endpoints, "default", "web") != nil {
			t.Error("endpoints of a deleted service kept")
		}
	})
}

func TestServiceWithoutSelectorKeepsHandWrittenEndpoints(t *testing.T) {
	c := plugintest.NewCluster(t,
		`{apiVersion: v1, kind: Service, metadata: {name: external, namespace: default}, spec: {ports: [{port: 80}]}}`,
		`{apiVersion: v1, kind: Endpoints, metadata: {name: external, namespace: default}, subsets: [{addresses: [{ip: 11.11.11.11}], ports: [{port: 80}]}]}`)
	h := plugintest.NewController(t, endpoints.New(), endpoints.Manifest(), endpoints.Spec(), "", c)
	h.Reconcile(t, endpoints.Services, "default", "external")
	if w := c.Writes(); len(w) != 0 {
		t.Errorf("writes %+v to a selector-less service's endpoints", w)
	}
}
