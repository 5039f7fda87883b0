package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	"sigs.k8s.io/yaml"
)

func TestKubectlApply(t *testing.T) {
	skipShort(t)
	s := startAPIOnly(t)
	k := newKubectl(t, s)

	if out := k.run(t, "apply", "-f", manifest(t, "httpbin-deployment.yaml")); strings.TrimSpace(out) != "deployment.apps/httpbin created" {
		t.Errorf("first apply: %q, want deployment.apps/httpbin created", out)
	}
	var v1 appsv1.Deployment
	k.getJSON(t, &v1, "deployment", "httpbin")
	if got := *v1.Spec.Replicas; got != 2 {
		t.Errorf("spec.replicas %d after first apply, want 2", got)
	}
	if v1.Generation != 1 {
		t.Errorf("generation %d after create, want 1", v1.Generation)
	}
	if _, ok := v1.Annotations[corev1.LastAppliedConfigAnnotation]; !ok {
		t.Errorf("annotations %v lack %s", v1.Annotations, corev1.LastAppliedConfigAnnotation)
	}
	if c := v1.Spec.Template.Spec.Containers; len(c) != 1 || c[0].Image != "kennethreitz/httpbin" {
		t.Errorf("containers %+v, want one with image kennethreitz/httpbin", c)
	}

	if out := k.run(t, "apply", "-f", manifest(t, "httpbin-deployment-v2.yaml")); strings.TrimSpace(out) != "deployment.apps/httpbin configured" {
		t.Errorf("apply of the changed manifest: %q, want deployment.apps/httpbin configured", out)
	}
	var v2 appsv1.Deployment
	k.getJSON(t, &v2, "deployment", "httpbin")
	if got := *v2.Spec.Replicas; got != 3 {
		t.Errorf("spec.replicas %d after re-apply, want 3", got)
	}
	if v2.Labels["tier"] != "web" {
		t.Errorf("labels %v after re-apply, want tier=web", v2.Labels)
	}
	if v2.Generation != v1.Generation+1 {
		t.Errorf("generation %d after a spec change, want %d", v2.Generation, v1.Generation+1)
	}
	if v2.ResourceVersion == v1.ResourceVersion {
		t.Errorf("resourceVersion stayed %s across a change", v2.ResourceVersion)
	}
	if v2.UID != v1.UID {
		t.Errorf("uid changed from %s to %s: apply must update, not recreate", v1.UID, v2.UID)
	}

	if out := k.run(t, "apply", "-f", manifest(t, "httpbin-deployment-v2.yaml")); strings.TrimSpace(out) != "deployment.apps/httpbin unchanged" {
		t.Errorf("apply of the same manifest again: %q, want deployment.apps/httpbin unchanged", out)
	}
	var v3 appsv1.Deployment
	k.getJSON(t, &v3, "deployment", "httpbin")
	if v3.ResourceVersion != v2.ResourceVersion || v3.Generation != v2.Generation {
		t.Errorf("unchanged apply moved resourceVersion %s->%s, generation %d->%d",
			v2.ResourceVersion, v3.ResourceVersion, v2.Generation, v3.Generation)
	}
}

