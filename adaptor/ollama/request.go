package ollama

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// reqFields are the top-level request fields the translation reads, gathered in one pass.
type reqFields struct {
	messages, tools, toolChoice, responseFormat         gjson.Result
	temperature, topP, topK, seed, stop, presence, freq gjson.Result
	maxTokens, maxCompletionTokens, keepAlive, think    gjson.Result
}

// buildBody rewrites the client's OpenAI request as an Ollama /api/chat body:
//
//	{"model","stream","messages","tools","format","options":{...},"keep_alive","think"}
//
// stream is always sent (Ollama streams by default).
func (a *Adaptor) buildBody(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request, stream bool) ([]byte, error) {
	var f reqFields
	gjson.ParseBytes(req.Body).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "messages":
			f.messages = v
		case "tools":
			f.tools = v
		case "tool_choice":
			f.toolChoice = v
		case "response_format":
			f.responseFormat = v
		case "temperature":
			f.temperature = v
		case "top_p":
			f.topP = v
		case "top_k":
			f.topK = v
		case "seed":
			f.seed = v
		case "stop":
			f.stop = v
		case "presence_penalty":
			f.presence = v
		case "frequency_penalty":
			f.freq = v
		case "max_tokens":
			f.maxTokens = v
		case "max_completion_tokens":
			f.maxCompletionTokens = v
		case "keep_alive":
			f.keepAlive = v
		case "think":
			f.think = v
		}
		return true
	})

	model := req.UpstreamModel
	if model == "" {
		model = req.Model
	}
	b := make([]byte, 0, len(req.Body)+256)
	b = append(b, `{"model":`...)
	b = adaptor.AppendJSONString(b, model)
	if stream {
		b = append(b, `,"stream":true`...)
	} else {
		b = append(b, `,"stream":false`...)
	}
	b = append(b, `,"messages":`...)
	var err error
	if b, err = a.appendMessages(ctx, b, f.messages); err != nil {
		return nil, err
	}
	b = appendTools(b, f.tools, f.toolChoice)
	if f.responseFormat.IsObject() {
		switch f.responseFormat.Get("type").Str {
		case "json_object":
			b = append(b, `,"format":"json"`...)
		case "json_schema":
			if s := f.responseFormat.Get("json_schema.schema"); s.IsObject() {
				b = append(b, `,"format":`...)
				b = append(b, s.Raw...)
			} else {
				b = append(b, `,"format":"json"`...)
			}
		}
	}
	b = appendOptions(b, ch, &f)
	switch {
	case f.keepAlive.Type == gjson.String || f.keepAlive.Type == gjson.Number:
		b = append(b, `,"keep_alive":`...)
		b = append(b, f.keepAlive.Raw...)
	case ch.Credentials[CredKeepAlive] != "":
		v := strings.TrimSpace(ch.Credentials[CredKeepAlive])
		b = append(b, `,"keep_alive":`...)
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			b = strconv.AppendInt(b, n, 10)
		} else {
			b = adaptor.AppendJSONString(b, v)
		}
	}
	if f.think.Type == gjson.True || f.think.Type == gjson.False || f.think.Type == gjson.String {
		b = append(b, `,"think":`...)
		b = append(b, f.think.Raw...)
	}
	return append(b, '}'), nil
}

// appendTools passes the tools through (Ollama takes OpenAI's shape). Ollama has no tool_choice: "none"
// is honoured by offering no tools, a named function by offering only that one; "auto" and "required"
// offer them all.
func appendTools(b []byte, tools, choice gjson.Result) []byte {
	if !tools.IsArray() || choice.Str == "none" {
		return b
	}
	only := ""
	if choice.IsObject() {
		only = choice.Get("function.name").Str
	}
	n := 0
	tools.ForEach(func(_, t gjson.Result) bool {
		if only != "" && t.Get("function.name").Str != only {
			return true
		}
		if n == 0 {
			b = append(b, `,"tools":[`...)
		} else {
			b = append(b, ',')
		}
		b = append(b, t.Raw...)
		n++
		return true
	})
	if n > 0 {
		b = append(b, ']')
	}
	return b
}

