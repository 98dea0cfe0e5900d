package spark

import (
	"strconv"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// Spark's documented parameter ranges.
const (
	minTemperature = 0.01 // temperature is (0, 1]: 0 is refused, so it becomes the smallest useful value
	maxTemperature = 1.0
	maxUID         = 32
)

// requestFrame translates an OpenAI request into Spark's one request frame. Field order is fixed so the
// frame is byte-for-byte reproducible (golden tests).
func requestFrame(appID string, t target, req *adaptor.Request) ([]byte, error) {
	body := adaptor.BytesString(req.Body)
	if !gjson.Valid(body) {
		return nil, adaptor.BadRequest("", "request body is not JSON")
	}
	root := gjson.Parse(body)
	messages := root.Get("messages")
	if !messages.IsArray() {
		return nil, adaptor.BadRequest("messages", "messages must be an array")
	}

	b := make([]byte, 0, 256+len(req.Body))
	b = append(b, `{"header":{"app_id":`...)
	b = adaptor.AppendJSONString(b, appID)
	uid := req.User
	if uid == "" {
		uid = root.Get("user").Str
	}
	if uid != "" {
		b = append(b, `,"uid":`...)
		b = adaptor.AppendJSONString(b, truncate(uid, maxUID))
	}

	b = append(b, `},"parameter":{"chat":{"domain":`...)
	b = adaptor.AppendJSONString(b, t.domain)
	if v := root.Get("temperature"); v.Type == gjson.Number {
		temp := min(max(v.Float(), minTemperature), maxTemperature)
		b = append(b, `,"temperature":`...)
		b = strconv.AppendFloat(b, temp, 'f', -1, 64)
	}
	maxTok := root.Get("max_completion_tokens")
	if maxTok.Type != gjson.Number {
		maxTok = root.Get("max_tokens")
	}
	if n := maxTok.Int(); maxTok.Type == gjson.Number && n >= 1 {
		if t.maxTokens > 0 && n > int64(t.maxTokens) {
			n = int64(t.maxTokens)
		}
		b = append(b, `,"max_tokens":`...)
		b = strconv.AppendInt(b, n, 10)
	}
	// top_k is not OpenAI's, but clients pass it through extra_body; Spark takes [1, 6].
	if v := root.Get("top_k"); v.Type == gjson.Number {
		b = append(b, `,"top_k":`...)
		b = strconv.AppendInt(b, min(max(v.Int(), 1), 6), 10)
	}

	b = append(b, `}},"payload":{"message":{"text":[`...)
	var err error
	b, err = appendMessages(b, messages)
	if err != nil {
		return nil, err
	}
	b = append(b, `]}`...)
	if tools := root.Get("tools"); tools.IsArray() && root.Get("tool_choice").Str != "none" {
		b = appendFunctions(b, tools)
	}
	b = append(b, "}}"...)
	return b, nil
}

// appendMessages writes payload.message.text: every system (and developer) text joined into one
// leading system entry, then the conversation with content flattened to strings. Spark has no tool
// roles, so assistant tool calls are written out as text and tool results are sent as user turns.
func appendMessages(b []byte, messages gjson.Result) ([]byte, error) {
	var system []byte
	var err *adaptor.Error
	type turn struct{ role, text string }
	turns := make([]turn, 0, 8)
	messages.ForEach(func(_, m gjson.Result) bool {
		role := m.Get("role").Str
		text := adaptor.MessageText(m.Get("content"))
		switch role {
		case "system", "developer":
			if text != "" {
				if len(system) > 0 {
					system = append(system, "\n\n"...)
				}
				system = append(system, text...)
			}
			return true
		case "user":
		case "assistant":
			text = withToolCalls(text, m.Get("tool_calls"))
		case "tool", "function":
			role = "user"
		default:
			err = adaptor.BadRequest("messages", "unsupported message role "+strconv.Quote(role))
			return false
		}
		if text != "" { // Spark refuses empty turns; an empty one says nothing anyway
			turns = append(turns, turn{role, text})
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(turns) == 0 {
		return nil, adaptor.BadRequest("messages", "messages have no text for Spark")
	}
	n := 0
	if len(system) > 0 {
		b = append(b, `{"role":"system","content":`...)
		b = adaptor.AppendJSONString(b, adaptor.BytesString(system))
		b = append(b, '}')
		n++
	}
	for _, t := range turns {
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"role":`...)
		b = adaptor.AppendJSONString(b, t.role)
		b = append(b, `,"content":`...)
		b = adaptor.AppendJSONString(b, t.text)
		b = append(b, '}')
		n++
	}
	return b, nil
}

// withToolCalls appends an assistant message's tool calls as `name(arguments)` lines, so the history
// keeps what was called.
func withToolCalls(text string, calls gjson.Result) string {
	if !calls.IsArray() {
		return text
	}
	out := []byte(text)
	calls.ForEach(func(_, c gjson.Result) bool {
		f := c.Get("function")
		if f.Get("name").Str == "" {
			return true
		}
		if len(out) > 0 {
			out = append(out, '\n')
		}
		out = append(out, f.Get("name").Str...)
		out = append(out, '(')
		out = append(out, f.Get("arguments").Str...)
		out = append(out, ')')
		return true
	})
	return string(out)
}

// appendFunctions writes OpenAI function tools as payload.functions.text (Spark's function calling);
// other tool types have no Spark equivalent and are left out.
func appendFunctions(b []byte, tools gjson.Result) []byte {
	start := len(b)
	b = append(b, `,"functions":{"text":[`...)
	n := 0
	tools.ForEach(func(_, tool gjson.Result) bool {
		if typ := tool.Get("type").Str; typ != "" && typ != "function" {
			return true
		}
		f := tool.Get("function")
		name := f.Get("name").Str
		if name == "" {
			return true
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, `{"name":`...)
		b = adaptor.AppendJSONString(b, name)
		if d := f.Get("description"); d.Type == gjson.String {
			b = append(b, `,"description":`...)
			b = adaptor.AppendJSONString(b, d.Str)
		}
		b = append(b, `,"parameters":`...)
		if p := f.Get("parameters"); p.IsObject() {
			b = append(b, p.Raw...)
		} else {
			b = append(b, `{"type":"object","properties":{}}`...)
		}
		b = append(b, '}')
		return true
	})
	if n == 0 {
		return b[:start]
	}
	return append(b, "]}"...)
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
