package spark

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// decoder turns Spark response frames into OpenAI chunk events. It owns the reused event, chunk
// builder and tool-call scratch, so a text frame costs no allocation of its own.
type decoder struct {
	b     adaptor.ChunkBuilder
	ev    adaptor.Event
	tools []byte
	// streamed reports that answer text went out: a content-audit error then ends the answer with
	// finish_reason content_filter instead of failing a half-delivered stream.
	streamed bool
	// called reports that Spark returned a function call, so the final frame finishes with tool_calls.
	called bool
}

// decode translates one frame. It returns a nil event for a frame with nothing for the client (an
// empty piece, a search-plugin frame); last is true for the final frame (status 2) and for a
// content-filter stop. Errors are *adaptor.Error.
func (d *decoder) decode(frame []byte) (ev *adaptor.Event, last bool, err error) {
	s := adaptor.BytesString(frame)
	if !gjson.Valid(s) {
		return nil, false, adaptor.UpstreamError(502, "bad_frame", "malformed Spark frame")
	}
	f := scan(s)
	if code := intOf(f.code); code != 0 {
		return d.codeError(code, f.message, f.sid)
	}
	last = intOf(f.status) == 2 || intOf(f.choicesStatus) == 2

	delta := adaptor.Delta{Content: f.content}
	if f.call.IsObject() {
		delta.ToolCalls = d.toolCalls(f.call)
		d.called = true
	}
	if delta.Content == "" && delta.ToolCalls == nil && !last && !f.usage.IsObject() {
		return nil, false, nil
	}
	if last {
		delta.FinishReason = "stop"
		if d.called {
			delta.FinishReason = "tool_calls"
		}
	}
	d.ev = adaptor.Event{Choices: d.b.Choices(delta)}
	if f.usage.IsObject() {
		// payload.usage.text has OpenAI's field names; question_tokens is reserved and ignored.
		d.ev.Usage, d.ev.HasUsage = adaptor.ParseOpenAIUsage(f.usage), true
	}
	if delta.Content != "" {
		d.streamed = true
	}
	return &d.ev, last, nil
}

// fields are the parts of a frame the relay reads; the numbers stay raw JSON until asked for.
type fields struct {
	code, status, choicesStatus string
	message, sid, content       string
	call, usage                 gjson.Result
}

// intOf reads a raw JSON number leniently (a numeric string counts); the usual one-digit values skip
// float parsing.
func intOf(raw string) int64 {
	if len(raw) == 1 && raw[0] >= '0' && raw[0] <= '9' {
		return int64(raw[0] - '0')
	}
	if raw == "" {
		return 0
	}
	return gjson.Parse(raw).Int()
}

// strOf reads a raw JSON string; only one with escapes is unescaped (and allocates).
func strOf(raw string) string {
	if len(raw) >= 2 && raw[0] == '"' && strings.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1]
	}
	return gjson.Parse(raw).Str
}

// scan picks the fields out of a frame that gjson.Valid accepted, in one forward pass. Walking gjson's
// ForEach instead re-reads every nested object once per level (each value is squashed before it is
// visited), which made the scan several times the cost of the validation. Leaf values are kept raw and
// read through gjson only when needed (escaped strings, multi-digit numbers). FuzzScan holds it to
// gjson's own reading.
func scan(s string) (f fields) {
	c := cursor{s: s}
	c.object(func(key string) {
		switch key {
		case "header":
			c.object(func(key string) {
				switch key {
				case "code":
					f.code = c.value()
				case "status":
					f.status = c.value()
				case "message":
					f.message = strOf(c.value())
				case "sid":
					f.sid = strOf(c.value())
				}
			})
		case "payload":
			c.object(func(key string) {
				switch key {
				case "choices":
					f.scanChoices(&c)
				case "usage":
					c.object(func(key string) {
						if key == "text" {
							f.usage = gjson.Parse(c.value())
						}
					})
				}
			})
		}
	})
	return f
}

func (f *fields) scanChoices(c *cursor) {
	c.object(func(key string) {
		switch key {
		case "status":
			f.choicesStatus = c.value()
		case "text":
			c.first(func() { // text[0] only: Spark sends one
				c.object(func(key string) {
					switch key {
					case "content":
						f.content = strOf(c.value())
					case "function_call":
						f.call = gjson.Parse(c.value())
					}
				})
			})
		}
	})
}

// cursor walks JSON that is known to be valid. Every method is bounded by the input's length, so
// even unexpected input cannot make it loop or index out of range.
type cursor struct {
	s string
	i int
}

// peek skips whitespace and returns the next byte (0 at the end).
func (c *cursor) peek() byte {
	for c.i < len(c.s) {
		switch b := c.s[c.i]; b {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return b
		}
	}
	return 0
}