// appendOptions writes "options" when any sampling setting is present.
func appendOptions(b []byte, ch *adaptor.Channel, f *reqFields) []byte {
	start := len(b)
	b = append(b, `,"options":{`...)
	open := len(b)
	field := func(name string) {
		if len(b) > open {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	num := func(name string, v gjson.Result) {
		if v.Type == gjson.Number {
			field(name)
			b = append(b, v.Raw...)
		}
	}
	num("temperature", f.temperature)
	num("top_p", f.topP)
	if f.topK.Type == gjson.Number {
		field("top_k")
		b = strconv.AppendInt(b, f.topK.Int(), 10)
	}
	predict := f.maxCompletionTokens
	if predict.Type != gjson.Number {
		predict = f.maxTokens
	}
	if predict.Type == gjson.Number {
		field("num_predict")
		b = strconv.AppendInt(b, predict.Int(), 10)
	} else if v := strings.TrimSpace(ch.Credentials[CredMaxTokens]); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			field("num_predict")
			b = strconv.AppendInt(b, int64(n), 10)
		}
	}
	if f.seed.Type == gjson.Number {
		field("seed")
		b = strconv.AppendInt(b, f.seed.Int(), 10)
	}
	switch {
	case f.stop.Type == gjson.String:
		field("stop")
		b = append(b, '[')
		b = append(b, f.stop.Raw...)
		b = append(b, ']')
	case f.stop.IsArray():
		n := 0
		f.stop.ForEach(func(_, s gjson.Result) bool {
			if s.Type != gjson.String {
				return true
			}
			if n == 0 {
				field("stop")
				b = append(b, '[')
			} else {
				b = append(b, ',')
			}
			b = append(b, s.Raw...)
			n++
			return true
		})
		if n > 0 {
			b = append(b, ']')
		}
	}
	num("presence_penalty", f.presence)
	num("frequency_penalty", f.freq)
	if v := strings.TrimSpace(ch.Credentials[CredNumCtx]); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			field("num_ctx")
			b = strconv.AppendInt(b, int64(n), 10)
		}
	}
	if len(b) == open {
		return b[:start]
	}
	return append(b, '}')
}

// callName remembers an assistant tool call so a later tool message can name its tool.
type callName struct{ id, name string }

// appendMessages writes the messages array.
func (a *Adaptor) appendMessages(ctx context.Context, b []byte, msgs gjson.Result) ([]byte, error) {
	b = append(b, '[')
	var calls []callName
	var err error
	i := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		if i > 0 {
			b = append(b, ',')
		}
		b, err = a.appendMessage(ctx, b, m, i, &calls)
		i++
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	return append(b, ']'), nil
}

func msgParam(i int, suffix string) string {
	return "messages[" + strconv.Itoa(i) + "]" + suffix
}

// appendMessage writes one message: {"role","content","images"?,"tool_calls"?,"tool_name"?}.
func (a *Adaptor) appendMessage(ctx context.Context, b []byte, m gjson.Result, i int, calls *[]callName) ([]byte, error) {
	var role, content, toolCalls, functionCall, toolCallID, name gjson.Result
	m.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "role":
			role = v
		case "content":
			content = v
		case "tool_calls":
			toolCalls = v
		case "function_call":
			functionCall = v
		case "tool_call_id":
			toolCallID = v
		case "name":
			name = v
		}
		return true
	})
	r := role.Str
	switch r {
	case "system", "user", "assistant", "tool":
	case "developer":
		r = "system"
	case "function": // the legacy tool result
		r = "tool"
	default:
		return nil, adaptor.BadRequest(msgParam(i, ".role"), "unsupported role "+strconv.Quote(role.String()))
	}
	b = append(b, `{"role":"`...)
	b = append(b, r...)
	b = append(b, `","content":`...)
	var err error
	if b, err = a.appendContent(ctx, b, content, i); err != nil {
		return nil, err
	}
	switch r {
	case "assistant":
		if toolCalls.IsArray() && len(toolCalls.Array()) > 0 {
			b = append(b, `,"tool_calls":[`...)
			j := 0
			toolCalls.ForEach(func(_, tc gjson.Result) bool {
				if j > 0 {
					b = append(b, ',')
				}
				fn := tc.Get("function")
				b, err = appendToolCall(b, fn.Get("name").Str, fn.Get("arguments"), msgParam(i, ".tool_calls["+strconv.Itoa(j)+"].function.arguments"))
				*calls = append(*calls, callName{id: tc.Get("id").Str, name: fn.Get("name").Str})
				j++
				return err == nil
			})
			if err != nil {
				return nil, err
			}
			b = append(b, ']')
		} else if functionCall.IsObject() {
			b = append(b, `,"tool_calls":[`...)
			if b, err = appendToolCall(b, functionCall.Get("name").Str, functionCall.Get("arguments"), msgParam(i, ".function_call.arguments")); err != nil {
				return nil, err
			}
			b = append(b, ']')
		}
	case "tool":
		// tool_name: the name of the tool whose result this is, from the assistant call it answers.
		tool := name.Str
		if tool == "" && toolCallID.Str != "" {
			for j := len(*calls) - 1; j >= 0; j-- {
				if (*calls)[j].id == toolCallID.Str {
					tool = (*calls)[j].name
					break
				}
			}
		}
		if tool != "" {
			b = append(b, `,"tool_name":`...)
			b = adaptor.AppendJSONString(b, tool)
		}
	}
	return append(b, '}'), nil
}