func TestKubectlGet(t *testing.T) {
	skipShort(t)
	s := startAPIOnly(t)
	k := newKubectl(t, s)
	k.run(t, "apply", "-f", manifest(t, "httpbin-deployment.yaml"))
	k.run(t, "create", "-f", manifest(t, "node.yaml"))
	k.run(t, "create", "-f", manifest(t, "pods.yaml"))

	t.Run("json and yaml", func(t *testing.T) {
		var fromJSON, fromYAML appsv1.Deployment
		k.getJSON(t, &fromJSON, "deployment", "httpbin")
		if fromJSON.APIVersion != "apps/v1" || fromJSON.Kind != "Deployment" || fromJSON.Name != "httpbin" || fromJSON.Namespace != "default" {
			t.Errorf("-o json: %s %s %s/%s, want apps/v1 Deployment default/httpbin",
				fromJSON.APIVersion, fromJSON.Kind, fromJSON.Namespace, fromJSON.Name)
		}
		if fromJSON.UID == "" || fromJSON.ResourceVersion == "" {
			t.Errorf("-o json lacks uid (%q) or resourceVersion (%q)", fromJSON.UID, fromJSON.ResourceVersion)
		}
		out := k.run(t, "get", "deployment", "httpbin", "-o", "yaml")
		if !strings.HasPrefix(out, "apiVersion: apps/v1\nkind: Deployment\n") {
			t.Errorf("-o yaml does not start with apiVersion and kind:\n%s", out)
		}
		if err := yaml.Unmarshal([]byte(out), &fromYAML); err != nil {
			t.Fatalf("decode -o yaml: %v\n%s", err, out)
		}
		if !equality.Semantic.DeepEqual(fromJSON, fromYAML) {
			t.Errorf("-o yaml and -o json disagree:\njson %+v\nyaml %+v", fromJSON, fromYAML)
		}

		var list corev1.PodList
		k.getJSON(t, &list, "pods", "-l", "app=web")
		var names []string
		for _, p := range list.Items {
			names = append(names, p.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"web-1", "web-2"}) {
			t.Errorf("get pods -l app=web -o json items %v, want web-1 web-2", names)
		}
	})

	t.Run("wide", func(t *testing.T) {
		// No scheduler yet: bind web-1 to node-1 through pods/binding, as
		// the scheduler will.
		err := clientset(t, s).CoreV1().Pods("default").Bind(t.Context(), &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: "web-1"},
			Target:     corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "node-1"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("bind web-1 to node-1: %v", err)
		}
		rows := parseTable(t, k.run(t, "get", "pods", "-o", "wide"))
		for name, node := range map[string]string{"web-1": "node-1", "web-2": "<none>", "db-1": "<none>"} {
			row := rowNamed(t, rows, name)
			if row["NODE"] != node || row["STATUS"] != "Pending" || row["READY"] != "0/1" || row["IP"] != "<none>" {
				t.Errorf("get pods -o wide row %v, want NODE %s READY 0/1 STATUS Pending IP <none>", row, node)
			}
		}
		row := rowNamed(t, parseTable(t, k.run(t, "get", "deployments", "-o", "wide")), "httpbin")
		if row["CONTAINERS"] != "httpbin" || row["IMAGES"] != "kennethreitz/httpbin" || row["SELECTOR"] != "app=httpbin" || row["READY"] != "0/2" {
			t.Errorf("get deployments -o wide row %v, want READY 0/2 CONTAINERS httpbin IMAGES kennethreitz/httpbin SELECTOR app=httpbin", row)
		}
	})

	t.Run("selectors", func(t *testing.T) {
		tests := []struct {
			selector string
			want     []string
		}{
			{"app=web", []string{"pod/web-1", "pod/web-2"}},
			{"app==db", []string{"pod/db-1"}},
			{"app!=web", []string{"pod/db-1"}},
			{"app=web,tier=backend", []string{"pod/web-2"}},
			{"tier in (frontend)", []string{"pod/web-1"}},
			{"tier notin (frontend)", []string{"pod/db-1", "pod/web-2"}},
			{"tier", []string{"pod/web-1", "pod/web-2"}},
			{"!tier", []string{"pod/db-1"}},
			{"app in (web,db),tier notin (backend)", []string{"pod/db-1", "pod/web-1"}},
			{"app=cache", nil},
		}
		for _, tc := range tests {
			t.Run(tc.selector, func(t *testing.T) {
				if got := k.names(t, "pods", "-l", tc.selector); !slices.Equal(got, tc.want) {
					t.Errorf("get pods -l %q: %v, want %v", tc.selector, got, tc.want)
				}
			})
		}
	})
}

func TestKubectlGetWatch(t *testing.T) {
	skipShort(t)
	s := startAPIOnly(t)
	k := newKubectl(t, s)
	k.run(t, "create", "-f", manifest(t, "pods.yaml"))

	// --output-watch-events adds the EVENT column, so the test can tell an
	// update from the initial listing.
	w := k.start(t, "get", "pods", "--watch", "--output-watch-events")
	w.next(t, "EVENT", "NAME")
	// kubectl lists, then watches from the list's resourceVersion: once
	// the listed pods are printed no later event can be missed.
	for _, name := range []string{"db-1", "web-1", "web-2"} {
		w.next(t, "ADDED", name)
	}

	k.run(t, "run", "watched", "--image=nginx", "--restart=Never")
	if f := w.next(t, "ADDED", "watched"); !slices.Contains(f, "Pending") {
		t.Errorf("ADDED line %q, want STATUS Pending", f)
	}
	k.run(t, "label", "pod", "watched", "step=modified")
	w.next(t, "MODIFIED", "watched")
	// An unscheduled pod needs no kubelet to confirm its deletion.
	k.run(t, "delete", "pod", "watched")
	w.next(t, "DELETED", "watched")
}

