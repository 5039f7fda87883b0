package sdk

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// TestRequestEncoding checks that the host decodes the SDK's hand-written
// requests into the same hostapi values.
func TestRequestEncoding(t *testing.T) {
	get := GetRequest{Resource: "pods", Namespace: "ns\"1", Name: "p<1>"}
	var gotGet hostapi.GetRequest
	if err := json.Unmarshal(appendGetRequest(nil, get), &gotGet); err != nil || gotGet != get {
		t.Errorf("get: %+v, %v; want %+v", gotGet, err, get)
	}
	for _, list := range []ListRequest{{Resource: "pods"}, {Resource: "pods", Namespace: "a", LabelSelector: "app=web,tier!=db", FieldSelector: "metadata.name=x"}} {
		var got hostapi.ListRequest
		if err := json.Unmarshal(appendListRequest(nil, list), &got); err != nil || got != list {
			t.Errorf("list: %+v, %v; want %+v", got, err, list)
		}
	}
	for _, w := range []WriteRequest{
		{Verb: "create", Resource: "configmaps", Namespace: "a", Object: []byte(`{"data":{"k":"v"}}`)},
		{Verb: "patch", Resource: "deployments.apps", Namespace: "a", Name: "d", Subresource: "scale", Object: []byte(`{"spec":{}}`), PatchType: "application/merge-patch+json"},
		{Verb: "delete", Resource: "pods", Namespace: "a", Name: "p"},
	} {
		var got hostapi.WriteRequest
		if err := json.Unmarshal(appendWriteRequest(nil, w), &got); err != nil || !reflect.DeepEqual(got, w) {
			t.Errorf("write: %+v, %v; want %+v", got, err, w)
		}
	}
}

func TestDecodeListResponse(t *testing.T) {
	items := [][]byte{[]byte(`{"metadata":{"name":"a"}}`), []byte(`{"metadata":{"name":"b"}}`)}
	asBase64, _ := json.Marshal(struct {
		Items [][]byte `json:"items"`
	}{items}) // a first-draft host
	tests := []struct {
		name    string
		in      string
		want    [][]byte
		wantErr bool
	}{
		{"base64 items", string(asBase64), items, false},
		{"raw items", `{"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}`, items, false},
		{"empty", `{"items":[]}`, nil, false},
		{"null", `{"items":null}`, nil, false},
		{"no items", `{}`, nil, false},
		{"not base64", `{"items":["%%%"]}`, nil, true},
		{"not an object", `[]`, nil, true},
		{"truncated", `{"items":[{"a":1}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeListResponse([]byte(tt.in))
			if (err != nil) != tt.wantErr || !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("decodeListResponse = %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	for code := int32(-1); code >= hostapi.ErrCodeNoResult; code-- {
		err := CodeError(code)
		if got := ErrorCode(err); got != code {
			t.Errorf("ErrorCode(CodeError(%d)) = %d", code, got)
		}
	}
	if err := CodeError(-99); err == nil || ErrorCode(err) != hostapi.ErrCodeInternal {
		t.Errorf("unknown code: %v", err)
	}
	if ErrorCode(errors.New("x")) != hostapi.ErrCodeInternal {
		t.Error("a foreign error must map to ErrCodeInternal")
	}
}

func TestNativeHostDefault(t *testing.T) {
	if _, err := Get("pods", "a", "b"); !errors.Is(err, ErrNoHost) {
		t.Errorf("Get without a host: %v, want ErrNoHost", err)
	}
	if _, err := List(ListRequest{Resource: "pods"}); !errors.Is(err, ErrNoHost) {
		t.Errorf("List without a host: %v", err)
	}
	if _, err := Now(); !errors.Is(err, ErrNoHost) {
		t.Errorf("Now without a host: %v", err)
	}
	Log(LevelInfo, "dropped") // must not panic
}
