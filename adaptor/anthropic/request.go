package anthropic

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// buildRequest turns the client's OpenAI chat body into an Anthropic Messages body. It reads the body
// with gjson in one pass over the top-level keys and writes the answer with byte appends; string values
// are copied as the JSON literals they already are.
func buildRequest(ctx context.Context, set settings, req *adaptor.Request, stream bool) ([]byte, error) {
	var f struct {
		messages, temperature, topP, topK, maxTokens, maxCompletion, stop, tools, toolChoice, parallel,
		user, thinking gjson.Result
	}
	gjson.Parse(adaptor.BytesString(req.Body)).ForEach(func(k, v gjson.Result) bool {
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
		case "tools":
			f.tools = v
		case "tool_choice":
			f.toolChoice = v
		case "parallel_tool_calls":
			f.parallel = v
		case "user":
			f.user = v
		case "thinking":
			f.thinking = v
		}
		return true
	})

	b := builder{ctx: ctx, set: set, out: make([]byte, 0, len(req.Body)+256)}
	model := req.UpstreamModel
	if model == "" {
		model = req.Model
	}
	b.out = append(b.out, `{"model":`...)
	b.out = adaptor.AppendJSONString(b.out, model)

	// max_completion_tokens ?? max_tokens ?? the channel's default: Anthropic requires one.
	maxTok, param := int64(set.maxTokens), ""
	if f.maxCompletion.Type == gjson.Number {
		maxTok, param = f.maxCompletion.Int(), "max_completion_tokens"
	} else if f.maxTokens.Type == gjson.Number {
		maxTok, param = f.maxTokens.Int(), "max_tokens"
	}
	if maxTok < 1 {
		return nil, adaptor.BadRequest(param, param+" must be at least 1")
	}
	b.out = append(b.out, `,"max_tokens":`...)
	b.out = strconv.AppendInt(b.out, maxTok, 10)
	if stream {
		b.out = append(b.out, `,"stream":true`...)
	}
	if t := f.temperature; t.Type == gjson.Number {
		// OpenAI allows 0..2, Anthropic 0..1: clamp.
		b.out = append(b.out, `,"temperature":`...)
		switch v := t.Float(); {
		case v < 0:
			b.out = append(b.out, '0')
		case v > 1:
			b.out = append(b.out, '1')
		default:
			b.out = append(b.out, t.Raw...)
		}
	}
	if f.topP.Type == gjson.Number {
		b.out = append(b.out, `,"top_p":`...)
		b.out = append(b.out, f.topP.Raw...)
	}
	if f.topK.Type == gjson.Number {
		b.out = append(b.out, `,"top_k":`...)
		b.out = append(b.out, f.topK.Raw...)
	}
	b.appendStop(f.stop)
	if err := b.appendTools(f.tools, f.toolChoice, f.parallel); err != nil {
		return nil, err
	}
	if f.user.Type == gjson.String && f.user.Str != "" {
		b.out = append(b.out, `,"metadata":{"user_id":`...)
		b.out = append(b.out, f.user.Raw...)
		b.out = append(b.out, '}')
	}
	if f.thinking.IsObject() {
		b.out = append(b.out, `,"thinking":`...)
		b.out = append(b.out, f.thinking.Raw...)
	}

	b.out = append(b.out, `,"messages":[`...)
	if err := b.appendMessages(f.messages); err != nil {
		return nil, err
	}
	b.out = append(b.out, ']')
	switch b.nsys {
	case 0:
	case 1:
		b.out = append(b.out, `,"system":`...)
		b.out = append(b.out, b.sys[b.sysText:len(b.sys)-1]...)
	default:
		b.out = append(b.out, `,"system":[`...)
		b.out = append(b.out, b.sys...)
		b.out = append(b.out, ']')
	}
	b.out = append(b.out, '}')
	return b.out, nil
}