// str consumes the string at the cursor and returns its raw text between the quotes.
func (c *cursor) str() string {
	start := c.i + 1
	for j := start; j < len(c.s); j++ {
		k := strings.IndexByte(c.s[j:], '"')
		if k < 0 {
			break
		}
		j += k
		// The quote ends the string unless an odd run of backslashes escapes it.
		n := 0
		for b := j - 1; b >= start && c.s[b] == '\\'; b-- {
			n++
		}
		if n%2 == 0 {
			c.i = j + 1
			return c.s[start:j]
		}
	}
	c.i = len(c.s)
	return ""
}

// value consumes one value and returns its raw JSON.
func (c *cursor) value() string {
	if c.peek() == 0 {
		return ""
	}
	start := c.i
	switch c.s[c.i] {
	case '"':
		c.str()
	case '{', '[':
		depth := 0
		for c.i < len(c.s) {
			switch c.s[c.i] {
			case '"':
				c.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					c.i++
					return c.s[start:c.i]
				}
			}
			c.i++
		}
	default: // number, true, false, null
		for c.i < len(c.s) {
			switch c.s[c.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return c.s[start:c.i]
			}
			c.i++
		}
	}
	return c.s[start:c.i]
}

// object calls fn for each member of the object at the cursor, with the cursor on the member's value;
// a value fn does not read is skipped. A non-object value is skipped whole.
func (c *cursor) object(fn func(key string)) {
	if c.peek() != '{' {
		c.value()
		return
	}
	c.i++
	for {
		switch c.peek() {
		case ',':
			c.i++
			continue
		case '"':
		default: // '}' or the end
			c.i = min(c.i+1, len(c.s))
			return
		}
		at := c.i
		key := c.str()
		if strings.IndexByte(key, '\\') >= 0 { // an escaped key (never seen from Spark) compares unescaped
			key = gjson.Parse(c.s[at:c.i]).Str
		}
		if c.peek() != ':' {
			c.i = len(c.s)
			return
		}
		c.i++
		start := c.i
		fn(key)
		if c.i == start {
			c.value()
		}
	}
}

// first calls fn with the cursor on the first element of the array at the cursor and skips the rest.
func (c *cursor) first(fn func()) {
	if c.peek() != '[' {
		c.value()
		return
	}
	c.i++
	if c.peek() != ']' {
		start := c.i
		fn()
		if c.i == start {
			c.value()
		}
	}
	for {
		switch c.peek() {
		case ',':
			c.i++
			c.value()
		default: // ']' or the end
			c.i = min(c.i+1, len(c.s))
			return
		}
	}
}

// toolCalls renders Spark's single function_call as an OpenAI tool_calls delta.
func (d *decoder) toolCalls(fc gjson.Result) []byte {
	args := fc.Get("arguments")
	a := args.Str
	if args.Type != gjson.String {
		a = args.Raw // an object instead of the documented string
	}
	b := append(d.tools[:0], '[')
	b = adaptor.AppendToolCallStart(b, 0, adaptor.NewToolCallID(), fc.Get("name").Str, a)
	d.tools = append(b, ']')
	return d.tools
}

// Content-audit codes: input/output refused, conversation tending to violations.
func contentFilterCode(code int64) bool {
	return code == 10013 || code == 10014 || code == 10019 || code == 10021
}

// codeError handles a frame with header.code != 0. A content-audit stop after text went out ends the
// answer as content_filter (OpenAI's own behaviour); anything else is an error carrying Spark's code.
func (d *decoder) codeError(code int64, msg, sid string) (*adaptor.Event, bool, error) {
	if contentFilterCode(code) && d.streamed {
		d.ev = adaptor.Event{Choices: d.b.Choices(adaptor.Delta{FinishReason: "content_filter"})}
		return &d.ev, true, nil
	}
	return nil, false, CodeError(code, msg, sid)
}

// CodeStatus maps a Spark error code to the HTTP status the client sees.
func CodeStatus(code int64) int {
	switch code {
	case 10003, 10004, 10005, 10163: // malformed or invalid request
		return 400
	case 10013, 10014, 10019, 10021: // content audit
		return 400
	case 10907: // history + question over the token limit
		return 400
	case 10015, 10016: // appid blacklisted / not authorised for this product
		return 403
	case 10006, 10007, 11200, 11201, 11202, 11203: // concurrency, flow, licence volume, quota, rate
		return 429
	case 10008, 10110: // capacity insufficient, busy
		return 503
	}
	return 502
}

// CodeError is the *adaptor.Error for a Spark error frame: Code is Spark's numeric code, the message
// Spark's own with the code and session id (what iFlytek support asks for).
func CodeError(code int64, msg, sid string) *adaptor.Error {
	if msg == "" {
		msg = "Spark error"
	}
	c := strconv.FormatInt(code, 10)
	msg += " (spark code " + c
	if sid != "" {
		msg += ", sid " + sid
	}
	return adaptor.UpstreamError(CodeStatus(code), c, msg+")")
}
