// Package rawjson reads JSON in place, without decoding it into Go values
// and without reflection: a Value is a slice of the input, and lookups scan
// it. Plugins use it to pick the few fields a policy needs out of an object,
// which in a Wasm guest is several times cheaper than encoding/json (see
// docs/PLUGIN_GUIDE.md for measurements).
//
// Values are read-only views; they alias the bytes they were made from.
// Accessors never panic on malformed input: they report "not found" or an
// error instead. To stay cheap they check the structure of what they step
// over (brackets, strings) but not the grammar of every scalar; Valid checks
// a whole document strictly.
package rawjson

import (
	"errors"
	"iter"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Value is one JSON value (possibly surrounded by white space).
type Value []byte

// Kind is the type of a JSON value.
type Kind uint8

// Kinds of JSON values; Invalid is an empty or malformed value.
const (
	Invalid Kind = iota
	Null
	Bool
	Number
	String
	Array
	Object
)

// ErrSyntax reports malformed JSON.
var ErrSyntax = errors.New("rawjson: syntax error")

// maxDepth bounds nesting so that malformed input cannot exhaust the stack.
const maxDepth = 512

// Kind returns the type of v from its first byte.
func (v Value) Kind() Kind {
	i := skipSpace(v, 0)
	if i >= len(v) {
		return Invalid
	}
	switch v[i] {
	case 'n':
		return Null
	case 't', 'f':
		return Bool
	case '"':
		return String
	case '[':
		return Array
	case '{':
		return Object
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return Number
	}
	return Invalid
}

// IsNull reports whether v is absent (empty) or the literal null.
func (v Value) IsNull() bool {
	k := v.Kind()
	return k == Null || k == Invalid && len(trim(v)) == 0
}

// Valid reports whether v is exactly one well-formed JSON value.
func Valid(v []byte) bool {
	end, ok := skipValue(v, skipSpace(v, 0), 0)
	return ok && skipSpace(v, end) == len(v)
}

// Get follows keys through nested objects and returns the value found, or
// false if some step is not an object or lacks the key.
func (v Value) Get(keys ...string) (Value, bool) {
	cur := v
	for n, k := range keys {
		next, ok := cur.member(k, n == len(keys)-1)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// member returns the value of key in object v. Unless exact, the value
// found runs on to the end of v: a lookup inside it stops at its closing
// bracket anyway, and this way the value is not scanned twice (in a Wasm
// guest, stepping over a large metadata object was most of a lookup).
func (v Value) member(key string, exact bool) (Value, bool) {
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '{' {
		return nil, false
	}
	i = skipSpace(v, i+1)
	if i < len(v) && v[i] == '}' {
		return nil, false
	}
	for i < len(v) {
		if v[i] != '"' {
			return nil, false
		}
		// Keys are nearly always plain ASCII: compare those in place, and
		// let scanString and keyEqual handle the rest (calls and passes
		// over the key that cost a Wasm guest most of a lookup).
		var match bool
		if j := plainStringEnd(v, i); j > 0 {
			match = string(v[i+1:j-1]) == key
			i = j
		} else {
			kend, esc, ok := scanString(v, i)
			if !ok {
				return nil, false
			}
			match = keyEqual(v[i+1:kend-1], esc, key)
			i = kend
		}
		i = skipSpace(v, i)
		if i >= len(v) || v[i] != ':' {
			return nil, false
		}
		i = skipSpace(v, i+1)
		if match && !exact {
			return v[i:], true
		}
		vend, ok := skipFast(v, i)
		if !ok {
			return nil, false
		}
		if match {
			return v[i:vend], true
		}
		i = skipSpace(v, vend)
		if i >= len(v) || v[i] != ',' {
			return nil, false
		}
		i = skipSpace(v, i+1)
	}
	return nil, false
}

// keyEqual compares a raw (still escaped) key with key.
func keyEqual(raw []byte, escaped bool, key string) bool {
	if !escaped && (string(raw) == key || utf8.Valid(raw)) {
		return string(raw) == key
	}
	s, ok := unescape(raw)
	return ok && s == key
}

// EachMember calls fn for each member of object v in document order, with
// the key unescaped (the slice aliases v when the key has no escapes, and is
// valid only during the call), until fn returns false. It returns ErrSyntax
// if v is not an object or is malformed (members before the error have been
// visited).
func (v Value) EachMember(fn func(key []byte, val Value) bool) error {
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '{' {
		return ErrSyntax
	}
	i = skipSpace(v, i+1)
	if i < len(v) && v[i] == '}' {
		return nil
	}
	for i < len(v) {
		if v[i] != '"' {
			return ErrSyntax
		}
		var key []byte
		if j := plainStringEnd(v, i); j > 0 {
			key = v[i+1 : j-1]
			i = j
		} else {
			kend, esc, ok := scanString(v, i)
			if !ok {
				return ErrSyntax
			}
			key = v[i+1 : kend-1]
			if esc || !utf8.Valid(key) {
				s, ok := unescape(key)
				if !ok {
					return ErrSyntax
				}
				key = []byte(s)
			}
			i = kend
		}
		i = skipSpace(v, i)
		if i >= len(v) || v[i] != ':' {
			return ErrSyntax
		}
		i = skipSpace(v, i+1)
		vend, ok := skipFast(v, i)
		if !ok {
			return ErrSyntax
		}
		if !fn(key, v[i:vend]) {
			return nil
		}
		i = skipSpace(v, vend)
		if i >= len(v) {
			return ErrSyntax
		}
		switch v[i] {
		case '}':
			return nil
		case ',':
			i = skipSpace(v, i+1)
		default:
			return ErrSyntax
		}
	}
	return ErrSyntax
}

// Members iterates over the members of object v in document order with
// their unescaped keys. It yields nothing if v is not an object and stops
// silently at a syntax error; use EachMember to see errors.
func (v Value) Members() iter.Seq2[string, Value] {
	return func(yield func(string, Value) bool) {
		_ = v.EachMember(func(key []byte, val Value) bool {
			return yield(string(key), val)
		})
	}
}

// EachElem calls fn for each element of array v until fn returns false. It
// returns ErrSyntax if v is not an array or is malformed.
func (v Value) EachElem(fn func(i int, val Value) bool) error {
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '[' {
		return ErrSyntax
	}
	i = skipSpace(v, i+1)
	if i < len(v) && v[i] == ']' {
		return nil
	}
	for n := 0; i < len(v); n++ {
		end, ok := skipFast(v, i)
		if !ok {
			return ErrSyntax
		}
		if !fn(n, v[i:end]) {
			return nil
		}
		i = skipSpace(v, end)
		if i >= len(v) {
			return ErrSyntax
		}
		switch v[i] {
		case ']':
			return nil
		case ',':
			i = skipSpace(v, i+1)
		default:
			return ErrSyntax
		}
	}
	return ErrSyntax
}

// Elems iterates over the elements of array v with their indexes. It yields
// nothing if v is not an array and stops silently at a syntax error; use
// EachElem to see errors.
func (v Value) Elems() iter.Seq2[int, Value] {
	return func(yield func(int, Value) bool) {
		_ = v.EachElem(yield)
	}
}

// Len returns the number of elements of array v (0 if v is not an array).
func (v Value) Len() int {
	n := 0
	_ = v.EachElem(func(int, Value) bool { n++; return true })
	return n
}

// String returns the unescaped content of string v, or false if v is not a
// well-formed string.
func (v Value) String() (string, bool) {
	t := trim(v)
	if len(t) < 2 || t[0] != '"' {
		return "", false
	}
	end, esc, ok := scanString(t, 0)
	if !ok || end != len(t) {
		return "", false
	}
	if !esc && utf8.Valid(t[1:end-1]) {
		return string(t[1 : end-1]), true
	}
	return unescape(t[1 : end-1])
}

// StringBytes returns the unescaped content of string v, or false if v is
// not a well-formed string. Without escapes the result aliases v (no
// allocation); do not modify it.
func (v Value) StringBytes() ([]byte, bool) {
	t := trim(v)
	if len(t) < 2 || t[0] != '"' {
		return nil, false
	}
	end, esc, ok := scanString(t, 0)
	if !ok || end != len(t) {
		return nil, false
	}
	if !esc && utf8.Valid(t[1:end-1]) {
		return t[1 : end-1 : end-1], true
	}
	s, ok := unescape(t[1 : end-1])
	return []byte(s), ok
}

// StringEquals reports whether v is a string equal to s, without allocating
// when v has no escapes.
func (v Value) StringEquals(s string) bool {
	t := trim(v)
	if len(t) < 2 || t[0] != '"' {
		return false
	}
	end, esc, ok := scanString(t, 0)
	return ok && end == len(t) && keyEqual(t[1:end-1], esc, s)
}

// Bool returns the value of a true or false literal; ok is false for any
// other value.
func (v Value) Bool() (b, ok bool) {
	switch string(trim(v)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// Int returns the value of an integral number.
func (v Value) Int() (int64, bool) {
	if v.Kind() != Number {
		return 0, false
	}
	n, err := strconv.ParseInt(string(trim(v)), 10, 64)
	return n, err == nil
}

// Float returns the value of a number.
func (v Value) Float() (float64, bool) {
	if v.Kind() != Number {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(trim(v)), 64)
	return f, err == nil
}

// trim removes surrounding white space.
func trim(v []byte) []byte {
	i := skipSpace(v, 0)
	j := len(v)
	for j > i && isSpace(v[j-1]) {
		j--
	}
	return v[i:j]
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) || depth > maxDepth {
		return i, false
	}
	switch c := b[i]; c {
	case '"':
		end, _, ok := scanString(b, i)
		return end, ok
	case '{':
		return skipObject(b, i, depth)
	case '[':
		return skipArray(b, i, depth)
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return scanNumber(b, i)
		}
	}
	return i, false
}

func skipObject(b []byte, i, depth int) (int, bool) {
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for i < len(b) {
		if b[i] != '"' {
			return i, false
		}
		end, _, ok := scanString(b, i)
		if !ok {
			return end, false
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return i, false
		}
		if i, ok = skipValue(b, skipSpace(b, i+1), depth+1); !ok {
			return i, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case '}':
			return i + 1, true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return i, false
		}
	}
	return i, false
}

func skipArray(b []byte, i, depth int) (int, bool) {
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for i < len(b) {
		var ok bool
		if i, ok = skipValue(b, i, depth+1); !ok {
			return i, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ']':
			return i + 1, true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return i, false
		}
	}
	return i, false
}

func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return i, false
}

// scanNumber checks the JSON number grammar.
func scanNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// plainStringEnd returns the index just past the string starting at b[i]
// if it is plain printable ASCII (no escapes, control characters or
// multi-byte UTF-8, so its raw bytes are its value), or 0.
func plainStringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			return i + 1
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			return 0
		}
	}
	return 0
}

