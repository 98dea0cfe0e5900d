package gemini

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// The OpenAI request is read with gjson (views into the client's body, no unmarshal) and the Gemini
// body is written with byte appends.

// fields are the top-level request fields the translation reads, found in one pass over the body.
type fields struct {
	messages, temperature, topP, topK, maxTokens, maxCompletion, stop, seed gjson.Result
	presence, frequency, responseFormat, tools, toolChoice                  gjson.Result
}

func scanFields(root gjson.Result) fields {
	var f fields
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "messages":
			f.messages = v
		case "temperature":
			f.temperature = v
		case "top_p":
			f.topP = v
		case "top_k":
			f.topK = v
		case "max_tokens":
			f.maxTokens = v
		case "max_completion_tokens":
			f.maxCompletion = v
		case "stop":
			f.stop = v
		case "seed":
			f.seed = v
		case "presence_penalty":
			f.presence = v
		case "frequency_penalty":
			f.frequency = v
		case "response_format":
			f.responseFormat = v
		case "tools":
			f.tools = v
		case "tool_choice":
			f.toolChoice = v
		}
		return true
	})
	return f
}

// toolName remembers the function name of an earlier assistant tool call, for tool results.
type toolName struct{ id, name string }

// writer builds the contents array, merging consecutive turns of the same role.
type writer struct {
	b      []byte
	role   string // role of the open content ("" when none is open)
	nparts int    // parts written to the open content
	nturns int    // contents written
	calls  []toolName
}

// part prepares a new part in a turn of role, opening the turn (or continuing the open one).
func (w *writer) part(role string) {
	if w.role != role {
		if w.role != "" {
			w.b = append(w.b, "]}"...)
		}
		if w.nturns > 0 {
			w.b = append(w.b, ',')
		}
		w.b = append(w.b, `{"role":"`...)
		w.b = append(w.b, role...)
		w.b = append(w.b, `","parts":[`...)
		w.role, w.nparts = role, 0
		w.nturns++
	}
	if w.nparts > 0 {
		w.b = append(w.b, ',')
	}
	w.nparts++
}

func (w *writer) close() {
	if w.role != "" {
		w.b = append(w.b, "]}"...)
		w.role = ""
	}
}

// text adds a text part; Gemini rejects empty text parts, so they are left out.
func (w *writer) text(role, s string) {
	if s == "" {
		return
	}
	w.part(role)
	w.b = append(w.b, `{"text":`...)
	w.b = adaptor.AppendJSONString(w.b, s)
	w.b = append(w.b, '}')
}

func (w *writer) inline(role, mimeType, data string) {
	w.part(role)
	w.b = append(w.b, `{"inlineData":{"mimeType":`...)
	w.b = adaptor.AppendJSONString(w.b, mimeType)
	w.b = append(w.b, `,"data":`...)
	w.b = adaptor.AppendJSONString(w.b, data)
	w.b = append(w.b, "}}"...)
}

func (w *writer) lookup(id string) string {
	for i := len(w.calls) - 1; i >= 0; i-- {
		if w.calls[i].id == id {
			return w.calls[i].name
		}
	}
	return ""
}

func at(i int) string { return "messages[" + strconv.Itoa(i) + "]" }

