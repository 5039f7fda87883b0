package apiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	"github.com/tugboat-dev/tugboat/kernel/store"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

// env is one API server over a real Badger store, served on 127.0.0.1.
type env struct {
	api    *apiserver.Server
	store  *tbadger.Store
	srv    *httptest.Server
	client *kubernetes.Clientset
	cfg    *rest.Config
	reg    *prometheus.Registry
}

// envConfig is what an envOption may change before the env starts.
type envConfig struct {
	api   apiserver.Config
	store tbadger.Options
	// wrap, if set, wraps the store the server uses.
	wrap func(store.Store) store.Store
}

type envOption func(*envConfig)

// withAPI changes the server's Config.
func withAPI(f func(*apiserver.Config)) envOption {
	return func(c *envConfig) { f(&c.api) }
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	ec := envConfig{store: tbadger.Options{
		Dir:              t.TempDir(),
		CompactionWindow: -1,
		Logger:           slog.New(slog.DiscardHandler),
	}}
	reg := prometheus.NewRegistry()
	ec.api = apiserver.Config{Logger: slog.New(slog.DiscardHandler), Registry: reg}
	for _, o := range opts {
		o(&ec)
	}
	st, err := tbadger.Open(ec.store)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	cfg := ec.api
	cfg.Store = st
	if ec.wrap != nil {
		cfg.Store = ec.wrap(st)
	}
	api, err := apiserver.New(cfg)
	if err != nil {
		st.Close()
		t.Fatalf("new apiserver: %v", err)
	}
	srv := httptest.NewServer(api.Handler())
	rc := &rest.Config{Host: srv.URL, QPS: 1000, Burst: 1000, Timeout: 30 * time.Second}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() {
		api.Close()
		srv.Close()
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return &env{api: api, store: st, srv: srv, client: client, cfg: rc, reg: reg}
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// do sends a raw request and returns the status code and body.
func (e *env) do(t testing.TB, method, path, contentType string, body []byte, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, data, resp.Header
}

// status decodes a metav1.Status body.
func status(t testing.TB, data []byte) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("decode status %q: %v", data, err)
	}
	return st
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func testPod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example/app:1.0",
		}}},
	}
}

func createPods(t testing.TB, e *env, ns string, n int, labels func(i int) map[string]string) {
	t.Helper()
	for i := range n {
		var l map[string]string
		if labels != nil {
			l = labels(i)
		}
		name := "pod-" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		if _, err := e.client.CoreV1().Pods(ns).Create(ctxT(t), testPod(name, l), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod %s: %v", name, err)
		}
	}
}

func testConfigMap(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"init": "1"}}
}
