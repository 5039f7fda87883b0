package sdk

import (
	"encoding/binary"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/hostapi"
)

// binaryRequest builds a hostapi.AdmitLayoutBinary request with fields in
// order (as the host writes them), groups in the groups field.
func binaryRequest(flags uint32, fields []string, groups ...string) []byte {
	if len(fields) > hostapi.AdmitFieldGroups {
		var g []byte
		for _, s := range groups {
			g = binary.LittleEndian.AppendUint32(g, uint32(len(s)))
			g = append(g, s...)
		}
		fields = append([]string(nil), fields...)
		fields[hostapi.AdmitFieldGroups] = string(g)
	}
	return rawBinaryRequest(flags, fields)
}

// rawBinaryRequest writes fields as they are.
func rawBinaryRequest(flags uint32, fields []string) []byte {
	b := []byte(hostapi.AdmitBinaryMagic)
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(fields)))
	for _, f := range fields {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// fullFields are the fields of a typical request, in hostapi order.
func fullFields(uid, kind string) []string {
	f := make([]string, hostapi.AdmitFieldCount)
	copy(f, []string{uid, "apps", "v1", kind, "apps", "v1", "deployments", "", "web", "prod", "CREATE", "ann", "42"})
	f[hostapi.AdmitFieldObject] = `{"metadata":{"name":"web"}}`
	f[hostapi.AdmitFieldOptions] = `{"kind":"CreateOptions"}`
	return f
}

func TestDecodeBinaryRequest(t *testing.T) {
	short := fullFields("u-2", "Deployment")[:hostapi.AdmitFieldOperation+1]
	long := append(fullFields("u-3", "Deployment"), "a field of a later version")
	tests := []struct {
		name string
		in   []byte
		want *AdmissionRequest
	}{{
		name: "full",
		in:   binaryRequest(hostapi.AdmitFlagDryRun, fullFields("u-1", "Deployment"), "dev", "ops"),
		want: &AdmissionRequest{UID: "u-1", Kind: GroupVersionKind{"apps", "v1", "Deployment"},
			Resource: GroupVersionResource{"apps", "v1", "deployments"}, Name: "web", Namespace: "prod", Operation: Create,
			UserInfo: UserInfo{Username: "ann", UID: "42", Groups: []string{"dev", "ops"}},
			Object:   []byte(`{"metadata":{"name":"web"}}`), DryRun: true, Options: []byte(`{"kind":"CreateOptions"}`)},
	}, {
		name: "fields missing at the end are empty",
		in:   binaryRequest(0, short),
		want: &AdmissionRequest{UID: "u-2", Kind: GroupVersionKind{"apps", "v1", "Deployment"},
			Resource: GroupVersionResource{"apps", "v1", "deployments"}, Name: "web", Namespace: "prod", Operation: Create},
	}, {
		name: "fields past the known ones are skipped",
		in:   binaryRequest(0, long),
		want: &AdmissionRequest{UID: "u-3", Kind: GroupVersionKind{"apps", "v1", "Deployment"},
			Resource: GroupVersionResource{"apps", "v1", "deployments"}, Name: "web", Namespace: "prod", Operation: Create,
			UserInfo: UserInfo{Username: "ann", UID: "42"},
			Object:   []byte(`{"metadata":{"name":"web"}}`), Options: []byte(`{"kind":"CreateOptions"}`)},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, last := range []*lastStrings{nil, {}} {
				got, err := decodeRequest(tc.in, last)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("decoded (cache %v)\n %+v\nwant\n %+v", last != nil, got, tc.want)
				}
			}
		})
	}
}

func TestDecodeBinaryRequestErrors(t *testing.T) {
	good := binaryRequest(0, fullFields("u", "Pod"), "g")
	badGroups := fullFields("u", "Pod")
	badGroups[hostapi.AdmitFieldGroups] = "\x09\x00\x00\x00ab" // an inner length past the field's end
	for name, in := range map[string][]byte{
		"bad magic":        append([]byte{0, 'x', 'y', 'z'}, good[4:]...),
		"short header":     good[:6],
		"truncated field":  good[:len(good)-3],
		"field count lies": binary.LittleEndian.AppendUint32(append([]byte{}, good[:8]...), 99),
		"bad groups":       rawBinaryRequest(0, badGroups),
	} {
		t.Run(name, func(t *testing.T) {
			if req, err := DecodeAdmissionRequest(in); err == nil {
				t.Fatalf("decoded %+v, want an error", req)
			}
		})
	}
}

