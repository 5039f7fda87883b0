package apiserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"

func getTable(t testing.TB, e *env, path string) metav1.Table {
	t.Helper()
	code, body, _ := e.do(t, http.MethodGet, path, "", nil, "Accept", tableAccept)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var tbl metav1.Table
	if err := json.Unmarshal(body, &tbl); err != nil {
		t.Fatal(err)
	}
	if tbl.Kind != "Table" || tbl.APIVersion != "meta.k8s.io/v1" {
		t.Fatalf("GET %s: %s %s", path, tbl.APIVersion, tbl.Kind)
	}
	return tbl
}

func columnNames(tbl metav1.Table) string {
	var names []string
	for _, c := range tbl.ColumnDefinitions {
		names = append(names, c.Name)
	}
	return strings.Join(names, ",")
}

func TestPodTable(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	pods := e.client.CoreV1().Pods("default")
	p, err := pods.Create(ctx, testPod("web", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bindPod(t, e, "default", "web", "node-1")
	if p, err = pods.Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.9", ContainerStatuses: []corev1.ContainerStatus{{
		Name: "app", Ready: true, RestartCount: 2, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
	}}}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, testPod("waiting", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tbl := getTable(t, e, "/api/v1/namespaces/default/pods")
	if got := columnNames(tbl); got != "Name,Ready,Status,Restarts,Age,IP,Node,Nominated Node,Readiness Gates" {
		t.Fatalf("pod columns %s", got)
	}
	if tbl.ResourceVersion == "" || len(tbl.Rows) != 2 {
		t.Fatalf("rv %q rows %d", tbl.ResourceVersion, len(tbl.Rows))
	}
	row := tbl.Rows[1].Cells
	if row[0] != "web" || row[1] != "1/1" || row[2] != "Running" || row[3] != "2" || row[5] != "10.0.0.9" || row[6] != "node-1" {
		t.Fatalf("running pod row %v", row)
	}
	if row := tbl.Rows[0].Cells; row[1] != "0/1" || row[2] != "Pending" || row[5] != "<none>" {
		t.Fatalf("pending pod row %v", row)
	}
	var meta metav1.PartialObjectMetadata
	if err := json.Unmarshal(tbl.Rows[0].Object.Raw, &meta); err != nil || meta.Name != "waiting" || meta.Kind != "PartialObjectMetadata" {
		t.Fatalf("row object %s: %v", tbl.Rows[0].Object.Raw, err)
	}
	if none := getTable(t, e, "/api/v1/namespaces/default/pods?includeObject=None"); none.Rows[0].Object.Raw != nil {
		t.Fatalf("includeObject=None still has %s", none.Rows[0].Object.Raw)
	}
	// A single object, and the Terminating status of a pod in deletion.
	if err := pods.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	one := getTable(t, e, "/api/v1/namespaces/default/pods/web")
	if len(one.Rows) != 1 || one.Rows[0].Cells[2] != "Terminating" {
		t.Fatalf("single pod table %+v", one.Rows)
	}

}

func TestKindTables(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	if _, err := e.client.AppsV1().Deployments("default").Create(ctx, testDeployment("d", 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "d"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := e.client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}}}
	if _, err := e.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l"}}
	if _, err := e.client.CoordinationV1().Leases("default").Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, columns string
		check         func(cells []any) bool
	}{
		{"/apis/apps/v1/namespaces/default/deployments", "Name,Ready,Up-to-date,Available,Age,Containers,Images,Selector",
			func(c []any) bool { return c[1] == "0/3" && c[6] == "nginx:1.27" && c[7] == "app=d" }},
		{"/api/v1/namespaces/default/services", "Name,Type,Cluster-IP,External-IP,Port(s),Age,Selector",
			func(c []any) bool {
				return c[1] == "NodePort" && strings.HasPrefix(c[2].(string), "10.") && strings.HasPrefix(c[4].(string), "80:3")
			}},
		{"/api/v1/nodes", "Name,Status,Roles,Age,Version,Internal-IP,External-IP,OS-Image,Kernel-Version,Container-Runtime",
			func(c []any) bool { return c[1] == "Unknown" && c[2] == "control-plane" }},
		{"/apis/coordination.k8s.io/v1/namespaces/default/leases", "Name,Created At",
			func(c []any) bool { return c[0] == "l" && c[1] != "" }},
		{"/apis/apps/v1/namespaces/default/replicasets", "Name,Desired,Current,Ready,Age,Containers,Images,Selector", nil},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			tbl := getTable(t, e, tc.path)
			if got := columnNames(tbl); got != tc.columns {
				t.Fatalf("columns %s, want %s", got, tc.columns)
			}
			if tc.check != nil && (len(tbl.Rows) != 1 || !tc.check(tbl.Rows[0].Cells)) {
				t.Fatalf("rows %+v", tbl.Rows)
			}
		})
	}
	// kubectl cordon shows up in the node status column.
	if _, err := e.client.CoreV1().Nodes().Patch(ctx, "n1", types.StrategicMergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if tbl := getTable(t, e, "/api/v1/nodes/n1"); tbl.Rows[0].Cells[1] != "Unknown,SchedulingDisabled" {
		t.Fatalf("cordoned node %v", tbl.Rows[0].Cells)
	}
}

func TestTableWatch(t *testing.T) {
	e := newEnv(t)
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, e.srv.URL+"/api/v1/namespaces/default/pods?watch=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", tableAccept)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := e.client.CoreV1().Pods("default").Create(ctxT(t), testPod("w", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Type   string
		Object metav1.Table
	}
	if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "ADDED" || ev.Object.Kind != "Table" || len(ev.Object.Rows) != 1 || ev.Object.Rows[0].Cells[0] != "w" {
		t.Fatalf("table watch event %+v", ev)
	}
}
