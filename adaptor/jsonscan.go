package adaptor

import (
	"bytes"
	"encoding/binary"

	"github.com/tidwall/gjson"
)

// One-pass JSON scanning for the per-chunk hot path. Checking a chunk with gjson.Valid and then picking
// fields out with gjson.Get walks it once per call (four times for an OpenAI chunk, 1.2 µs); ObjectFields
// checks and picks in a single walk. It validates as strictly as gjson.Valid and encoding/json.Valid do
// (the fuzz test holds it to the latter), except that nesting deeper than maxDepth is refused.

// maxDepth bounds nesting, so a hostile line of a million '[' cannot grow the stack without end.
const maxDepth = 512

// ObjectFields reports whether data is one valid JSON object (whitespace around it allowed) and stores
// in vals[i] the raw value of its top-level key names[i] (nil when absent; the first occurrence wins, as
// with gjson). vals must be at least as long as names; they alias data, and mean nothing when it
// returns false.
func ObjectFields(data []byte, names []string, vals [][]byte) bool {
	end, ok := objectFields(data, skipSpace(data, 0), 1, names, vals)
	return ok && skipSpace(data, end) == len(data)
}

// FirstObjectFields is ObjectFields for the first element of the JSON array data (the shape of a chunk's
// choices). It checks that element but not the rest of the array, and reports false when data does not
// start with an object element.
func FirstObjectFields(data []byte, names []string, vals [][]byte) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return false
	}
	_, ok := objectFields(data, skipSpace(data, i+1), 2, names, vals)
	return ok
}

// objectFields checks the object starting at data[i], nested depth deep, and picks its fields (none when
// names is nil); it returns the index after it.
func objectFields(data []byte, i, depth int, names []string, vals [][]byte) (int, bool) {
	for k := range names {
		vals[k] = nil
	}
	if i >= len(data) || data[i] != '{' {
		return i, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return i, false
		}
		kstart := i
		end, escaped, ok := scanString(data, i)
		if !ok {
			return i, false
		}
		key := data[kstart+1 : end-1]
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return i, false
		}
		i = skipSpace(data, i+1)
		vstart := i
		if i, ok = scanValue(data, i, depth); !ok {
			return i, false
		}
		if names != nil { // nil: only checking
			if slot := fieldSlot(names, key, escaped, data[kstart:end]); slot >= 0 && vals[slot] == nil {
				vals[slot] = data[vstart:i]
			}
		}
		var done bool
		if i, done, ok = nextMember(data, i, '}'); !ok || done {
			return i, ok
		}
	}
}

// nextMember reads what follows a member of an object or array ending in close: done at close (i after
// it), or the start of the next member after a comma; not ok on anything else.
func nextMember(data []byte, i int, close byte) (next int, done, ok bool) {
	i = skipSpace(data, i)
	if i >= len(data) {
		return i, false, false
	}
	switch data[i] {
	case ',':
		return skipSpace(data, i+1), false, true
	case close:
		return i + 1, true, true
	}
	return i, false, false
}

// EachElement calls fn with each element of the JSON array data, and reports whether data is one valid
// JSON array (fn may have seen elements before a fault further on).
func EachElement(data []byte, fn func(elem []byte)) bool {
	end, ok := arrayElements(data, skipSpace(data, 0), 1, fn)
	return ok && skipSpace(data, end) == len(data)
}

// arrayElements checks the array starting at data[i], nested depth deep, calling fn (when not nil) with
// each element; it returns the index after the array.
func arrayElements(data []byte, i, depth int, fn func(elem []byte)) (int, bool) {
	if i >= len(data) || data[i] != '[' {
		return i, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return i + 1, true
	}
	for {
		start := i
		end, ok := scanValue(data, i, depth)
		if !ok {
			return end, false
		}
		if fn != nil {
			fn(data[start:end])
		}
		var done bool
		if i, done, ok = nextMember(data, end, ']'); !ok || done {
			return i, ok
		}
	}
}

// fieldSlot is the index of key in names, or -1. An escaped key is compared unescaped.
func fieldSlot(names []string, key []byte, escaped bool, quoted []byte) int {
	k := BytesString(key)
	if escaped {
		k = gjson.ParseBytes(quoted).Str
	}
	for i, n := range names {
		if n == k {
			return i
		}
	}
	return -1
}

// StringValue returns the text of a raw JSON string (aliasing raw when it has no escapes), or "" for
// anything else (null, a number, an absent value).
func StringValue(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	if bytes.IndexByte(raw[1:len(raw)-1], '\\') >= 0 {
		return gjson.ParseBytes(raw).Str
	}
	return BytesString(raw[1 : len(raw)-1])
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanValue checks the value starting at b[i] (no leading whitespace) and returns the index after it.
func scanValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		end, _, ok := scanString(b, i)
		return end, ok
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return i, false
		}
		if c == '{' {
			return objectFields(b, i, depth+1, nil, nil)
		}
		return arrayElements(b, i, depth+1, nil)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(b, i)
	}
	return i, false
}

// scanString checks the string starting at b[i] (the opening quote) and returns the index after its
// closing quote and whether it holds escapes.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	i++
	for {
		// Find the next quote, backslash or control byte: eight plain bytes at a time (answers are
		// mostly long strings), then byte by byte within the group that holds it, and at the tail.
		for i+8 <= len(b) && plain8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			return i, escaped, false
		}
		switch b[i] {
		case '"':
			return i + 1, escaped, true
		case '\\':
			escaped = true
			i++
			if i >= len(b) {
				return i, escaped, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return i, escaped, false
				}
				i += 4
			default:
				return i, escaped, false
			}
			i++
		default: // a control byte
			return i, escaped, false
		}
	}
}

// plain8 reports whether none of the eight bytes in x is a quote, a backslash or a control character
// (below 0x20); bytes of UTF-8 sequences (0x80 and up) are plain. Each test below is exact when it says
// "none" (a borrow can only flag a byte after one that really matches), which is all that is relied on.
func plain8(x uint64) bool {
	control := (x - 0x20*ones8) & ^x & highs8
	return control|hasZero8(x^('"'*ones8))|hasZero8(x^('\\'*ones8)) == 0
}

const ones8, highs8 = 0x0101010101010101, 0x8080808080808080

// hasZero8 is non-zero when one of the eight bytes in v is zero.
func hasZero8(v uint64) uint64 { return (v - ones8) & ^v & highs8 }

// load8 reads s[i:i+8] as a little-endian word (the compiler makes it one load).
func load8(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func scanLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || BytesString(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// scanNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? starting at b[i].
func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
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
