package apiserver_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
	tbadger "github.com/tugboat-dev/tugboat/kernel/store/badger"
)

// fuzzOp is one way outside input reaches a decoder.
type fuzzOp struct {
	method, path, ctype string
	query               string // query parameter that receives the input instead of the body
}

const fuzzPods = "/api/v1/namespaces/default/pods"

var fuzzOps = []fuzzOp{
	{http.MethodPost, fuzzPods, "application/json", ""},
	{http.MethodPost, fuzzPods, "application/yaml", ""},
	{http.MethodPost, fuzzPods, "application/vnd.kubernetes.protobuf", ""},
	{http.MethodPut, fuzzPods + "/target", "application/json", ""},
	{http.MethodPatch, fuzzPods + "/target", "application/merge-patch+json", ""},
	{http.MethodPatch, fuzzPods + "/target", "application/json-patch+json", ""},
	{http.MethodPatch, fuzzPods + "/target", "application/strategic-merge-patch+json", ""},
	{http.MethodPatch, fuzzPods + "/target?fieldManager=fuzz", "application/apply-patch+yaml", ""},
	{http.MethodPatch, "/apis/apps/v1/namespaces/default/deployments/web/scale", "application/merge-patch+json", ""},
	{http.MethodDelete, fuzzPods + "/gone", "application/json", ""},
	{http.MethodPost, fuzzPods + "/target/binding", "application/json", ""},
	{http.MethodGet, fuzzPods, "", "labelSelector"},
	{http.MethodGet, fuzzPods, "", "fieldSelector"},
	{http.MethodGet, fuzzPods, "", "continue"},
	{http.MethodGet, fuzzPods, "", "resourceVersion"},
}

// FuzzRequestDecoders feeds arbitrary bodies, selectors, patch documents
// and tokens to the handler: it must never panic or answer 5xx, except
// Kubernetes' 504 for a resourceVersion the store has not reached.
func FuzzRequestDecoders(f *testing.F) {
	seeds := []string{
		`{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}`,
		"metadata:\n  name: y\nspec:\n  containers:\n  - name: c\n    image: i\n",
		"k8s\x00\x0a\x06\x0a\x02v1\x12\x03Pod",
		`[{"op":"replace","path":"/metadata/labels","value":{"a":"b"}}]`,
		`{"metadata":{"labels":{"a":null}},"spec":{"containers":[{"name":"c","$patch":"delete"}]}}`,
		"apiVersion: v1\nkind: Pod\nmetadata:\n  name: target\n",
		`{"spec":{"replicas":3}}`,
		`{"preconditions":{"uid":"x"},"propagationPolicy":"Orphan"}`,
		`{"target":{"kind":"Node","name":"n"}}`,
		`[{"op":"copy","from":"/metadata","path":"/metadata/labels"},{"op":"copy","from":"/metadata","path":"/metadata/x"}]`,
		"a: &a [1,2]\nb: &b [*a,*a]\nc: [*b,*b]\n",
		"a in (b,c),!d,e notin (f)", "metadata.name!=x,spec.nodeName=", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6Miwic3RhcnQiOiJhIn0", "0", "",
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	st, err := tbadger.Open(tbadger.Options{Dir: f.TempDir(), CompactionWindow: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	api, err := apiserver.New(apiserver.Config{Store: st, Logger: slog.New(slog.DiscardHandler), MaxBodyBytes: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(api.Close)
	h := api.Handler()
	send := func(method, path, ctype string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	fixtures := func() {
		send(http.MethodPost, fuzzPods, "application/json", []byte(`{"metadata":{"name":"target"},"spec":{"containers":[{"name":"c","image":"i"}]}}`))
		send(http.MethodPost, fuzzPods, "application/json", []byte(`{"metadata":{"name":"gone"},"spec":{"containers":[{"name":"c","image":"i"}]}}`))
		send(http.MethodPost, "/apis/apps/v1/namespaces/default/deployments", "application/json", []byte(`{"metadata":{"name":"web"},"spec":{
			"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}`))
	}
	f.Fuzz(func(t *testing.T, op uint8, input []byte) {
		fixtures()
		o := fuzzOps[int(op)%len(fuzzOps)]
		path, body := o.path, input
		if o.query != "" {
			sep := "?"
			if bytes.ContainsRune([]byte(path), '?') {
				sep = "&"
			}
			path += sep + o.query + "=" + url.QueryEscape(string(input))
			body = nil
		}
		rec := send(o.method, path, o.ctype, body)
		if rec.Code >= 500 && !(rec.Code == http.StatusGatewayTimeout && o.query == "resourceVersion") {
			t.Fatalf("%s %s with %q: %d %s", o.method, path, input, rec.Code, rec.Body.String())
		}
	})
}