func TestKubectlLabelAnnotate(t *testing.T) {
	skipShort(t)
	s := startAPIOnly(t)
	k := newKubectl(t, s)
	k.run(t, "create", "-f", manifest(t, "pods.yaml"))

	type step struct {
		args     []string
		wantCode int
		wantOut  string // in stdout, or stderr on failure
		want     map[string]string
	}
	tests := []struct {
		verb  string
		field func(*corev1.Pod) map[string]string
		steps []step
	}{
		{"label", func(p *corev1.Pod) map[string]string { return p.Labels }, []step{
			{[]string{"env=prod"}, 0, "pod/web-1 labeled", map[string]string{"app": "web", "tier": "frontend", "env": "prod"}},
			{[]string{"env=dev"}, 1, "'env' already has a value (prod), and --overwrite is false", map[string]string{"app": "web", "tier": "frontend", "env": "prod"}},
			{[]string{"env=dev", "--overwrite"}, 0, "pod/web-1 labeled", map[string]string{"app": "web", "tier": "frontend", "env": "dev"}},
			{[]string{"env-", "tier-"}, 0, "pod/web-1 unlabeled", map[string]string{"app": "web"}},
		}},
		{"annotate", func(p *corev1.Pod) map[string]string { return p.Annotations }, []step{
			{[]string{"owner=team-a", "note=first"}, 0, "pod/web-1 annotated", map[string]string{"owner": "team-a", "note": "first"}},
			{[]string{"note=second"}, 1, "'note' already has a value (first)", map[string]string{"owner": "team-a", "note": "first"}},
			{[]string{"note=second", "--overwrite"}, 0, "pod/web-1 annotated", map[string]string{"owner": "team-a", "note": "second"}},
			{[]string{"note-"}, 0, "pod/web-1 annotated", map[string]string{"owner": "team-a"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.verb, func(t *testing.T) {
			for _, st := range tc.steps {
				args := append([]string{tc.verb, "pod", "web-1"}, st.args...)
				res := k.try(t, args...)
				out := res.stdout
				if st.wantCode != 0 {
					out = res.stderr
				}
				if res.code != st.wantCode || !strings.Contains(out, st.wantOut) {
					t.Fatalf("kubectl %s: exit %d, stdout %q, stderr %q; want exit %d and %q",
						strings.Join(args, " "), res.code, res.stdout, res.stderr, st.wantCode, st.wantOut)
				}
				var pod corev1.Pod
				k.getJSON(t, &pod, "pod", "web-1")
				if got := tc.field(&pod); !equality.Semantic.DeepEqual(got, st.want) {
					t.Errorf("after kubectl %s: %v, want %v", strings.Join(args, " "), got, st.want)
				}
			}
		})
	}
}

func TestKubectlPatch(t *testing.T) {
	skipShort(t)
	s := startAPIOnly(t)
	k := newKubectl(t, s)
	k.run(t, "create", "-f", manifest(t, "pods.yaml"))
	k.run(t, "apply", "-f", manifest(t, "httpbin-deployment.yaml"))

	containers := func(d *appsv1.Deployment) map[string]string {
		m := map[string]string{}
		for _, c := range d.Spec.Template.Spec.Containers {
			m[c.Name] = c.Image
		}
		return m
	}
	tests := []struct {
		name    string
		args    []string
		wantOut string
		check   func(t *testing.T)
	}{
		{"json", []string{"pod", "web-1", "--type", "json", "-p",
			`[{"op":"add","path":"/metadata/labels/patched","value":"json"},{"op":"replace","path":"/spec/containers/0/image","value":"nginx:1.27"},{"op":"remove","path":"/metadata/labels/tier"}]`},
			"pod/web-1 patched",
			func(t *testing.T) {
				var p corev1.Pod
				k.getJSON(t, &p, "pod", "web-1")
				if want := map[string]string{"app": "web", "patched": "json"}; !equality.Semantic.DeepEqual(p.Labels, want) {
					t.Errorf("labels %v, want %v", p.Labels, want)
				}
				if img := p.Spec.Containers[0].Image; img != "nginx:1.27" {
					t.Errorf("image %q, want nginx:1.27", img)
				}
			}},
		{"merge", []string{"pod", "web-2", "--type", "merge", "-p",
			`{"metadata":{"labels":{"patched":"merge","tier":null},"annotations":{"by":"merge"}}}`},
			"pod/web-2 patched",
			func(t *testing.T) {
				var p corev1.Pod
				k.getJSON(t, &p, "pod", "web-2")
				if want := map[string]string{"app": "web", "patched": "merge"}; !equality.Semantic.DeepEqual(p.Labels, want) {
					t.Errorf("labels %v, want %v", p.Labels, want)
				}
				if p.Annotations["by"] != "merge" {
					t.Errorf("annotations %v, want by=merge", p.Annotations)
				}
			}},
		// A strategic merge patch (kubectl's default) merges containers by
		// name, where a merge patch would replace the whole list.
		{"strategic add container", []string{"deployment", "httpbin", "-p",
			`{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}`},
			"deployment.apps/httpbin patched",
			func(t *testing.T) {
				var d appsv1.Deployment
				k.getJSON(t, &d, "deployment", "httpbin")
				if want := map[string]string{"httpbin": "kennethreitz/httpbin", "sidecar": "busybox"}; !equality.Semantic.DeepEqual(containers(&d), want) {
					t.Errorf("containers %v, want %v", containers(&d), want)
				}
				if d.Generation != 2 {
					t.Errorf("generation %d after a template change, want 2", d.Generation)
				}
			}},
		{"strategic by merge key", []string{"deployment", "httpbin", "--type", "strategic", "-p",
			`{"spec":{"template":{"spec":{"containers":[{"name":"httpbin","image":"kennethreitz/httpbin:latest"}]}}}}`},
			"deployment.apps/httpbin patched",
			func(t *testing.T) {
				var d appsv1.Deployment
				k.getJSON(t, &d, "deployment", "httpbin")
				if want := map[string]string{"httpbin": "kennethreitz/httpbin:latest", "sidecar": "busybox"}; !equality.Semantic.DeepEqual(containers(&d), want) {
					t.Errorf("containers %v, want %v", containers(&d), want)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if out := k.run(t, append([]string{"patch"}, tc.args...)...); strings.TrimSpace(out) != tc.wantOut {
				t.Errorf("kubectl patch: %q, want %q", out, tc.wantOut)
			}
			tc.check(t)
		})
	}
}

func TestKubectlScale(t *testing.T) {
	skipShort(t)
	s := startAPIOnly(t)
	k := newKubectl(t, s)
	k.run(t, "apply", "-f", manifest(t, "httpbin-deployment.yaml"))
	var before appsv1.Deployment
	k.getJSON(t, &before, "deployment", "httpbin")

	// -v=6 logs each request, showing kubectl went through /scale.
	res := k.try(t, "scale", "deployment", "httpbin", "--replicas=5", "-v=6")
	if res.code != 0 || strings.TrimSpace(res.stdout) != "deployment.apps/httpbin scaled" {
		t.Fatalf("kubectl scale: exit %d, stdout %q, stderr:\n%s", res.code, res.stdout, res.stderr)
	}
	if !slices.ContainsFunc(strings.Split(res.stderr, "\n"), func(l string) bool {
		return strings.Contains(l, `verb="PATCH"`) && strings.Contains(l, "/deployments/httpbin/scale") && strings.Contains(l, `status="200 OK"`)
	}) {
		t.Errorf("kubectl scale made no successful PATCH of deployments/httpbin/scale:\n%s", res.stderr)
	}

	var after appsv1.Deployment
	k.getJSON(t, &after, "deployment", "httpbin")
	if got := *after.Spec.Replicas; got != 5 {
		t.Errorf("spec.replicas %d after scale, want 5", got)
	}
	if after.Generation != before.Generation+1 {
		t.Errorf("generation %d after scale, want %d", after.Generation, before.Generation+1)
	}
	var scale struct {
		APIVersion, Kind string
		Spec             struct{ Replicas int32 }
		Status           struct{ Selector string }
	}
	raw := k.run(t, "get", "--raw", "/apis/apps/v1/namespaces/default/deployments/httpbin/scale")
	if err := json.Unmarshal([]byte(raw), &scale); err != nil {
		t.Fatalf("decode scale: %v\n%s", err, raw)
	}
	if scale.APIVersion != "autoscaling/v1" || scale.Kind != "Scale" || scale.Spec.Replicas != 5 || scale.Status.Selector != "app=httpbin" {
		t.Errorf("GET deployments/httpbin/scale: %s, want autoscaling/v1 Scale with spec.replicas 5 and status.selector app=httpbin", raw)
	}
}

func TestKubectlCordon(t *testing.T) {
	skipShort(t)
	s := startAPIOnly(t)
	k := newKubectl(t, s)
	if out := k.run(t, "create", "-f", manifest(t, "node.yaml")); strings.TrimSpace(out) != "node/node-1 created" {
		t.Errorf("create node: %q", out)
	}

	tests := []struct {
		verb, wantOut string
		unschedulable bool
		status        string
	}{
		{"cordon", "node/node-1 cordoned", true, "Unknown,SchedulingDisabled"},
		{"cordon", "node/node-1 already cordoned", true, "Unknown,SchedulingDisabled"},
		{"uncordon", "node/node-1 uncordoned", false, "Unknown"},
		{"uncordon", "node/node-1 already uncordoned", false, "Unknown"},
	}
	for _, tc := range tests {
		if out := k.run(t, tc.verb, "node-1"); strings.TrimSpace(out) != tc.wantOut {
			t.Errorf("kubectl %s node-1: %q, want %q", tc.verb, out, tc.wantOut)
		}
		var n corev1.Node
		k.getJSON(t, &n, "node", "node-1")
		if n.Spec.Unschedulable != tc.unschedulable {
			t.Errorf("after kubectl %s: spec.unschedulable %v, want %v", tc.verb, n.Spec.Unschedulable, tc.unschedulable)
		}
		// A node without a Ready condition shows Unknown, as in Kubernetes.
		if row := rowNamed(t, parseTable(t, k.run(t, "get", "nodes")), "node-1"); row["STATUS"] != tc.status {
			t.Errorf("after kubectl %s: get nodes row %v, want STATUS %s", tc.verb, row, tc.status)
		}
	}
}

func TestKubectlDelete(t *testing.T) {
	skipShort(t)
	s := startAPIOnly(t)
	k := newKubectl(t, s)
	k.run(t, "create", "-f", manifest(t, "pods.yaml"))

	t.Run("by name", func(t *testing.T) {
		if out := k.run(t, "delete", "pod", "db-1"); !strings.HasPrefix(out, `pod "db-1" deleted`) {
			t.Errorf("kubectl delete pod db-1: %q", out)
		}
		if res := k.try(t, "get", "pod", "db-1"); res.code != 1 || !strings.Contains(res.stderr, "NotFound") {
			t.Errorf("get pod db-1 after delete: exit %d, stderr %q; want 1 and NotFound", res.code, res.stderr)
		}
	})

	t.Run("by selector", func(t *testing.T) {
		out := k.run(t, "delete", "pods", "-l", "app=web")
		for _, name := range []string{"web-1", "web-2"} {
			if !strings.Contains(out, `pod "`+name+`" deleted`) {
				t.Errorf("kubectl delete pods -l app=web: %q lacks %s", out, name)
			}
		}
		if res := k.try(t, "get", "pods"); res.code != 0 || res.stdout != "" || strings.TrimSpace(res.stderr) != "No resources found in default namespace." {
			t.Errorf("get pods after deleting all: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("cascade orphan", func(t *testing.T) {
		k.run(t, "apply", "-f", manifest(t, "httpbin-deployment.yaml"))
		var d appsv1.Deployment
		k.getJSON(t, &d, "deployment", "httpbin")
		k.run(t, "create", "-f", manifest(t, "httpbin-replicaset.yaml", "DEPLOYMENT_UID", string(d.UID)))

		// Orphan propagation adds the orphan finalizer; the garbage
		// collector that would remove it (orphaning the ReplicaSet) and
		// then the Deployment does not exist yet (the controllers issue),
		// so kubectl's default --wait would wait forever.
		out := k.run(t, "delete", "deployment", "httpbin", "--cascade=orphan", "--wait=false")
		if !strings.HasPrefix(out, `deployment.apps "httpbin" deleted`) {
			t.Errorf("kubectl delete --cascade=orphan: %q", out)
		}
		var gone appsv1.Deployment
		k.getJSON(t, &gone, "deployment", "httpbin")
		if gone.DeletionTimestamp == nil || !slices.Contains(gone.Finalizers, metav1.FinalizerOrphanDependents) {
			t.Errorf("deployment after delete --cascade=orphan: deletionTimestamp %v, finalizers %v; want set and %q",
				gone.DeletionTimestamp, gone.Finalizers, metav1.FinalizerOrphanDependents)
		}
		var rs appsv1.ReplicaSet
		k.getJSON(t, &rs, "replicaset", "httpbin-66c877d7d")
		if rs.DeletionTimestamp != nil {
			t.Errorf("owned replicaset being deleted (deletionTimestamp %v) after an orphaning delete", rs.DeletionTimestamp)
		}
		if len(rs.OwnerReferences) != 1 || rs.OwnerReferences[0].UID != d.UID {
			t.Errorf("replicaset ownerReferences %+v, want the deployment's (uid %s)", rs.OwnerReferences, d.UID)
		}
	})
}

func TestKubectlDiscovery(t *testing.T) {
	skipShort(t)
	s := startAPIOnly(t)
	k := newKubectl(t, s)

	t.Run("raw", func(t *testing.T) {
		var nss corev1.NamespaceList
		raw := k.run(t, "get", "--raw", "/api/v1/namespaces")
		if err := json.Unmarshal([]byte(raw), &nss); err != nil {
			t.Fatalf("decode /api/v1/namespaces: %v\n%s", err, raw)
		}
		var names []string
		for _, ns := range nss.Items {
			names = append(names, ns.Name)
		}
		slices.Sort(names)
		if nss.Kind != "NamespaceList" || nss.ResourceVersion == "" {
			t.Errorf("/api/v1/namespaces: kind %q, resourceVersion %q, want NamespaceList and a resourceVersion", nss.Kind, nss.ResourceVersion)
		}
		for _, ns := range []string{"default", "kube-node-lease", "kube-system"} {
			if !slices.Contains(names, ns) {
				t.Errorf("/api/v1/namespaces: %v lacks %s", names, ns)
			}
		}

		var v version.Info
		raw = k.run(t, "get", "--raw", "/version")
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			t.Fatalf("decode /version: %v\n%s", err, raw)
		}
		if v.Major != "1" || v.Minor == "" || !strings.HasPrefix(v.GitVersion, "v1.") || v.Platform == "" {
			t.Errorf("/version: %s", raw)
		}
	})

	t.Run("api-resources", func(t *testing.T) {
		rows := parseTable(t, k.run(t, "api-resources"))
		tests := []struct{ name, short, apiVersion, namespaced, kind string }{
			{"pods", "po", "v1", "true", "Pod"},
			{"services", "svc", "v1", "true", "Service"},
			{"nodes", "no", "v1", "false", "Node"},
			{"namespaces", "ns", "v1", "false", "Namespace"},
			{"configmaps", "cm", "v1", "true", "ConfigMap"},
			{"secrets", "", "v1", "true", "Secret"},
			{"endpoints", "ep", "v1", "true", "Endpoints"},
			{"events", "ev", "v1", "true", "Event"},
			{"serviceaccounts", "sa", "v1", "true", "ServiceAccount"},
			{"deployments", "deploy", "apps/v1", "true", "Deployment"},
			{"replicasets", "rs", "apps/v1", "true", "ReplicaSet"},
			{"statefulsets", "sts", "apps/v1", "true", "StatefulSet"},
			{"daemonsets", "ds", "apps/v1", "true", "DaemonSet"},
			{"jobs", "", "batch/v1", "true", "Job"},
			{"cronjobs", "cj", "batch/v1", "true", "CronJob"},
			{"leases", "", "coordination.k8s.io/v1", "true", "Lease"},
			{"endpointslices", "", "discovery.k8s.io/v1", "true", "EndpointSlice"},
			{"horizontalpodautoscalers", "hpa", "autoscaling/v2", "true", "HorizontalPodAutoscaler"},
			{"ingresses", "ing", "networking.k8s.io/v1", "true", "Ingress"},
		}
		for _, tc := range tests {
			want := map[string]string{"NAME": tc.name, "SHORTNAMES": tc.short, "APIVERSION": tc.apiVersion, "NAMESPACED": tc.namespaced, "KIND": tc.kind}
			if got := rowNamed(t, rows, tc.name); !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("api-resources row %v, want %v", got, want)
			}
		}
		clusterScoped := strings.Fields(k.run(t, "api-resources", "--namespaced=false", "-o", "name"))
		if !slices.Contains(clusterScoped, "nodes") || !slices.Contains(clusterScoped, "namespaces") || slices.Contains(clusterScoped, "pods") {
			t.Errorf("api-resources --namespaced=false: %v, want nodes and namespaces, not pods", clusterScoped)
		}
		// A short name resolves through discovery.
		k.run(t, "create", "namespace", "short")
		if got := k.names(t, "ns", "short"); !slices.Equal(got, []string{"namespace/short"}) {
			t.Errorf("get ns short -o name: %v, want namespace/short", got)
		}
	})

	t.Run("api-versions", func(t *testing.T) {
		got := strings.Fields(k.run(t, "api-versions"))
		for _, gv := range []string{"v1", "apps/v1", "batch/v1", "autoscaling/v2", "coordination.k8s.io/v1", "discovery.k8s.io/v1", "networking.k8s.io/v1"} {
			if !slices.Contains(got, gv) {
				t.Errorf("api-versions %v lacks %s", got, gv)
			}
		}
	})

	t.Run("explain", func(t *testing.T) {
		tests := []struct {
			args []string
			want []string
		}{
			{[]string{"pod.spec.containers"}, []string{
				"KIND:       Pod", "VERSION:    v1", "FIELD: containers <[]Container>",
				"DESCRIPTION:\n    List of containers belonging to the pod.",
				"FIELDS:\n  args\t<[]string>", "  image\t<string>", "  name\t<string> -required-"}},
			{[]string{"deployment"}, []string{
				"GROUP:      apps", "KIND:       Deployment", "VERSION:    v1",
				"DESCRIPTION:\n    Deployment enables declarative updates for Pods and ReplicaSets.",
				"  spec\t<DeploymentSpec>", "  status\t<DeploymentStatus>"}},
		}
		for _, tc := range tests {
			out := k.run(t, append([]string{"explain"}, tc.args...)...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("kubectl explain %s lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
				}
			}
		}
	})
}

func TestKubectlErrors(t *testing.T) {
	skipShort(t)
	s := startAPIOnly(t)
	k := newKubectl(t, s)
	k.run(t, "apply", "-f", manifest(t, "httpbin-deployment.yaml"))
	var before appsv1.Deployment
	k.getJSON(t, &before, "deployment", "httpbin")

	tests := []struct {
		name     string
		args     []string
		response string   // a -v=6 request log line holds this status
		want     []string // in stderr
	}{
		{"get missing", []string{"get", "pod", "nope"}, `status="404 Not Found"`,
			[]string{`Error from server (NotFound): pods "nope" not found`}},
		{"apply bad name", []string{"apply", "-f", manifest(t, "invalid-name-deployment.yaml")}, `status="422 Unprocessable Entity"`,
			[]string{`The Deployment "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"`, "RFC 1123 subdomain"}},
		{"apply unknown field", []string{"apply", "-f", manifest(t, "unknown-field-deployment.yaml")}, `status="400 Bad Request"`,
			[]string{`Error from server (BadRequest)`, `strict decoding error: unknown field "spec.replicaz"`}},
		{"apply changed selector", []string{"apply", "-f", manifest(t, "httpbin-deployment-selector.yaml")}, `status="422 Unprocessable Entity"`,
			[]string{`The Deployment "httpbin" is invalid: spec.selector: Invalid value:`, "field is immutable"}},
		{"create existing", []string{"create", "-f", manifest(t, "httpbin-deployment.yaml")}, `status="409 Conflict"`,
			[]string{`Error from server (AlreadyExists)`, `deployments.apps "httpbin" already exists`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := k.try(t, append(tc.args, "-v=6")...)
			if res.code != 1 {
				t.Errorf("kubectl %s: exit %d, want 1", strings.Join(tc.args, " "), res.code)
			}
			if !strings.Contains(res.stderr, tc.response) {
				t.Errorf("kubectl %s: no response with %s in\n%s", strings.Join(tc.args, " "), tc.response, res.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.stderr, w) {
					t.Errorf("kubectl %s: stderr lacks %q:\n%s", strings.Join(tc.args, " "), w, res.stderr)
				}
			}
		})
	}

	// Nothing half-written: no new deployment, httpbin untouched.
	if got := k.names(t, "deployments"); !slices.Equal(got, []string{"deployment.apps/httpbin"}) {
		t.Errorf("deployments after the failed writes: %v, want only httpbin", got)
	}
	var after appsv1.Deployment
	k.getJSON(t, &after, "deployment", "httpbin")
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("httpbin resourceVersion %s -> %s after failed writes", before.ResourceVersion, after.ResourceVersion)
	}
}