// builder holds the body being written and the message that is open in it. Consecutive OpenAI messages
// that map to the same Anthropic role are merged into one message (Anthropic wants user and assistant
// turns to alternate); messages that end up without content are left out.
type builder struct {
	ctx context.Context
	set settings
	out []byte

	// sys holds the system text blocks, comma-separated; sysText is where the first one's literal starts.
	sys     []byte
	nsys    int
	sysText int

	nmsgs   int
	role    string // role of the open message; "" when none is open
	open    int    // offset of the '[' of the open message's content
	nblocks int
	single  bool // the open message has exactly one block and it is text
	textAt  int  // offset of that text block's literal
}

const textBlock = `{"type":"text","text":`

// block prepares b.out for one more content block of a message with role, opening a new message when
// the role changes.
func (b *builder) block(role string) {
	if b.role == role {
		b.out = append(b.out, ',')
	} else {
		b.closeMessage()
		if b.nmsgs > 0 {
			b.out = append(b.out, ',')
		}
		b.nmsgs++
		b.out = append(b.out, `{"role":"`...)
		b.out = append(b.out, role...)
		b.out = append(b.out, `","content":[`...)
		b.role, b.open, b.nblocks = role, len(b.out)-1, 0
	}
	b.nblocks++
	b.single = false
}

// text appends a text block; lit is a non-empty JSON string literal.
func (b *builder) text(role, lit string) {
	b.block(role)
	b.out = append(b.out, textBlock...)
	b.textAt = len(b.out)
	b.out = append(b.out, lit...)
	b.out = append(b.out, '}')
	b.single = b.nblocks == 1
}

// closeMessage ends the open message. A message made of one text block is written in the short form
// ("content":"..."): the literal is moved over the block's opening.
func (b *builder) closeMessage() {
	if b.role == "" {
		return
	}
	if b.single {
		n := copy(b.out[b.open:], b.out[b.textAt:len(b.out)-1])
		b.out = append(b.out[:b.open+n], '}')
	} else {
		b.out = append(b.out, "]}"...)
	}
	b.role = ""
}

func (b *builder) appendMessages(msgs gjson.Result) error {
	if !msgs.IsArray() {
		return adaptor.BadRequest("messages", "messages must be an array")
	}
	var err error
	i := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		err = b.appendMessage(m, i)
		i++
		return err == nil
	})
	if err != nil {
		return err
	}
	b.closeMessage()
	if b.nmsgs == 0 {
		return adaptor.BadRequest("messages", "messages must hold at least one user or assistant message for Anthropic upstreams")
	}
	return nil
}

func (b *builder) appendMessage(m gjson.Result, i int) error {
	at := "messages[" + strconv.Itoa(i) + "]"
	content := m.Get("content")
	switch role := m.Get("role").Str; role {
	case "system", "developer":
		b.appendSystem(content)
		return nil
	case "user", "function":
		// A deprecated function-role result has no call id to pair with: it is passed on as user text.
		return b.appendParts("user", content, at)
	case "assistant":
		if err := b.appendAssistantText(content, at); err != nil {
			return err
		}
		return b.appendToolUses(m.Get("tool_calls"), at)
	case "tool":
		return b.appendToolResult(m, content, at)
	default:
		return adaptor.BadRequest(at+".role", at+".role "+strconv.Quote(role)+" cannot be sent to Anthropic")
	}
}

// appendSystem adds a system or developer message's text to the top-level system prompt.
func (b *builder) appendSystem(content gjson.Result) {
	add := func(lit string) {
		if lit == `""` {
			return
		}
		if b.nsys > 0 {
			b.sys = append(b.sys, ',')
		}
		b.sys = append(b.sys, textBlock...)
		if b.nsys == 0 {
			b.sysText = len(b.sys)
		}
		b.sys = append(b.sys, lit...)
		b.sys = append(b.sys, '}')
		b.nsys++
	}
	if content.Type == gjson.String {
		add(content.Raw)
		return
	}
	if !content.IsArray() {
		return
	}
	content.ForEach(func(_, p gjson.Result) bool {
		if t := p.Get("text"); p.Get("type").Str == "text" && t.Type == gjson.String {
			add(t.Raw)
		}
		return true
	})
}

