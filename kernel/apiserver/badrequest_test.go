package apiserver_test

import (
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tugboat-dev/tugboat/kernel/apiserver"
)

// TestBadRequests sends malformed or refused requests and checks each
// status code and Status body, and that none of them wrote anything.
func TestBadRequests(t *testing.T) {
	e := newEnv(t, withAPI(func(c *apiserver.Config) { c.MaxBodyBytes = 64 << 10 }))
	ctx := ctxT(t)
	pod, err := e.client.CoreV1().Pods("default").Create(ctx, testPod("exists", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := badRequestCases()
	bindPod(t, e, "default", pod.Name, "n1")
	before := e.store.Revision()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := e.do(t, tc.method, tc.path, tc.ctype, []byte(tc.body), tc.hdr...)
			if code != tc.code {
				t.Fatalf("code %d, want %d: %s", code, tc.code, body)
			}
			if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Fatalf("content type %q", hdr.Get("Content-Type"))
			}
			st := status(t, body)
			if st.Kind != "Status" || st.Status != metav1.StatusFailure || int(st.Code) != tc.code || st.Reason != tc.reason {
				t.Fatalf("status %+v, want code %d reason %s", st, tc.code, tc.reason)
			}
		})
	}
	if after := e.store.Revision(); after != before {
		t.Fatalf("failed requests wrote: revision %d -> %d", before, after)
	}
}

// badCase is one refused request and the status it must get.
type badCase struct {
	name, method, path, ctype, body string
	hdr                             []string
	code                            int
	reason                          metav1.StatusReason
}

