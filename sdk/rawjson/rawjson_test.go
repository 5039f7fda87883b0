package rawjson_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

const doc = ` {"kind": "Pod", "metadata": {"name": "p", "labels": {"a/b": "1", "t\u0065am": "x"}},
	"spec": {"containers": [{"name": "a"}, {"name": "b", "ports": [1, 2.5e3, -0]}], "n": null, "ok": true, "no": false},
	"esc": "q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "empty": {}, "list": []} `

func TestGet(t *testing.T) {
	v := rawjson.Value(doc)
	tests := []struct {
		path []string
		want string // raw JSON; "" = not found
	}{
		{[]string{"kind"}, `"Pod"`},
		{[]string{"metadata", "name"}, `"p"`},
		{[]string{"metadata", "labels", "a/b"}, `"1"`},
		{[]string{"metadata", "labels", "team"}, `"x"`}, // escaped key
		{[]string{"spec", "containers"}, `[{"name": "a"}, {"name": "b", "ports": [1, 2.5e3, -0]}]`},
		{[]string{"spec", "n"}, `null`},
		{[]string{"empty"}, `{}`},
		{[]string{"list"}, `[]`},
		{[]string{"metadata", "missing"}, ""},
		{[]string{"metadata", "kind"}, ""},           // a later member of the parent is not in metadata
		{[]string{"metadata", "labels", "spec"}, ""}, // nor two levels up
		{[]string{"kind", "x"}, ""},                  // not an object
		{[]string{"spec", "containers", "0"}, ""},    // arrays are not indexed by Get
		{nil, strings.TrimSpace(doc)},
	}
	if got, ok := rawjson.Value("{\"\xc3\xa9t\xc3\xa9\":1,\"b\xffd\":2}").Get("été"); !ok || string(got) != "1" {
		t.Errorf("Get of a non-ASCII key = %s, %v", got, ok)
	}
	if got, ok := rawjson.Value("{\"b\xffd\":2}").Get("b\uFFFDd"); !ok || string(got) != "2" {
		t.Errorf("Get of a key with invalid UTF-8 (read as U+FFFD) = %s, %v", got, ok)
	}
	for _, tt := range tests {
		got, ok := v.Get(tt.path...)
		if tt.want == "" {
			if ok {
				t.Errorf("Get(%q) = %s, want not found", tt.path, got)
			}
			continue
		}
		if !ok || strings.TrimSpace(string(got)) != tt.want {
			t.Errorf("Get(%q) = %s, %v; want %s", tt.path, got, ok, tt.want)
		}
	}
}