// appendParts adds user content (a string or an array of text and image parts) as blocks of role.
func (b *builder) appendParts(role string, content gjson.Result, at string) error {
	if content.Type == gjson.String {
		if content.Raw != `""` {
			b.text(role, content.Raw)
		}
		return nil
	}
	if !content.IsArray() {
		return adaptor.BadRequest(at+".content", at+".content must be a string or an array of content parts")
	}
	var err error
	j := 0
	content.ForEach(func(_, p gjson.Result) bool {
		pat := at + ".content[" + strconv.Itoa(j) + "]"
		j++
		switch typ := p.Get("type").Str; typ {
		case "text":
			if t := p.Get("text"); t.Type == gjson.String && t.Raw != `""` {
				b.text(role, t.Raw)
			}
		case "image_url":
			b.block(role)
			err = b.appendImage(p, pat)
		default:
			err = adaptor.BadRequest(pat+".type", "content part type "+strconv.Quote(typ)+" is not supported by Anthropic upstreams")
		}
		return err == nil
	})
	return err
}

// appendNestedParts writes content parts as a comma-separated block list (inside a tool_result) and
// reports how many it wrote.
func (b *builder) appendNestedParts(content gjson.Result, at string) (int, error) {
	var err error
	n, j := 0, 0
	content.ForEach(func(_, p gjson.Result) bool {
		pat := at + ".content[" + strconv.Itoa(j) + "]"
		j++
		switch typ := p.Get("type").Str; typ {
		case "text":
			t := p.Get("text")
			if t.Type != gjson.String || t.Raw == `""` {
				return true
			}
			if n > 0 {
				b.out = append(b.out, ',')
			}
			b.out = append(b.out, textBlock...)
			b.out = append(b.out, t.Raw...)
			b.out = append(b.out, '}')
		case "image_url":
			if n > 0 {
				b.out = append(b.out, ',')
			}
			err = b.appendImage(p, pat)
		default:
			err = adaptor.BadRequest(pat+".type", "content part type "+strconv.Quote(typ)+" is not supported in Anthropic tool results")
		}
		n++
		return err == nil
	})
	return n, err
}

// appendImage writes an image block for an image_url part: data: URLs inline, http(s) URLs as a url
// source (or fetched and inlined when the channel sets fetch_images).
func (b *builder) appendImage(p gjson.Result, at string) error {
	u := p.Get("image_url")
	url := u.Str
	if u.Type != gjson.String {
		url = u.Get("url").Str
	}
	if url == "" {
		return adaptor.BadRequest(at+".image_url.url", at+".image_url.url is required")
	}
	if !b.set.fetchImages && (strings.HasPrefix(url, "https://") || strings.HasPrefix(url, "http://")) {
		b.out = append(b.out, `{"type":"image","source":{"type":"url","url":`...)
		b.out = adaptor.AppendJSONString(b.out, url)
		b.out = append(b.out, "}}"...)
		return nil
	}
	img, err := adaptor.Images.Resolve(b.ctx, url)
	if err != nil {
		var ae *adaptor.Error
		if errors.As(err, &ae) && ae.Status == 400 {
			ae.Param = at + ".image_url.url"
		}
		return err
	}
	b.out = append(b.out, `{"type":"image","source":{"type":"base64","media_type":`...)
	b.out = adaptor.AppendJSONString(b.out, img.MediaType)
	b.out = append(b.out, `,"data":`...)
	b.out = adaptor.AppendJSONString(b.out, img.Base64)
	b.out = append(b.out, "}}"...)
	return nil
}