// badRequestCases assume a pod default/exists bound to a node.
func badRequestCases() []badCase {
	const (
		pods   = "/api/v1/namespaces/default/pods"
		json   = "application/json"
		merge  = "application/merge-patch+json"
		jpatch = "application/json-patch+json"
	)
	podJSON := func(name string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `"},"spec":{"containers":[{"name":"c","image":"i"}]}}`
	}
	stale := strings.Replace(podJSON("exists"), `"name":"exists"`, `"name":"exists","resourceVersion":"1"`, 1)
	bomb := `[{"op":"add","path":"/metadata/annotations","value":{}}`
	for i := range 40 { // each copy doubles the document
		bomb += `,{"op":"copy","from":"/metadata","path":"/metadata/annotations/x` + strconv.Itoa(i) + `"}`
	}
	bomb += "]"
	huge := `{"metadata":{"name":"big","annotations":{"a":"` + strings.Repeat("x", 70<<10) + `"}}}`
	return []badCase{
		{"unknown path", "GET", "/foo", "", "", nil, 404, metav1.StatusReasonNotFound},
		{"unknown version", "GET", "/api/v2/pods", "", "", nil, 404, metav1.StatusReasonNotFound},
		{"unknown resource", "GET", "/api/v1/widgets", "", "", nil, 404, metav1.StatusReasonNotFound},
		{"namespaced path for cluster resource", "GET", "/api/v1/namespaces/default/nodes", "", "", nil, 404, metav1.StatusReasonNotFound},
		{"unknown subresource", "GET", pods + "/exists/exec", "", "", nil, 404, metav1.StatusReasonNotFound},
		{"missing object", "GET", pods + "/missing", "", "", nil, 404, metav1.StatusReasonNotFound},
		{"post to a name", "POST", pods + "/exists", json, podJSON("exists"), nil, 405, metav1.StatusReasonMethodNotAllowed},
		{"put to collection", "PUT", pods, json, podJSON("x"), nil, 405, metav1.StatusReasonMethodNotAllowed},
		{"create across namespaces", "POST", "/api/v1/pods", json, podJSON("x"), nil, 405, metav1.StatusReasonMethodNotAllowed},
		{"wrong content type", "POST", pods, "text/plain", podJSON("x"), nil, 415, metav1.StatusReasonUnsupportedMediaType},
		{"body too large", "POST", pods, json, huge, nil, 413, metav1.StatusReasonRequestEntityTooLarge},
		{"malformed json", "POST", pods, json, `{"metadata":`, nil, 400, metav1.StatusReasonBadRequest},
		{"not an object", "POST", pods, json, `[1,2]`, nil, 400, metav1.StatusReasonBadRequest},
		{"wrong kind", "POST", pods, json, `{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"}}`, nil, 400, metav1.StatusReasonBadRequest},
		{"wrong apiVersion", "POST", pods, json, `{"apiVersion":"apps/v1","kind":"Pod","metadata":{"name":"x"}}`, nil, 400, metav1.StatusReasonBadRequest},
		{"namespace mismatch", "POST", pods, json, `{"metadata":{"name":"x","namespace":"kube-system"}}`, nil, 400, metav1.StatusReasonBadRequest},
		{"wrong field type", "POST", pods, json, `{"metadata":{"name":7}}`, nil, 400, metav1.StatusReasonBadRequest},
		{"strict unknown field", "POST", pods + "?fieldValidation=Strict", json, `{"metadata":{"name":"x"},"spec":{"bogus":1}}`, nil, 400, metav1.StatusReasonBadRequest},
		{"strict duplicate field", "POST", pods + "?fieldValidation=Strict", json, `{"metadata":{"name":"x","name":"y"}}`, nil, 400, metav1.StatusReasonBadRequest},
		{"bad fieldValidation", "POST", pods + "?fieldValidation=Loose", json, podJSON("x"), nil, 400, metav1.StatusReasonBadRequest},
		{"bad dryRun", "POST", pods + "?dryRun=Some", json, podJSON("x"), nil, 400, metav1.StatusReasonBadRequest},
		{"invalid object", "POST", pods, json, `{"metadata":{"name":"x"},"spec":{"containers":[]}}`, nil, 422, metav1.StatusReasonInvalid},
		{"invalid name", "POST", pods, json, podJSON("UPPER"), nil, 422, metav1.StatusReasonInvalid},
		{"already exists", "POST", pods, json, podJSON("exists"), nil, 409, metav1.StatusReasonAlreadyExists},
		{"missing namespace", "POST", "/api/v1/namespaces/nope/pods", json, podJSON("x"), nil, 404, metav1.StatusReasonNotFound},
		{"update name mismatch", "PUT", pods + "/exists", json, podJSON("other"), nil, 400, metav1.StatusReasonBadRequest},
		{"update stale rv", "PUT", pods + "/exists", json, stale, nil, 409, metav1.StatusReasonConflict},
		{"update missing", "PUT", pods + "/missing", json, podJSON("missing"), nil, 404, metav1.StatusReasonNotFound},
		{"bad label selector", "GET", pods + "?labelSelector=a%20in%20(", "", "", nil, 400, metav1.StatusReasonBadRequest},
		{"unsupported field selector", "GET", pods + "?fieldSelector=spec.image%3Dx", "", "", nil, 400, metav1.StatusReasonBadRequest},
		{"bad field selector", "GET", pods + "?fieldSelector=%3D%3D%3D", "", "", nil, 400, metav1.StatusReasonBadRequest},
		{"bad limit", "GET", pods + "?limit=ten", "", "", nil, 400, metav1.StatusReasonBadRequest},
		{"bad continue", "GET", pods + "?continue=garbage", "", "", nil, 400, metav1.StatusReasonBadRequest},
		{"continue with rv", "GET", pods + "?continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6Miwic3RhcnQiOiJhIn0&resourceVersion=5", "", "", nil, 400, metav1.StatusReasonBadRequest},
		{"bad resourceVersion", "GET", pods + "/exists?resourceVersion=x", "", "", nil, 400, metav1.StatusReasonBadRequest},
		{"future resourceVersion", "GET", pods + "/exists?resourceVersion=999999", "", "", nil, 504, metav1.StatusReasonTimeout},
		{"watch exact", "GET", pods + "?watch=1&resourceVersionMatch=Exact&resourceVersion=1", "", "", nil, 422, metav1.StatusReasonInvalid},
		{"list sendInitialEvents", "GET", pods + "?sendInitialEvents=true", "", "", nil, 422, metav1.StatusReasonInvalid},
		{"not acceptable", "GET", pods, "", "", []string{"Accept", "text/html"}, 406, metav1.StatusReasonNotAcceptable},
		{"patch content type", "PATCH", pods + "/exists", json, `{}`, nil, 415, metav1.StatusReasonUnsupportedMediaType},
		{"malformed json patch", "PATCH", pods + "/exists", jpatch, `{"op":"add"}`, nil, 400, metav1.StatusReasonBadRequest},
		{"failing json patch test", "PATCH", pods + "/exists", jpatch, `[{"op":"test","path":"/metadata/name","value":"no"}]`, nil, 422, metav1.StatusReasonInvalid},
		{"json patch copy bomb", "PATCH", pods + "/exists", jpatch, bomb, nil, 413, metav1.StatusReasonRequestEntityTooLarge},
		{"malformed merge patch", "PATCH", pods + "/exists", merge, `{"metadata":`, nil, 400, metav1.StatusReasonBadRequest},
		{"merge patch makes it invalid", "PATCH", pods + "/exists", merge, `{"spec":{"containers":null}}`, nil, 422, metav1.StatusReasonInvalid},
		{"patch stale rv", "PATCH", pods + "/exists", merge, `{"metadata":{"resourceVersion":"1"}}`, nil, 409, metav1.StatusReasonConflict},
		{"patch missing", "PATCH", pods + "/missing", merge, `{}`, nil, 404, metav1.StatusReasonNotFound},
		{"apply without fieldManager", "PATCH", pods + "/x", "application/apply-patch+yaml", "apiVersion: v1\nkind: Pod\n", nil, 422, metav1.StatusReasonInvalid},
		{"delete uid precondition", "DELETE", pods + "/exists", json, `{"preconditions":{"uid":"nope"}}`, nil, 409, metav1.StatusReasonConflict},
		{"delete bad propagation", "DELETE", pods + "/exists?propagationPolicy=Sideways", "", "", nil, 400, metav1.StatusReasonBadRequest},
		{"delete missing", "DELETE", pods + "/missing", "", "", nil, 404, metav1.StatusReasonNotFound},
		{"delete default namespace", "DELETE", "/api/v1/namespaces/default", "", "", nil, 403, metav1.StatusReasonForbidden},
		{"bind twice", "POST", pods + "/exists/binding", json, `{"metadata":{"name":"exists"},"target":{"kind":"Node","name":"n2"}}`, nil, 409, metav1.StatusReasonConflict},
		{"log of missing pod", "GET", pods + "/missing/log", "", "", nil, 404, metav1.StatusReasonNotFound},
		{"scale of a pod", "GET", pods + "/exists/scale", "", "", nil, 404, metav1.StatusReasonNotFound},
	}
}