// buildRequest translates an OpenAI chat request body into a Gemini GenerateContentRequest body.
// defaultMax is the channel's max_tokens default ("" for none).
func buildRequest(ctx context.Context, body []byte, defaultMax string) ([]byte, error) {
	root := gjson.Parse(adaptor.BytesString(body))
	f := scanFields(root)
	if !f.messages.IsArray() {
		return nil, adaptor.BadRequest("messages", "messages must be an array")
	}
	w := writer{b: make([]byte, 0, len(body)+256)}
	w.b = append(w.b, '{')

	// systemInstruction: every system/developer message, wherever it stands, one part per text.
	nsys := 0
	sysText := func(s string) {
		if s == "" {
			return
		}
		if nsys == 0 {
			w.b = append(w.b, `"systemInstruction":{"parts":[`...)
		} else {
			w.b = append(w.b, ',')
		}
		w.b = append(w.b, `{"text":`...)
		w.b = adaptor.AppendJSONString(w.b, s)
		w.b = append(w.b, '}')
		nsys++
	}
	f.messages.ForEach(func(_, m gjson.Result) bool {
		if r := m.Get("role").Str; r != "system" && r != "developer" {
			return true
		}
		c := m.Get("content")
		if c.Type == gjson.String {
			sysText(c.Str)
			return true
		}
		c.ForEach(func(_, p gjson.Result) bool {
			if p.Get("type").Str == "text" {
				sysText(p.Get("text").Str)
			}
			return true
		})
		return true
	})
	if nsys > 0 {
		w.b = append(w.b, "]},"...)
	}

	w.b = append(w.b, `"contents":[`...)
	var err error
	i := -1
	f.messages.ForEach(func(_, m gjson.Result) bool {
		i++
		err = w.message(ctx, i, m)
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	w.close()
	if w.nturns == 0 {
		return nil, adaptor.BadRequest("messages", "messages must hold at least one non-empty user, assistant or tool message")
	}
	w.b = append(w.b, ']')

	if w.b, err = appendGenerationConfig(w.b, &f, defaultMax); err != nil {
		return nil, err
	}
	w.b = appendTools(w.b, &f)
	w.b = append(w.b, '}')
	return w.b, nil
}

// message writes one OpenAI message as parts of a user or model turn.
func (w *writer) message(ctx context.Context, i int, m gjson.Result) error {
	var role, content, toolCalls, toolCallID, name, functionCall gjson.Result
	m.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "role":
			role = v
		case "content":
			content = v
		case "tool_calls":
			toolCalls = v
		case "tool_call_id":
			toolCallID = v
		case "name":
			name = v
		case "function_call":
			functionCall = v
		}
		return true
	})
	switch role.Str {
	case "system", "developer":
		return nil
	case "user":
		return w.content(ctx, i, "user", content)
	case "assistant":
		if err := w.content(ctx, i, "model", content); err != nil {
			return err
		}
		j := -1
		toolCalls.ForEach(func(_, tc gjson.Result) bool {
			j++
			fn := tc.Get("function")
			n := fn.Get("name").Str
			w.calls = append(w.calls, toolName{id: tc.Get("id").Str, name: n})
			w.functionCall(n, fn.Get("arguments").Str)
			return true
		})
		if functionCall.IsObject() { // the deprecated single function_call
			n := functionCall.Get("name").Str
			w.calls = append(w.calls, toolName{name: n})
			w.functionCall(n, functionCall.Get("arguments").Str)
		}
		return nil
	case "tool", "function":
		fname := ""
		if role.Str == "tool" {
			fname = w.lookup(toolCallID.Str)
		}
		if fname == "" {
			fname = name.Str
		}
		if fname == "" {
			return adaptor.BadRequest(at(i)+".tool_call_id",
				at(i)+".tool_call_id "+strconv.Quote(toolCallID.Str)+" matches no earlier assistant tool call")
		}
		w.functionResponse(fname, adaptor.MessageText(content))
		return nil
	default:
		return adaptor.BadRequest(at(i)+".role", at(i)+".role must be one of system, developer, user, assistant, tool")
	}
}

// content writes a message content (a string or an array of parts) into a turn of role.
func (w *writer) content(ctx context.Context, i int, role string, c gjson.Result) error {
	if c.Type == gjson.String {
		w.text(role, c.Str)
		return nil
	}
	if !c.IsArray() {
		return nil
	}
	var err error
	j := -1
	c.ForEach(func(_, p gjson.Result) bool {
		j++
		err = w.contentPart(ctx, role, at(i)+".content["+strconv.Itoa(j)+"]", p)
		return err == nil
	})
	return err
}

func (w *writer) contentPart(ctx context.Context, role, param string, p gjson.Result) error {
	switch typ := p.Get("type").Str; typ {
	case "text":
		w.text(role, p.Get("text").Str)
	case "refusal":
		w.text(role, p.Get("refusal").Str)
	case "image_url":
		iu := p.Get("image_url")
		url := iu.Str // some clients send the URL as a plain string
		if iu.IsObject() {
			url = iu.Get("url").Str
		}
		if url == "" {
			return adaptor.BadRequest(param+".image_url.url", param+".image_url.url is required")
		}
		// Gemini cannot fetch arbitrary URLs: data: URLs go inline as they are, http(s) are fetched.
		img, err := adaptor.Images.Resolve(ctx, url)
		if err != nil {
			if ae, ok := err.(*adaptor.Error); ok && ae.Param == "messages" {
				ae.Param = param + ".image_url.url"
			}
			return err
		}
		w.inline(role, img.MediaType, img.Base64)
	case "input_audio":
		a := p.Get("input_audio")
		data, format := a.Get("data").Str, a.Get("format").Str
		if data == "" || format == "" {
			return adaptor.BadRequest(param+".input_audio", param+".input_audio needs data and format")
		}
		w.inline(role, "audio/"+format, data)
	case "file":
		fd := p.Get("file.file_data").Str
		img, ok := adaptor.ParseDataURL(fd)
		if !ok {
			return adaptor.BadRequest(param+".file", param+".file must carry file_data as a base64 data: URL (file_id is not supported by Gemini)")
		}
		w.inline(role, img.MediaType, img.Base64)
	default:
		return adaptor.BadRequest(param+".type", param+".type "+strconv.Quote(typ)+" is not supported by Gemini")
	}
	return nil
}