// appendToolCall writes {"function":{"name","arguments":{...}}}: Ollama wants the arguments as a JSON
// object where OpenAI has a JSON string.
func appendToolCall(b []byte, name string, args gjson.Result, param string) ([]byte, error) {
	b = append(b, `{"function":{"name":`...)
	b = adaptor.AppendJSONString(b, name)
	b = append(b, `,"arguments":`...)
	switch {
	case args.IsObject():
		b = append(b, args.Raw...)
	case args.Type == gjson.String:
		s := strings.TrimSpace(args.Str)
		switch {
		case s == "":
			b = append(b, "{}"...)
		case s[0] == '{' && gjson.Valid(s):
			b = append(b, s...)
		default:
			return nil, adaptor.BadRequest(param, "tool call arguments must be a JSON object for ollama")
		}
	case !args.Exists() || args.Type == gjson.Null:
		b = append(b, "{}"...)
	default:
		return nil, adaptor.BadRequest(param, "tool call arguments must be a JSON object for ollama")
	}
	return append(b, "}}"...), nil
}

// appendContent writes the content string (text parts joined by newlines) and, after it, the message's
// "images" array of raw base64 when it has image parts.
func (a *Adaptor) appendContent(ctx context.Context, b []byte, content gjson.Result, i int) ([]byte, error) {
	switch {
	case content.Type == gjson.String:
		return append(b, content.Raw...), nil // a valid JSON string literal already
	case !content.Exists() || content.Type == gjson.Null:
		return append(b, `""`...), nil
	case !content.IsArray():
		return nil, adaptor.BadRequest(msgParam(i, ".content"), "content must be a string or an array of parts")
	}
	// Text first: raw string literals concatenated without their quotes stay valid JSON.
	b = append(b, '"')
	n, images := 0, 0
	var err error
	j := 0
	content.ForEach(func(_, p gjson.Result) bool {
		switch typ := p.Get("type").Str; typ {
		case "text":
			t := p.Get("text")
			if t.Type == gjson.String && len(t.Raw) > 2 {
				if n > 0 {
					b = append(b, `\n`...)
				}
				b = append(b, t.Raw[1:len(t.Raw)-1]...)
				n++
			}
		case "image_url":
			images++
		default:
			err = adaptor.BadRequest(msgParam(i, ".content["+strconv.Itoa(j)+"]"), "ollama cannot take content parts of type "+strconv.Quote(typ))
		}
		j++
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	b = append(b, '"')
	if images == 0 {
		return b, nil
	}
	b = append(b, `,"images":[`...)
	j, k := 0, 0
	content.ForEach(func(_, p gjson.Result) bool {
		if p.Get("type").Str == "image_url" {
			u := p.Get("image_url")
			if u.IsObject() {
				u = u.Get("url")
			}
			if u.Type != gjson.String || u.Str == "" {
				err = adaptor.BadRequest(msgParam(i, ".content["+strconv.Itoa(j)+"].image_url.url"), "image_url.url is required")
				return false
			}
			var img adaptor.Image
			if img, err = a.fetcher().Resolve(ctx, u.Str); err != nil {
				if ae, ok := err.(*adaptor.Error); ok && ae.Status == 400 {
					ae.Param = msgParam(i, ".content["+strconv.Itoa(j)+"].image_url.url")
				}
				return false
			}
			if k > 0 {
				b = append(b, ',')
			}
			b = adaptor.AppendJSONString(b, img.Base64)
			k++
		}
		j++
		return true
	})
	if err != nil {
		return nil, err
	}
	return append(b, ']'), nil
}

// parseCreated turns Ollama's created_at (RFC 3339 with nanoseconds) into Unix seconds (0 when absent
// or malformed).
func parseCreated(s string) int64 {
	if s == "" {
		return 0
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0
	}
	return t.Unix()
}
