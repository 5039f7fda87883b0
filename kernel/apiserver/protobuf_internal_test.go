package apiserver

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"testing"

	corev1 "k8s.io/api/core/v1"
	kresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestProtoListMatchesSerializer: writeProtoList, which streams shared
// objects without building a List, produces exactly the bytes of
// apimachinery's protobuf serializer for the equivalent List.
func TestProtoListMatchesSerializer(t *testing.T) {
	pod := func(i int) *corev1.Pod {
		return &corev1.Pod{
			TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "default", ResourceVersion: fmt.Sprint(10 + i),
				Labels: map[string]string{"i": fmt.Sprint(i)}, CreationTimestamp: metav1.Unix(1700000000, 0)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: kresource.MustParse(fmt.Sprintf("%dm", 100*i+1))}}}}},
		}
	}
	tests := []struct {
		name string
		meta metav1.ListMeta
		n    int
	}{
		{"empty", metav1.ListMeta{ResourceVersion: "7"}, 0},
		{"one", metav1.ListMeta{ResourceVersion: "8"}, 1},
		{"with continue", metav1.ListMeta{ResourceVersion: "9", Continue: "abc", RemainingItemCount: new(int64(4))}, 3},
		// Items of more than 127 bytes and a list of more than 16383 need
		// multi-byte lengths.
		{"large", metav1.ListMeta{ResourceVersion: "10"}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list := &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, ListMeta: tc.meta}
			var items []runtime.Object
			for i := range tc.n {
				p := pod(i)
				items = append(items, p)
				list.Items = append(list.Items, *p.DeepCopy())
			}
			want, err := encodeProto(list)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			if err := writeProtoList(rec, "v1", "PodList", tc.meta, items); err != nil {
				t.Fatal(err)
			}
			if got := rec.Body.Bytes(); !bytes.Equal(got, want) {
				t.Fatalf("streamed list (%d bytes) differs from the serializer's (%d bytes)", len(got), len(want))
			}
			if ct := rec.Header().Get("Content-Type"); ct != mediaProto {
				t.Fatalf("content type %q", ct)
			}
		})
	}
}
