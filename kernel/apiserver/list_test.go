package apiserver_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestListPagingIsConsistent(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	createPods(t, e, "default", 25, nil)
	pods := e.client.CoreV1().Pods("default")

	first, err := pods.List(ctx, metav1.ListOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Items) != 10 || first.Continue == "" {
		t.Fatalf("first page: %d items, continue %q", len(first.Items), first.Continue)
	}
	// Writes after the first page do not show up in later pages.
	if _, err := pods.Create(ctx, testPod("pod-zz", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "pod-ay", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	names := podNames(first.Items)
	cont := first.Continue
	for cont != "" {
		page, err := pods.List(ctx, metav1.ListOptions{Limit: 10, Continue: cont})
		if err != nil {
			t.Fatal(err)
		}
		if page.ResourceVersion != first.ResourceVersion {
			t.Fatalf("page read at rv %s, first page at %s", page.ResourceVersion, first.ResourceVersion)
		}
		names = append(names, podNames(page.Items)...)
		cont = page.Continue
	}
	if len(names) != 25 || !slices.IsSorted(names) || slices.Contains(names, "pod-zz") || !slices.Contains(names, "pod-ay") {
		t.Fatalf("paged names (%d): %v", len(names), names)
	}
}

func podNames(items []corev1.Pod) []string {
	out := make([]string, len(items))
	for i, p := range items {
		out[i] = p.Name
	}
	return out
}

func TestListExpiredContinue(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	createPods(t, e, "default", 5, nil)
	pods := e.client.CoreV1().Pods("default")
	first, err := pods.List(ctx, metav1.ListOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	createPods(t, e, "kube-system", 1, nil)
	if err := e.store.Compact(ctx, e.store.Revision()); err != nil {
		t.Fatal(err)
	}
	_, err = pods.List(ctx, metav1.ListOptions{Limit: 2, Continue: first.Continue})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("expired continue: %v, want 410", err)
	}
	se := err.(*apierrors.StatusError)
	fresh := se.ErrStatus.ListMeta.Continue
	if fresh == "" {
		t.Fatalf("410 without a fresh continue token: %+v", se.ErrStatus)
	}
	rest, err := pods.List(ctx, metav1.ListOptions{Limit: 10, Continue: fresh})
	if err != nil {
		t.Fatal(err)
	}
	if got := podNames(rest.Items); len(got) != 3 || got[0] != "pod-ac" {
		t.Fatalf("inconsistent continuation: %v", got)
	}
}

func TestListSelectors(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	createPods(t, e, "default", 12, func(i int) map[string]string {
		l := map[string]string{"tier": []string{"web", "db", "cache"}[i%3]}
		if i%2 == 0 {
			l["even"] = "yes"
		}
		return l
	})
	createPods(t, e, "kube-system", 2, func(int) map[string]string { return map[string]string{"tier": "web"} })
	// Bind one pod so spec.nodeName selects it.
	bindPod(t, e, "default", "pod-aa", "node-1")
	tests := []struct {
		ns, labels, fields string
		want               int
	}{
		{"default", "tier=web", "", 4},
		{"default", "tier in (web,db)", "", 8},
		{"default", "tier notin (web)", "", 8},
		{"default", "even", "", 6},
		{"default", "!even", "", 6},
		{"default", "tier=web,even", "", 2},
		{"", "tier=web", "", 6},
		{"", "", "metadata.namespace=kube-system", 2},
		{"default", "", "metadata.name=pod-ab", 1},
		{"default", "", "metadata.name!=pod-ab", 11},
		{"default", "", "spec.nodeName=node-1", 1},
		{"default", "", "spec.nodeName=", 11},
		{"default", "", "status.phase=Pending", 12},
		{"default", "tier=web", "spec.nodeName=node-1", 1},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("ns=%s,l=%s,f=%s", tc.ns, tc.labels, tc.fields), func(t *testing.T) {
			for _, limit := range []int64{0, 1, 5} {
				total := 0
				opts := metav1.ListOptions{LabelSelector: tc.labels, FieldSelector: tc.fields, Limit: limit}
				for {
					list, err := e.client.CoreV1().Pods(tc.ns).List(ctx, opts)
					if err != nil {
						t.Fatal(err)
					}
					if limit > 0 && int64(len(list.Items)) > limit {
						t.Fatalf("limit %d: page of %d", limit, len(list.Items))
					}
					total += len(list.Items)
					if list.Continue == "" {
						break
					}
					opts.Continue = list.Continue
				}
				if total != tc.want {
					t.Fatalf("limit %d: %d items, want %d", limit, total, tc.want)
				}
			}
		})
	}
	if _, err := e.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.bogus=1"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("unsupported field: %v, want BadRequest", err)
	}
}

func bindPod(t testing.TB, e *env, ns, pod, node string) {
	t.Helper()
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod}, Target: corev1.ObjectReference{Kind: "Node", Name: node}}
	if err := e.client.CoreV1().Pods(ns).Bind(ctxT(t), b, metav1.CreateOptions{}); err != nil {
		t.Fatalf("bind %s/%s: %v", ns, pod, err)
	}
}

func TestListResourceVersionSemantics(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	createPods(t, e, "default", 2, nil)
	old := strconv.FormatInt(e.store.Revision(), 10)
	createPods(t, e, "kube-public", 1, nil)
	if _, err := e.client.CoreV1().Pods("default").Create(ctx, testPod("later", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cur := strconv.FormatInt(e.store.Revision(), 10)
	future := strconv.FormatInt(e.store.Revision()+100, 10)
	tests := []struct {
		rv, match string
		want      int // items; -1 means an error code in code
		code      int
	}{
		{"", "", 3, 0},
		{"0", "", 3, 0},
		{old, "", 3, 0},
		{old, "NotOlderThan", 3, 0},
		{old, "Exact", 2, 0},
		{cur, "Exact", 3, 0},
		{future, "", -1, http.StatusGatewayTimeout},
		{future, "Exact", -1, http.StatusGatewayTimeout},
		{"", "Exact", -1, http.StatusUnprocessableEntity},
		{"0", "Exact", -1, http.StatusUnprocessableEntity},
		{old, "Sometimes", -1, http.StatusUnprocessableEntity},
		{"abc", "", -1, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.rv+"/"+tc.match, func(t *testing.T) {
			q := url.Values{"resourceVersion": {tc.rv}}
			if tc.match != "" {
				q.Set("resourceVersionMatch", tc.match)
			}
			code, body, _ := e.do(t, http.MethodGet, "/api/v1/namespaces/default/pods?"+q.Encode(), "", nil)
			if tc.want < 0 {
				if code != tc.code {
					t.Fatalf("code %d, want %d: %s", code, tc.code, body)
				}
				return
			}
			var list corev1.PodList
			if err := json.Unmarshal(body, &list); err != nil || code != http.StatusOK {
				t.Fatalf("code %d err %v: %s", code, err, body)
			}
			if len(list.Items) != tc.want {
				t.Fatalf("%d items, want %d", len(list.Items), tc.want)
			}
		})
	}
	// An exact read of a compacted revision is 410.
	if err := e.store.Compact(ctx, e.store.Revision()); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{ResourceVersion: old, ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("exact compacted: %v, want 410", err)
	}
	// get honours "not older than".
	if _, err := e.client.CoreV1().Pods("default").Get(ctx, "later", metav1.GetOptions{ResourceVersion: future}); !apierrors.IsTimeout(err) {
		t.Fatalf("get at future rv: %v, want 504", err)
	}
}