// appendAssistantText adds an assistant message's text (string or text parts; refusal parts are left
// out).
func (b *builder) appendAssistantText(content gjson.Result, at string) error {
	if content.Type == gjson.String {
		if content.Raw != `""` {
			b.text("assistant", content.Raw)
		}
		return nil
	}
	if !content.IsArray() {
		return nil // null: the message only calls tools
	}
	var err error
	j := 0
	content.ForEach(func(_, p gjson.Result) bool {
		pat := at + ".content[" + strconv.Itoa(j) + "]"
		j++
		switch typ := p.Get("type").Str; typ {
		case "text":
			if t := p.Get("text"); t.Type == gjson.String && t.Raw != `""` {
				b.text("assistant", t.Raw)
			}
		case "refusal":
		default:
			err = adaptor.BadRequest(pat+".type", "assistant content part type "+strconv.Quote(typ)+" cannot be sent to Anthropic")
		}
		return err == nil
	})
	return err
}

// appendToolUses adds an assistant message's tool_calls as tool_use blocks; the arguments JSON string
// becomes the input object.
func (b *builder) appendToolUses(calls gjson.Result, at string) error {
	if !calls.IsArray() {
		return nil
	}
	var err error
	j := 0
	calls.ForEach(func(_, tc gjson.Result) bool {
		pat := at + ".tool_calls[" + strconv.Itoa(j) + "]"
		j++
		if typ := tc.Get("type").Str; typ != "" && typ != "function" {
			err = adaptor.BadRequest(pat+".type", "tool call type "+strconv.Quote(typ)+" cannot be sent to Anthropic")
			return false
		}
		id, name := tc.Get("id"), tc.Get("function.name")
		if id.Type != gjson.String || id.Str == "" {
			err = adaptor.BadRequest(pat+".id", pat+".id is required")
			return false
		}
		if name.Type != gjson.String || name.Str == "" {
			err = adaptor.BadRequest(pat+".function.name", pat+".function.name is required")
			return false
		}
		args := tc.Get("function.arguments")
		input := args.Raw
		if args.Type == gjson.String {
			input = strings.TrimSpace(args.Str)
		}
		switch {
		case input == "" || args.Type == gjson.Null:
			input = "{}"
		case input[0] != '{' || !gjson.Valid(input):
			err = adaptor.BadRequest(pat+".function.arguments", pat+".function.arguments must be a JSON object")
			return false
		}
		b.block("assistant")
		b.out = append(b.out, `{"type":"tool_use","id":`...)
		b.out = append(b.out, id.Raw...)
		b.out = append(b.out, `,"name":`...)
		b.out = append(b.out, name.Raw...)
		b.out = append(b.out, `,"input":`...)
		b.out = append(b.out, input...)
		b.out = append(b.out, '}')
		return true
	})
	return err
}

// appendToolResult adds a tool message as a tool_result block of a user message.
func (b *builder) appendToolResult(m, content gjson.Result, at string) error {
	id := m.Get("tool_call_id")
	if id.Type != gjson.String || id.Str == "" {
		return adaptor.BadRequest(at+".tool_call_id", at+".tool_call_id is required for tool messages")
	}
	b.block("user")
	b.out = append(b.out, `{"type":"tool_result","tool_use_id":`...)
	b.out = append(b.out, id.Raw...)
	switch {
	case content.Type == gjson.String:
		if content.Raw != `""` {
			b.out = append(b.out, `,"content":`...)
			b.out = append(b.out, content.Raw...)
		}
	case content.IsArray():
		mark := len(b.out)
		b.out = append(b.out, `,"content":[`...)
		n, err := b.appendNestedParts(content, at)
		if err != nil {
			return err
		}
		if n == 0 {
			b.out = b.out[:mark]
		} else {
			b.out = append(b.out, ']')
		}
	}
	b.out = append(b.out, '}')
	return nil
}