// functionCall writes a model functionCall part; arguments is the OpenAI JSON string.
func (w *writer) functionCall(name, arguments string) {
	w.part("model")
	w.b = append(w.b, `{"functionCall":{"name":`...)
	w.b = adaptor.AppendJSONString(w.b, name)
	w.b = append(w.b, `,"args":`...)
	args := strings.TrimSpace(arguments)
	switch {
	case args == "":
		w.b = append(w.b, "{}"...)
	case args[0] == '{' && gjson.Valid(args):
		w.b = append(w.b, args...)
	default:
		// Gemini's args is an object; anything else is kept as a string rather than dropped.
		w.b = append(w.b, `{"arguments":`...)
		w.b = adaptor.AppendJSONString(w.b, arguments)
		w.b = append(w.b, '}')
	}
	w.b = append(w.b, "}}"...)
}

// functionResponse writes a user functionResponse part. A JSON object result is the response as it
// is; anything else is wrapped as {"content": "<text>"}.
func (w *writer) functionResponse(name, result string) {
	w.part("user")
	w.b = append(w.b, `{"functionResponse":{"name":`...)
	w.b = adaptor.AppendJSONString(w.b, name)
	w.b = append(w.b, `,"response":`...)
	r := strings.TrimSpace(result)
	if r != "" && r[0] == '{' && gjson.Valid(r) {
		w.b = append(w.b, r...)
	} else {
		w.b = append(w.b, `{"content":`...)
		w.b = adaptor.AppendJSONString(w.b, result)
		w.b = append(w.b, '}')
	}
	w.b = append(w.b, "}}"...)
}

// appendGenerationConfig writes ,"generationConfig":{...} when any setting is present.
func appendGenerationConfig(b []byte, f *fields, defaultMax string) ([]byte, error) {
	start := len(b)
	b = append(b, `,"generationConfig":{`...)
	open := len(b)
	num := func(key string, v gjson.Result) {
		if v.Type != gjson.Number {
			return
		}
		if len(b) > open {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, key...)
		b = append(b, `":`...)
		b = append(b, v.Raw...)
	}
	num("temperature", f.temperature)
	num("topP", f.topP)
	num("topK", f.topK)
	switch {
	case f.maxCompletion.Type == gjson.Number:
		num("maxOutputTokens", f.maxCompletion)
	case f.maxTokens.Type == gjson.Number:
		num("maxOutputTokens", f.maxTokens)
	case defaultMax != "":
		num("maxOutputTokens", gjson.Result{Type: gjson.Number, Raw: defaultMax})
	}
	if f.stop.Type == gjson.String || f.stop.IsArray() {
		n := 0
		appendStop := func(s string) {
			if s == "" {
				return
			}
			if n == 0 {
				if len(b) > open {
					b = append(b, ',')
				}
				b = append(b, `"stopSequences":[`...)
			} else {
				b = append(b, ',')
			}
			b = adaptor.AppendJSONString(b, s)
			n++
		}
		if f.stop.Type == gjson.String {
			appendStop(f.stop.Str)
		} else {
			f.stop.ForEach(func(_, s gjson.Result) bool {
				appendStop(s.Str)
				return true
			})
		}
		if n > 0 {
			b = append(b, ']')
		}
	}
	num("seed", f.seed)
	num("presencePenalty", f.presence)
	num("frequencyPenalty", f.frequency)
	if f.responseFormat.IsObject() {
		switch t := f.responseFormat.Get("type").Str; t {
		case "json_object", "json_schema":
			if len(b) > open {
				b = append(b, ',')
			}
			b = append(b, `"responseMimeType":"application/json"`...)
			if s := f.responseFormat.Get("json_schema.schema"); t == "json_schema" && s.IsObject() {
				b = append(b, `,"responseSchema":`...)
				b = appendSchema(b, s)
			}
		case "", "text":
		default:
			return nil, adaptor.BadRequest("response_format.type", "response_format.type "+strconv.Quote(t)+" is not supported by Gemini")
		}
	}
	if len(b) == open {
		return b[:start], nil
	}
	return append(b, '}'), nil
}

