package apiserver

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Protobuf responses (Accept: application/vnd.kubernetes.protobuf), as
// client-go's typed clients prefer. An object is the Kubernetes envelope:
// the magic "k8s\x00" and a runtime.Unknown whose raw bytes are the
// object's generated protobuf encoding. Encoding only reads the objects, so
// the watch cache's shared objects are encoded without copies.

// mediaProtoWatch is the Content-Type of a protobuf watch stream: frames
// of a 4-byte big-endian length and a metav1.WatchEvent whose object is an
// enveloped object.
const mediaProtoWatch = mediaProto + ";stream=watch"

// protoMagic starts every enveloped protobuf object.
var protoMagic = []byte("k8s\x00")

// Field tags (field number << 3 | wire type 2) of a List message: metadata
// is field 1 and items field 2 in every Kubernetes List type.
const (
	tagListMeta  = 1<<3 | 2
	tagListItems = 2<<3 | 2
)

// protoMarshaler is implemented by every generated Kubernetes type.
type protoMarshaler interface {
	Size() int
	MarshalToSizedBuffer(dAtA []byte) (int, error)
}

// freezeObject prepares a decoded object for concurrent encoding:
// resource.Quantity caches its string form on first use, so a shared
// object is sized once, by its owner, before anyone else sees it.
func freezeObject(obj runtime.Object) {
	if m, ok := obj.(protoMarshaler); ok {
		m.Size()
	}
}

// encodeProto returns obj in the protobuf envelope.
func encodeProto(obj runtime.Object) ([]byte, error) {
	var buf bytes.Buffer
	if err := protoCodec.Encode(obj, &buf); err != nil {
		return nil, fmt.Errorf("encode %s as protobuf: %w", obj.GetObjectKind().GroupVersionKind().Kind, err)
	}
	return buf.Bytes(), nil
}

// writeProto writes one object as a protobuf response.
func writeProto(w http.ResponseWriter, code int, obj runtime.Object) error {
	data, err := encodeProto(obj)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", mediaProto)
	w.WriteHeader(code)
	_, _ = w.Write(data)
	return nil
}

// writeProtoList streams items as a protobuf list of kind listKind without
// building the List value (which would copy every item): it sizes the items
// first, since protobuf lengths precede their contents, then encodes them
// one at a time through a small buffer. The bytes equal what the protobuf
// serializer produces for the equivalent List object.
func writeProtoList(w http.ResponseWriter, apiVersion, listKind string, meta metav1.ListMeta, items []runtime.Object) error {
	sizes := make([]int, len(items))
	metaSize := meta.Size()
	raw := 1 + uvarintLen(metaSize) + metaSize
	for i, it := range items {
		m, ok := it.(protoMarshaler)
		if !ok {
			return fmt.Errorf("encode %T as protobuf: not a generated type", it)
		}
		sizes[i] = m.Size()
		raw += 1 + uvarintLen(sizes[i]) + sizes[i]
	}
	w.Header().Set("Content-Type", mediaProto)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.Write(protoMagic); err != nil {
		return err
	}
	unk := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: apiVersion, Kind: listKind}}
	_, err := unk.MarshalToWriter(bw, raw, func(w io.Writer) (int, error) {
		var scratch []byte
		n, err := writeProtoField(w, tagListMeta, &meta, metaSize, &scratch)
		for i, it := range items {
			if err != nil {
				break
			}
			var m int
			m, err = writeProtoField(w, tagListItems, it.(protoMarshaler), sizes[i], &scratch)
			n += m
		}
		return n, err
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// writeProtoField writes one length-delimited field: tag, size, message.
// scratch is reused across calls.
func writeProtoField(w io.Writer, tag byte, m protoMarshaler, size int, scratch *[]byte) (int, error) {
	need := 1 + binary.MaxVarintLen64 + size
	if cap(*scratch) < need {
		*scratch = make([]byte, need)
	}
	buf := (*scratch)[:cap(*scratch)]
	buf[0] = tag
	h := 1 + binary.PutUvarint(buf[1:], uint64(size))
	if _, err := m.MarshalToSizedBuffer(buf[h : h+size]); err != nil {
		return 0, err
	}
	return w.Write(buf[:h+size])
}

// uvarintLen is the length of n as a protobuf varint.
func uvarintLen(n int) int {
	l := 1
	for v := uint64(n); v >= 0x80; v >>= 7 {
		l++
	}
	return l
}

// appendProtoWatchEvent appends one frame of a protobuf watch stream.
func appendProtoWatchEvent(dst []byte, typ string, obj runtime.Object) ([]byte, error) {
	data, err := encodeProto(obj)
	if err != nil {
		return dst, err
	}
	ev := metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: data}}
	n := ev.Size()
	start := len(dst)
	dst = append(dst, make([]byte, 4+n)...)
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	if _, err := ev.MarshalToSizedBuffer(dst[start+4:]); err != nil {
		return dst[:start], err
	}
	return dst, nil
}
