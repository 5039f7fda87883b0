package sdk

import (
	"strings"

	"github.com/tugboat-dev/tugboat/sdk/rawjson"
)

// Patch builds an RFC 6902 JSON patch for a mutating plugin's response.
// Paths are JSON pointers (RFC 6901); build them with Pointer. The zero
// value is an empty patch. Not safe for concurrent use.
type Patch struct {
	buf    []byte
	n      int
	closed bool // buf ends with the closing ']' (Bytes)
}

// Add appends an "add" operation: value (raw JSON) is inserted at path,
// creating the member or replacing it (for an array index, inserting).
func (p *Patch) Add(path string, value rawjson.Value) { p.op("add", path, value) }

// AddString is Add with a string value.
func (p *Patch) AddString(path, value string) {
	p.op("add", path, rawjson.AppendString(nil, value))
}

// Replace appends a "replace" operation; path must exist.
func (p *Patch) Replace(path string, value rawjson.Value) { p.op("replace", path, value) }

// ReplaceString is Replace with a string value.
func (p *Patch) ReplaceString(path, value string) {
	p.op("replace", path, rawjson.AppendString(nil, value))
}

// Remove appends a "remove" operation; path must exist.
func (p *Patch) Remove(path string) { p.op("remove", path, nil) }

func (p *Patch) op(op, path string, value rawjson.Value) {
	switch {
	case p.n == 0:
		p.buf = append(p.buf[:0], '[')
	case p.closed:
		p.buf[len(p.buf)-1] = ','
	default:
		p.buf = append(p.buf, ',')
	}
	p.closed = false
	p.n++
	p.buf = append(p.buf, `{"op":"`...)
	p.buf = append(p.buf, op...)
	p.buf = append(p.buf, `","path":`...)
	p.buf = rawjson.AppendString(p.buf, path)
	if op != "remove" {
		p.buf = append(p.buf, `,"value":`...)
		if len(value) == 0 {
			value = rawjson.Value("null")
		}
		p.buf = append(p.buf, value...)
	}
	p.buf = append(p.buf, '}')
}

// Len returns the number of operations.
func (p *Patch) Len() int { return p.n }

// Bytes returns the patch document ("[]" when empty). The slice is the
// patch's own buffer, valid until the patch changes: do not change it.
// (It is not a copy: a mutating plugin's patch is not copied on its way
// to the response.)
func (p *Patch) Bytes() []byte {
	if p.n == 0 {
		return []byte("[]")
	}
	if !p.closed {
		p.buf = append(p.buf, ']')
		p.closed = true
	}
	return p.buf
}

// pointerEscaper escapes reference tokens for JSON pointers.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// Pointer joins reference tokens into a JSON pointer, escaping "~" and "/"
// (so a label key like "app.kubernetes.io/name" is one token):
// Pointer("metadata", "labels", "a/b") is "/metadata/labels/a~1b".
func Pointer(tokens ...string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		if strings.ContainsAny(t, "~/") {
			t = pointerEscaper.Replace(t)
		}
		b.WriteString(t)
	}
	return b.String()
}