// appendTools writes ,"tools":[{"functionDeclarations":[...]}] and ,"toolConfig":{...}.
func appendTools(b []byte, f *fields) []byte {
	n := 0
	f.tools.ForEach(func(_, t gjson.Result) bool {
		if typ := t.Get("type").Str; typ != "function" && typ != "" {
			return true
		}
		fn := t.Get("function")
		name := fn.Get("name").Str
		if name == "" {
			return true
		}
		if n == 0 {
			b = append(b, `,"tools":[{"functionDeclarations":[`...)
		} else {
			b = append(b, ',')
		}
		n++
		b = append(b, `{"name":`...)
		b = adaptor.AppendJSONString(b, name)
		if d := fn.Get("description").Str; d != "" {
			b = append(b, `,"description":`...)
			b = adaptor.AppendJSONString(b, d)
		}
		// Gemini rejects an OBJECT schema without properties: a function without parameters says none.
		if p := fn.Get("parameters"); p.IsObject() && (p.Get("type").Str != "object" || nonEmpty(p.Get("properties"))) {
			b = append(b, `,"parameters":`...)
			b = appendSchema(b, p)
		}
		b = append(b, '}')
		return true
	})
	if n == 0 {
		return b
	}
	b = append(b, "]}]"...)

	tc := f.toolChoice
	mode, only := "", ""
	switch {
	case tc.Type == gjson.String:
		switch tc.Str {
		case "auto":
			mode = "AUTO"
		case "none":
			mode = "NONE"
		case "required":
			mode = "ANY"
		}
	case tc.IsObject():
		if only = tc.Get("function.name").Str; only != "" {
			mode = "ANY"
		}
	}
	if mode != "" {
		b = append(b, `,"toolConfig":{"functionCallingConfig":{"mode":"`...)
		b = append(b, mode...)
		b = append(b, '"')
		if only != "" {
			b = append(b, `,"allowedFunctionNames":[`...)
			b = adaptor.AppendJSONString(b, only)
			b = append(b, ']')
		}
		b = append(b, "}}"...)
	}
	return b
}

func nonEmpty(obj gjson.Result) bool {
	n := 0
	obj.ForEach(func(_, _ gjson.Result) bool {
		n++
		return false
	})
	return n > 0
}

// schemaKeys are the JSON-Schema keywords Gemini's OpenAPI-subset Schema accepts; others (such as
// additionalProperties, $schema, $ref, const) make it answer 400, so they are left out.
var schemaKeys = map[string]bool{
	"type": true, "format": true, "title": true, "description": true, "nullable": true, "enum": true,
	"maxItems": true, "minItems": true, "properties": true, "required": true, "minProperties": true,
	"maxProperties": true, "minLength": true, "maxLength": true, "pattern": true, "example": true,
	"anyOf": true, "propertyOrdering": true, "default": true, "items": true, "minimum": true, "maximum": true,
}

// schemaFormats are the format values Gemini accepts.
var schemaFormats = map[string]bool{"enum": true, "date-time": true, "float": true, "double": true, "int32": true, "int64": true}

// appendSchema writes a JSON Schema reduced to what Gemini accepts.
func appendSchema(b []byte, s gjson.Result) []byte {
	if !s.IsObject() {
		return append(b, s.Raw...)
	}
	b = append(b, '{')
	n := 0
	key := func(k string) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = adaptor.AppendJSONString(b, k)
		b = append(b, ':')
	}
	nullable := false
	s.ForEach(func(k, v gjson.Result) bool {
		if !schemaKeys[k.Str] {
			return true
		}
		switch k.Str {
		case "type":
			if v.IsArray() { // ["string","null"] → "string" + nullable
				t := ""
				v.ForEach(func(_, e gjson.Result) bool {
					if e.Str == "null" {
						nullable = true
					} else if t == "" {
						t = e.Str
					}
					return true
				})
				if t != "" {
					key("type")
					b = adaptor.AppendJSONString(b, t)
				}
				return true
			}
		case "format":
			if !schemaFormats[v.Str] {
				return true
			}
		case "properties":
			key("properties")
			b = append(b, '{')
			m := 0
			v.ForEach(func(pk, pv gjson.Result) bool {
				if m > 0 {
					b = append(b, ',')
				}
				m++
				b = append(b, pk.Raw...)
				b = append(b, ':')
				b = appendSchema(b, pv)
				return true
			})
			b = append(b, '}')
			return true
		case "items":
			key("items")
			b = appendSchema(b, v)
			return true
		case "anyOf":
			key("anyOf")
			b = append(b, '[')
			m := 0
			v.ForEach(func(_, e gjson.Result) bool {
				if m > 0 {
					b = append(b, ',')
				}
				m++
				b = appendSchema(b, e)
				return true
			})
			b = append(b, ']')
			return true
		}
		key(k.Str)
		b = append(b, bytes.TrimSpace(adaptor.StringBytes(v.Raw))...)
		return true
	})
	if nullable && !s.Get("nullable").Exists() {
		key("nullable")
		b = append(b, "true"...)
	}
	return append(b, '}')
}
