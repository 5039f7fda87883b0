package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Stored form. An object is stored as the JSON encoding of its typed value
// with kind and apiVersion set and metadata.resourceVersion empty: the
// resourceVersion is the key's ModRevision, known only after the write. On
// the way out the revision is spliced into the stored bytes right after
// `"metadata":{` (appendWithRV), so a list of 10k objects is served without
// decoding any of them. encoding/json writes kind and apiVersion (whose
// escaped values cannot contain `"metadata":{`) before metadata, and
// metadata always has creationTimestamp, so the splice point is the first
// occurrence and the metadata object is never empty.

var metadataOpen = []byte(`"metadata":{`)

// encodeStored marshals obj into its stored form.
func encodeStored(res *resource, obj runtime.Object) ([]byte, error) {
	obj.GetObjectKind().SetGroupVersionKind(res.gvk)
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", res.plural, err)
	}
	rv := m.GetResourceVersion()
	m.SetResourceVersion("")
	data, err := json.Marshal(obj)
	m.SetResourceVersion(rv)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", res.plural, err)
	}
	return data, nil
}

// decodeStored decodes a stored value into a new typed object whose
// resourceVersion is rev.
func decodeStored(res *resource, data []byte, rev int64) (runtime.Object, error) {
	obj := res.newObj()
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", res.plural, err)
	}
	obj.GetObjectKind().SetGroupVersionKind(res.gvk)
	if rev > 0 {
		setResourceVersion(obj, rev)
	}
	return obj, nil
}

// appendWithRV appends the stored value data to dst with
// metadata.resourceVersion set to rev.
func appendWithRV(dst, data []byte, rev int64) []byte {
	i := bytes.Index(data, metadataOpen)
	if i < 0 {
		return append(dst, data...)
	}
	i += len(metadataOpen)
	dst = append(dst, data[:i]...)
	dst = append(dst, `"resourceVersion":"`...)
	dst = strconv.AppendInt(dst, rev, 10)
	dst = append(dst, '"')
	if i < len(data) && data[i] != '}' {
		dst = append(dst, ',')
	}
	return append(dst, data[i:]...)
}

func accessor(obj runtime.Object) metav1.Object {
	m, err := meta.Accessor(obj)
	if err != nil {
		// Every registered type has ObjectMeta; this is a programming error.
		panic(fmt.Sprintf("apiserver: %T has no object metadata: %v", obj, err))
	}
	return m
}

func setName(obj runtime.Object, name string) { accessor(obj).SetName(name) }

func setResourceVersion(obj runtime.Object, rev int64) {
	accessor(obj).SetResourceVersion(strconv.FormatInt(rev, 10))
}

// formatRV renders a revision as a resourceVersion.
func formatRV(rev int64) string { return strconv.FormatInt(rev, 10) }

// parseRV parses a resourceVersion; "" is 0.
func parseRV(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid resource version %q", s)
	}
	return v, nil
}
