package jsonscan

// MaxDepth bounds nesting, as encoding/json does.
const MaxDepth = 10000

// Space returns the index of the first byte at or after i that is not
// JSON whitespace.
func Space(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// Value returns the end of the JSON value that starts at b[i] (no leading
// whitespace), or -1 when no valid value starts there.
func Value(b []byte, i int) int { return value(b, i, 0) }

func value(b []byte, i, depth int) int {
	if i >= len(b) || depth > MaxDepth {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return String(b, i)
	case c == '{':
		i = Space(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return -1
			}
			if i = String(b, i); i < 0 {
				return -1
			}
			if i = Space(b, i); i >= len(b) || b[i] != ':' {
				return -1
			}
			if i = value(b, Space(b, i+1), depth+1); i < 0 {
				return -1
			}
			if i = Space(b, i); i >= len(b) {
				return -1
			}
			if b[i] == '}' {
				return i + 1
			}
			if b[i] != ',' {
				return -1
			}
			i = Space(b, i+1)
		}
	case c == '[':
		i = Space(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1
		}
		for {
			if i = value(b, i, depth+1); i < 0 {
				return -1
			}
			if i = Space(b, i); i >= len(b) {
				return -1
			}
			if b[i] == ']' {
				return i + 1
			}
			if b[i] != ',' {
				return -1
			}
			i = Space(b, i+1)
		}
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return number(b, i)
	}
	return -1
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// String returns the end of the string that starts at b[i] == '"', or -1.
// Bytes from 0x80 up pass as they are, as encoding/json lets them.
func String(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

func number(b []byte, i int) int {
	digits := func(i int) int {
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == s {
			return -1
		}
		return i
	}
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return -1
	}
	if b[i] == '0' {
		i++
	} else if i = digits(i); i < 0 {
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if i = digits(i + 1); i < 0 {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i = digits(i); i < 0 {
			return -1
		}
	}
	return i
}

// Members calls fn with the raw key (between its quotes, escapes as they
// are) and the raw value of each member of the object that b holds, in
// order, and reports whether b is one valid JSON object, with nothing but
// whitespace around it. It stops early, reporting false, when fn does.
func Members(b []byte, fn func(key, val []byte) bool) bool {
	i := Space(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = Space(b, i+1)
	if i < len(b) && b[i] == '}' {
		return Space(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return false
		}
		ks := i
		if i = String(b, i); i < 0 {
			return false
		}
		key := b[ks+1 : i-1]
		if i = Space(b, i); i >= len(b) || b[i] != ':' {
			return false
		}
		vs := Space(b, i+1)
		if i = value(b, vs, 1); i < 0 {
			return false
		}
		if !fn(key, b[vs:i]) {
			return false
		}
		if i = Space(b, i); i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return Space(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return false
		}
		i = Space(b, i+1)
	}
}

// PlainString returns the text of a JSON string made of printable ASCII
// without escapes; ok is false for any other value, which needs
// encoding/json to be read.
func PlainString(v []byte) (s string, ok bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	for _, c := range v[1 : len(v)-1] {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return "", false
		}
	}
	return string(v[1 : len(v)-1]), true
}

// Fields walks the members of the object that b holds, as Members does,
// for a decoder of a fixed set of fields: it calls set with the index in
// names of each member's key. It fails (ok false) on a key not in names,
// a key seen before, a null value, or a false from set; keys are compared
// as raw bytes. seen has bit i set for each names[i] found (at most 64).
func Fields(b []byte, names []string, set func(field int, val []byte) bool) (seen uint64, ok bool) {
	ok = Members(b, func(key, val []byte) bool {
		if val[0] == 'n' {
			return false
		}
		for i, name := range names {
			if string(key) == name {
				if seen&(1<<i) != 0 || !set(i, val) {
					return false
				}
				seen |= 1 << i
				return true
			}
		}
		return false
	})
	return seen, ok
}