func TestScalars(t *testing.T) {
	v := rawjson.Value(doc)
	esc, _ := v.Get("esc")
	s, ok := esc.String()
	var want string
	if err := json.Unmarshal(esc, &want); err != nil {
		t.Fatal(err)
	}
	if !ok || s != want {
		t.Errorf("String() = %q, %v; want %q", s, ok, want)
	}
	if !esc.StringEquals(want) || esc.StringEquals("q") {
		t.Error("StringEquals is wrong")
	}
	for _, in := range []rawjson.Value{esc, rawjson.Value(` "plain" `)} {
		var want string
		if err := json.Unmarshal(in, &want); err != nil {
			t.Fatal(err)
		}
		if b, ok := in.StringBytes(); !ok || string(b) != want {
			t.Errorf("StringBytes(%s) = %q, %v; want %q", in, b, ok, want)
		}
	}
	for _, in := range []string{`"x`, `1`, `"a" "b"`, ``} {
		if b, ok := rawjson.Value(in).StringBytes(); ok {
			t.Errorf("StringBytes(%s) = %q, ok", in, b)
		}
	}
	if b, ok := rawjson.Value(" true ").Bool(); !b || !ok {
		t.Error("Bool(true)")
	}
	if b, ok := rawjson.Value("false").Bool(); b || !ok {
		t.Error("Bool(false)")
	}
	if _, ok := rawjson.Value(`"true"`).Bool(); ok {
		t.Error(`Bool("true") ok`)
	}
	if n, ok := rawjson.Value("-42").Int(); n != -42 || !ok {
		t.Error("Int(-42)")
	}
	if _, ok := rawjson.Value("4.5").Int(); ok {
		t.Error("Int(4.5) ok")
	}
	if f, ok := rawjson.Value("2.5e3").Float(); f != 2500 || !ok {
		t.Error("Float(2.5e3)")
	}
	if _, ok := rawjson.Value(`"x`).String(); ok {
		t.Error("String of an unterminated string ok")
	}
	if !rawjson.Value("").IsNull() || !rawjson.Value(" null ").IsNull() || rawjson.Value("{}").IsNull() {
		t.Error("IsNull")
	}
	kinds := map[string]rawjson.Kind{`{}`: rawjson.Object, `[]`: rawjson.Array, `"s"`: rawjson.String, `1`: rawjson.Number,
		`-1`: rawjson.Number, `true`: rawjson.Bool, `null`: rawjson.Null, ``: rawjson.Invalid, `x`: rawjson.Invalid}
	for in, want := range kinds {
		if got := rawjson.Value(in).Kind(); got != want {
			t.Errorf("Kind(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestIteration(t *testing.T) {
	v := rawjson.Value(doc)
	var keys []string
	for k := range v.Members() {
		keys = append(keys, k)
	}
	if want := []string{"kind", "metadata", "spec", "esc", "empty", "list"}; !slices.Equal(keys, want) {
		t.Errorf("Members keys %q, want %q", keys, want)
	}
	labels, _ := v.Get("metadata", "labels")
	keys = nil
	for k := range labels.Members() {
		keys = append(keys, k)
	}
	if want := []string{"a/b", "team"}; !slices.Equal(keys, want) {
		t.Errorf("label keys %q, want %q", keys, want)
	}
	containers, _ := v.Get("spec", "containers")
	var names []string
	for i, c := range containers.Elems() {
		n, _ := c.Get("name")
		s, _ := n.String()
		names = append(names, s+string(rune('0'+i)))
	}
	if want := []string{"a0", "b1"}; !slices.Equal(names, want) {
		t.Errorf("Elems names %q, want %q", names, want)
	}
	if n := containers.Len(); n != 2 {
		t.Errorf("Len = %d, want 2", n)
	}
	// Early stop.
	count := 0
	for range v.Members() {
		count++
		break
	}
	if count != 1 {
		t.Errorf("break after 1 member: saw %d", count)
	}
	for _, bad := range []string{`{"a": 1,}`, `{"a" 1}`, `{"a": 1 "b": 2}`, `{"a": [1}`, `[1 2]`, `{"a`, `[`, `x`} {
		errObj := rawjson.Value(bad).EachMember(func([]byte, rawjson.Value) bool { return true })
		errArr := rawjson.Value(bad).EachElem(func(int, rawjson.Value) bool { return true })
		if errObj == nil && errArr == nil {
			t.Errorf("%s: EachMember and EachElem both report no error", bad)
		}
	}
}

func TestValid(t *testing.T) {
	for _, in := range []string{doc, `{}`, `[]`, `0`, `-0.5e-3`, `"\u00e9"`, `null`, ` [1, {"a": [true, false, null]}] `,
		``, ` `, `{`, `{"a":}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `+1`, `1e`, `"\x"`, `"\u12"`, "\"\x01\"", `tru`,
		`{"a":1}}`, `[1] [2]`, `{1:2}`, `nul`, `"abc`, `[[[[[`, `{"a":"b"`} {
		if got, want := rawjson.Valid([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", in, got, want)
		}
	}
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	if rawjson.Valid([]byte(deep)) {
		t.Error("Valid accepts nesting beyond its depth limit")
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "\n\r\t\x00\x1f", "<a&b>", "é ü 😀", "\u2028\u2029", "bad \xff\xfe utf8", "\xed\xa0\x80"} {
		want, _ := json.Marshal(s)
		if got := rawjson.AppendString(nil, s); string(got) != string(want) {
			t.Errorf("AppendString(%q) = %s, encoding/json gives %s", s, got, want)
		}
	}
}

func TestStringMap(t *testing.T) {
	got := rawjson.StringMap(map[string]string{"b": "2", "a": "<1>"})
	if want := `{"a":"\u003c1\u003e","b":"2"}`; string(got) != want {
		t.Errorf("StringMap = %s, want %s", got, want)
	}
}

func FuzzValue(f *testing.F) {
	for _, s := range []string{doc, `{}`, `[1,"a",{"b":null}]`, `"\ud83d\ude00"`, `{"a":{"b":[1,2,{"c":"d"}]}}`, `{"a":1,}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v := rawjson.Value(b)
		valid := rawjson.Valid(b)
		if valid != json.Valid(b) {
			t.Fatalf("Valid(%q) = %v, encoding/json disagrees", b, valid)
		}
		// Nothing may panic, valid or not.
		_, _ = v.Get("a", "b")
		_, _ = v.String()
		_ = v.Len()
		var keys []string
		err := v.EachMember(func(k []byte, val rawjson.Value) bool {
			keys = append(keys, string(k))
			if valid && !json.Valid(val) {
				t.Fatalf("member %q of a valid document is not valid JSON: %q", k, val)
			}
			return true
		})
		if !valid || err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			return // not an object
		}
		for _, k := range keys {
			got, ok := v.Get(k)
			if _, exists := m[k]; !ok || !exists {
				t.Fatalf("key %q: Get ok=%v, encoding/json has it=%v", k, ok, exists)
			}
			var a, b any
			if json.Unmarshal(got, &a) != nil || json.Unmarshal(m[k], &b) != nil {
				t.Fatalf("key %q: values do not decode", k)
			}
			// encoding/json keeps the last of duplicate keys, Get the first.
			if countKey(keys, k) == 1 && !reflect.DeepEqual(a, b) {
				t.Fatalf("key %q: Get = %s, encoding/json has %s", k, got, m[k])
			}
			if str, ok := got.String(); ok && countKey(keys, k) == 1 && str != b {
				t.Fatalf("key %q: String() = %q, encoding/json %q", k, str, b)
			}
		}
	})
}

func countKey(keys []string, k string) int {
	n := 0
	for _, x := range keys {
		if x == k {
			n++
		}
	}
	return n
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\xff", "\u2028", "<&>", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := rawjson.AppendString(nil, s); string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json gives %s", s, got, want)
		}
	})
}