// appendStop maps stop (a string or an array of strings) to stop_sequences.
func (b *builder) appendStop(stop gjson.Result) {
	n := 0
	add := func(s gjson.Result) {
		if s.Type != gjson.String || s.Str == "" {
			return
		}
		if n == 0 {
			b.out = append(b.out, `,"stop_sequences":[`...)
		} else {
			b.out = append(b.out, ',')
		}
		b.out = append(b.out, s.Raw...)
		n++
	}
	if stop.IsArray() {
		stop.ForEach(func(_, s gjson.Result) bool { add(s); return true })
	} else {
		add(stop)
	}
	if n > 0 {
		b.out = append(b.out, ']')
	}
}

// appendTools maps function tools to Anthropic tools and tool_choice/parallel_tool_calls to
// tool_choice. Without tools, tool_choice is left out.
func (b *builder) appendTools(tools, choice, parallel gjson.Result) error {
	if !tools.IsArray() {
		return nil
	}
	n := 0
	var err error
	j := 0
	tools.ForEach(func(_, t gjson.Result) bool {
		at := "tools[" + strconv.Itoa(j) + "]"
		j++
		if typ := t.Get("type").Str; typ != "" && typ != "function" {
			err = adaptor.BadRequest(at+".type", "tool type "+strconv.Quote(typ)+" is not supported by Anthropic upstreams")
			return false
		}
		fn := t.Get("function")
		name := fn.Get("name")
		if name.Type != gjson.String || name.Str == "" {
			err = adaptor.BadRequest(at+".function.name", at+".function.name is required")
			return false
		}
		if n == 0 {
			b.out = append(b.out, `,"tools":[`...)
		} else {
			b.out = append(b.out, ',')
		}
		n++
		b.out = append(b.out, `{"name":`...)
		b.out = append(b.out, name.Raw...)
		if d := fn.Get("description"); d.Type == gjson.String && d.Str != "" {
			b.out = append(b.out, `,"description":`...)
			b.out = append(b.out, d.Raw...)
		}
		b.out = append(b.out, `,"input_schema":`...)
		b.out = appendSchema(b.out, fn.Get("parameters"))
		b.out = append(b.out, '}')
		return true
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	b.out = append(b.out, ']')

	noParallel := parallel.Type == gjson.False
	typ, name := "", ""
	switch {
	case choice.Type == gjson.String:
		switch choice.Str {
		case "auto":
			typ = "auto"
		case "none":
			typ = "none"
		case "required":
			typ = "any"
		default:
			return adaptor.BadRequest("tool_choice", "tool_choice must be auto, none, required or a function")
		}
	case choice.IsObject():
		name = choice.Get("function.name").Raw
		if choice.Get("type").Str != "function" || choice.Get("function.name").Str == "" {
			return adaptor.BadRequest("tool_choice", `tool_choice object must be {"type":"function","function":{"name":...}}`)
		}
		typ = "tool"
	case noParallel:
		typ = "auto"
	default:
		return nil
	}
	b.out = append(b.out, `,"tool_choice":{"type":"`...)
	b.out = append(b.out, typ...)
	b.out = append(b.out, '"')
	if name != "" {
		b.out = append(b.out, `,"name":`...)
		b.out = append(b.out, name...)
	}
	if noParallel && typ != "none" {
		b.out = append(b.out, `,"disable_parallel_tool_use":true`...)
	}
	b.out = append(b.out, '}')
	return nil
}

// appendSchema writes a tool's input_schema: the parameters object, with "type":"object" added when it
// has no type (Anthropic requires one), or an empty object schema.
func appendSchema(dst []byte, params gjson.Result) []byte {
	if !params.IsObject() {
		return append(dst, `{"type":"object","properties":{}}`...)
	}
	if params.Get("type").Exists() {
		return append(dst, params.Raw...)
	}
	rest := strings.TrimLeft(params.Raw[1:], " \t\r\n")
	dst = append(dst, `{"type":"object"`...)
	if !strings.HasPrefix(rest, "}") {
		dst = append(dst, ',')
	}
	return append(dst, rest...)
}