// TestDecodeBinaryRequestReuse: a Wasm guest decodes into one request
// value and keeps strings that repeat; each decode must still see exactly
// its own request.
func TestDecodeBinaryRequestReuse(t *testing.T) {
	var last lastStrings
	decode := func(in []byte) *AdmissionRequest {
		t.Helper()
		req, err := decodeRequest(in, &last)
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	first := decode(binaryRequest(0, fullFields("u-1", "Deployment"), "dev", "ops"))
	kind, groups := first.Kind.Kind, first.UserInfo.Groups
	second := decode(binaryRequest(0, fullFields("u-2", "Deployment"), "dev", "ops"))
	if second.UID != "u-2" || second.Kind.Kind != "Deployment" || !reflect.DeepEqual(second.UserInfo.Groups, []string{"dev", "ops"}) {
		t.Fatalf("second request decoded as %+v", second)
	}
	if &second.UserInfo.Groups[0] != &groups[0] || kind != second.Kind.Kind {
		t.Errorf("repeated groups or kind were allocated again")
	}
	third := decode(binaryRequest(hostapi.AdmitFlagDryRun, fullFields("u-3", "StatefulSet"), "dev"))
	want := []string{"dev"}
	if third.UID != "u-3" || third.Kind.Kind != "StatefulSet" || !third.DryRun || !reflect.DeepEqual(third.UserInfo.Groups, want) {
		t.Fatalf("third request decoded as %+v", third)
	}
	fourth := decode(binaryRequest(0, fullFields("u-4", "StatefulSet")))
	if fourth.UserInfo.Groups != nil || fourth.DryRun || fourth.OldObject != nil {
		t.Fatalf("fourth request kept values of the third: %+v", fourth)
	}
}

// TestDecodeBinaryRequestStringsStayValid: strings a reused decode takes
// from its arena (UIDs, changed names) keep their value after later
// requests, across arena chunks, and the input buffer may be overwritten.
func TestDecodeBinaryRequestStringsStayValid(t *testing.T) {
	var last lastStrings
	in := make([]byte, 0, 4096)
	type kept struct{ uid, name string }
	var all []kept
	for i := range 3 * arenaChunk / 40 {
		f := fullFields("uid-"+strings.Repeat("x", i%7)+strconv.Itoa(i), "Deployment")
		f[hostapi.AdmitFieldName] = "web-" + strconv.Itoa(i)
		in = append(in[:0], binaryRequest(0, f)...)
		req, err := decodeRequest(in, &last)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, kept{req.UID, req.Name})
		clear(in) // the host writes the next input over this one
	}
	for i, k := range all {
		want := kept{"uid-" + strings.Repeat("x", i%7) + strconv.Itoa(i), "web-" + strconv.Itoa(i)}
		if k != want {
			t.Fatalf("request %d: kept %+v, want %+v", i, k, want)
		}
	}
}

func FuzzDecodeBinaryRequest(f *testing.F) {
	f.Add(binaryRequest(0, fullFields("u", "Pod"), "a", "b"))
	f.Add(binaryRequest(1, fullFields("u", "Pod")[:3]))
	f.Add([]byte(hostapi.AdmitBinaryMagic))
	f.Fuzz(func(t *testing.T, in []byte) {
		var last lastStrings
		a, errA := decodeRequest(in, &last)
		b, errB := decodeRequest(in, nil)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("errors differ with and without reuse: %v, %v", errA, errB)
		}
		if errA == nil && !reflect.DeepEqual(a, b) {
			t.Fatalf("decodes differ with and without reuse:\n%+v\n%+v", a, b)
		}
	})
}
