package apiserver_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

const protoMedia = "application/vnd.kubernetes.protobuf"

// mediaLog records the Content-Type of every response by request method
// and path; safe for concurrent use.
type mediaLog struct {
	mu   sync.Mutex
	seen map[string]string
}

func (m *mediaLog) record(req *http.Request, resp *http.Response) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen[req.Method+" "+req.URL.RequestURI()] = resp.Header.Get("Content-Type")
}

// notProto returns the requests among GETs whose response was not
// protobuf.
func (m *mediaLog) notProto() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for req, ct := range m.seen {
		if strings.HasPrefix(req, "GET ") && !strings.HasPrefix(ct, protoMedia) {
			out = append(out, req+" -> "+ct)
		}
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// protoClient returns a clientset that sends and accepts only protobuf,
// and the log of the media types it received.
func protoClient(t testing.TB, e *env) (*kubernetes.Clientset, *mediaLog) {
	t.Helper()
	log := &mediaLog{seen: map[string]string{}}
	rc := rest.CopyConfig(e.cfg)
	rc.ContentType = protoMedia
	rc.AcceptContentTypes = protoMedia
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err == nil {
				log.record(req, resp)
			}
			return resp, err
		})
	})
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs, log
}

// richPod has the field kinds protobuf encodes specially: quantities,
// int-or-strings, pointers, maps, nested slices, timestamps.
func richPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "rich", "tier": "web"},
			Annotations: map[string]string{"note": strings.Repeat("x", 300)}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example/app:1.0", Args: []string{"--port", "8080"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Env:   []corev1.EnvVar{{Name: "MODE", Value: "test"}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}},
					PeriodSeconds: 5},
			}},
			Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{
				EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("512Mi"))}}}},
			Tolerations:                   []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}},
			TerminationGracePeriodSeconds: ptr.To[int64](10),
		},
	}
}

// jsonPod reads a pod through the JSON API.
func jsonPod(t testing.TB, e *env, name string) *corev1.Pod {
	t.Helper()
	code, body, _ := e.do(t, http.MethodGet, "/api/v1/namespaces/default/pods/"+name, "", nil)
	var p corev1.Pod
	if err := json.Unmarshal(body, &p); code != http.StatusOK || err != nil {
		t.Fatalf("json get %s: %d %v", name, code, err)
	}
	p.TypeMeta = metav1.TypeMeta{}
	return &p
}

func samePod(t testing.TB, what string, got, want *corev1.Pod) {
	t.Helper()
	g := got.DeepCopy()
	g.TypeMeta = metav1.TypeMeta{}
	if !apiequality.Semantic.DeepEqual(g, want) {
		t.Fatalf("%s differs from the JSON API:\n got %+v\nwant %+v", what, g, want)
	}
}

// TestProtobufRoundTrip: a client-go client that speaks only protobuf
// creates, gets, lists (from the watch cache and from the store) and
// watches (including initial events, bookmarks and errors), and sees the
// same objects as the JSON API.
func TestProtobufRoundTrip(t *testing.T) {
	e := cachedEnv(t)
	ctx := ctxT(t)
	cs, media := protoClient(t, e)
	pods := cs.CoreV1().Pods("default")
	for _, name := range []string{"rich-a", "rich-b", "rich-c"} {
		if _, err := pods.Create(ctx, richPod(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := pods.Get(ctx, "rich-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	samePod(t, "get", got, jsonPod(t, e, "rich-a"))

	cached := listsFrom(t, e, "pods", "cache")
	for _, opts := range []metav1.ListOptions{
		{},                          // the cache
		{LabelSelector: "app=rich"}, // the cache, selected
		{Limit: 2},                  // the store (cut by the limit), decoded for protobuf
	} {
		list, err := pods.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := 3
		if opts.Limit > 0 {
			want = 2
			if list.Continue == "" {
				t.Fatal("limited list without a continue token")
			}
		}
		if len(list.Items) != want || list.ResourceVersion == "" {
			t.Fatalf("list %+v: %d items at rv %q", opts, len(list.Items), list.ResourceVersion)
		}
		for i := range list.Items {
			samePod(t, "list item", &list.Items[i], jsonPod(t, e, list.Items[i].Name))
		}
	}
	if got := listsFrom(t, e, "pods", "cache") - cached; got != 2 {
		t.Fatalf("the cache served %v of the lists, want 2", got)
	}

	// Another group's kind and list kind.
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "rich"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "rich"}}, Spec: richPod("").Spec},
	}}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deps, err := cs.AppsV1().Deployments("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(deps.Items) != 1 || deps.Items[0].Spec.Template.Spec.Containers[0].Resources.Limits.Memory().String() != "1Gi" {
		t.Fatalf("deployments: %v %+v", err, deps)
	}

	testProtobufWatch(t, e, cs)
	if bad := media.notProto(); len(bad) > 0 {
		t.Fatalf("responses not in protobuf: %v", bad)
	}
}

// testProtobufWatch covers the protobuf watch stream: initial events from
// the cache with the end bookmark, later changes, and a 410 ERROR event.
func testProtobufWatch(t *testing.T, e *env, cs *kubernetes.Clientset) {
	t.Helper()
	ctx := ctxT(t)
	pods := cs.CoreV1().Pods("default")
	w, err := pods.Watch(ctx, metav1.ListOptions{SendInitialEvents: ptr.To(true), AllowWatchBookmarks: true,
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, LabelSelector: "app=rich"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for _, name := range []string{"rich-a", "rich-b", "rich-c"} {
		samePod(t, "initial event", expectEvent(t, w, watch.Added, name), jsonPod(t, e, name))
	}
	ev := next(t, w)
	if bm, ok := ev.Object.(*corev1.Pod); ev.Type != watch.Bookmark || !ok || bm.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("after the initial events: %s %+v, want the initial-events-end bookmark", ev.Type, ev.Object)
	}
	p, err := pods.Get(ctx, "rich-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["extra"] = "1"
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	samePod(t, "modified event", expectEvent(t, w, watch.Modified, "rich-b"), jsonPod(t, e, "rich-b"))
	last := jsonPod(t, e, "rich-c")
	if err := pods.Delete(ctx, "rich-c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	del := expectEvent(t, w, watch.Deleted, "rich-c")
	if rv, _ := strconv.ParseInt(del.ResourceVersion, 10, 64); rv != e.store.Revision() || del.Spec.Containers[0].Image != last.Spec.Containers[0].Image {
		t.Fatalf("deleted event at rv %s (store %d): %+v", del.ResourceVersion, e.store.Revision(), del)
	}

	// A watch from a compacted revision ends with an ERROR event (410).
	old := strconv.FormatInt(e.store.Revision()-1, 10)
	if err := e.store.Compact(ctx, e.store.Revision()); err != nil {
		t.Fatal(err)
	}
	gone, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: old})
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Stop()
	ev = next(t, gone)
	st, ok := ev.Object.(*metav1.Status)
	if ev.Type != watch.Error || !ok || !apierrors.IsResourceExpired(apierrors.FromObject(st)) && !apierrors.IsGone(apierrors.FromObject(st)) {
		t.Fatalf("watch from a compacted revision: %s %+v, want an ERROR with 410", ev.Type, ev.Object)
	}
}