// scanString returns the index just past the string starting at b[i] and
// whether it contains escapes. Control characters are rejected.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c == '\\':
			escaped = true
			i++
			if i >= len(b) {
				return i, escaped, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 || !isHex4(b[i+1:i+5]) {
					return i, escaped, false
				}
				i += 4
			default:
				return i, escaped, false
			}
		case c < 0x20:
			return i, escaped, false
		}
	}
	return i, escaped, false
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if hexVal(c) < 0 {
			return false
		}
	}
	return true
}

func hexVal(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

func hex4(b []byte) rune {
	return hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3])
}

// unescape decodes the content of a JSON string (without its quotes),
// replacing invalid UTF-8 with U+FFFD like encoding/json.
func unescape(b []byte) (string, bool) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(b[i:])
			out = utf8.AppendRune(out, r) // RuneError for an invalid byte
			i += size - 1
			continue
		}
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(b) {
			return "", false
		}
		switch b[i] {
		case '"', '\\', '/':
			out = append(out, b[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if len(b)-i < 5 || !isHex4(b[i+1:i+5]) {
				return "", false
			}
			r := hex4(b[i+1:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if len(b)-i >= 7 && b[i+1] == '\\' && b[i+2] == 'u' && isHex4(b[i+3:i+7]) {
					if d := utf16.DecodeRune(r, hex4(b[i+3:])); d != utf8.RuneError {
						r2 = d
						i += 6
					}
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return string(out), true
}
