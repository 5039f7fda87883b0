package rawjson

// skipStringFast returns the index just past the string starting at b[i],
// without validating its escapes.

func skipStringFast(b []byte, i int) (int, bool) {
	for i++; i < len(b); {
		c := b[i]
		i++
		if c == '\\' {
			i++
		} else if c == '"' {
			return i, true
		}
	}
	return len(b), false
}

// special marks the bytes skipFast must look at outside strings.
var special = [256]bool{'"': true, '{': true, '[': true, '}': true, ']': true}

// skipFast returns the index just past the value starting at b[i]. It
// matches brackets and strings but does not check the grammar of scalars or
// the kind of the closing bracket: accessors use it to step over values of a
// document the host produced, which is much cheaper than skipValue in Wasm.
func skipFast(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		return skipStringFast(b, i)
	case '{', '[':
	default:
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || isSpace(c) {
				break
			}
			j++
		}
		return j, j > i
	}
	depth := 0
	for i < len(b) {
		c := b[i]
		i++
		if !special[c] {
			continue
		}
		switch c {
		case '"':
			for i < len(b) {
				c = b[i]
				i++
				if c == '\\' {
					i++
				} else if c == '"' {
					break
				}
			}
		case '{', '[':
			depth++
		default:
			depth--
			if depth == 0 {
				return i, true
			}
		}
	}
	return len(b), false
}
