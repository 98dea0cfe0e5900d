package hunyuan

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// Hunyuan accepts: an optional system message first, then user and assistant alternating (tool results
// allowed after an assistant tool call), ending with user or tool, no empty content. What can be fixed
// without changing meaning is fixed (developer→system, consecutive same-role messages merged, text parts
// flattened, empty system prompts dropped); the rest is rejected with a 400 saying why.

// turn is one Hunyuan message, merged from one or more consecutive OpenAI messages of the same role.
type turn struct {
	role   string
	first  int // index of its first OpenAI message, for error params
	srcs   []gjson.Result
	images bool
	calls  bool
}

func msgParam(i int, field string) string {
	return "messages[" + strconv.Itoa(i) + "]" + field
}

// appendMessages writes the Messages array.
func appendMessages(out []byte, msgs gjson.Result) ([]byte, error) {
	turns, err := collectTurns(msgs)
	if err != nil {
		return nil, err
	}
	if err := checkOrder(turns); err != nil {
		return nil, err
	}
	var scratch []byte
	out = append(out, '[')
	for k := range turns {
		if k > 0 {
			out = append(out, ',')
		}
		if out, scratch, err = appendTurn(out, scratch, &turns[k]); err != nil {
			return nil, err
		}
	}
	return append(out, ']'), nil
}

func collectTurns(msgs gjson.Result) ([]turn, error) {
	if !msgs.IsArray() {
		return nil, adaptor.BadRequest("messages", "messages must be a non-empty array")
	}
	var turns []turn
	var err error
	i := -1
	msgs.ForEach(func(_, m gjson.Result) bool {
		i++
		var role string
		if role, err = hunyuanRole(m.Get("role").String(), i); err != nil {
			return false
		}
		content := m.Get("content")
		var images bool
		if images, err = checkParts(content, i, role); err != nil {
			return false
		}
		calls := len(m.Get("tool_calls").Array()) > 0
		if role == "system" && blank(flatten(content)) {
			return true // an empty system prompt says nothing; dropping it is safe
		}
		n := len(turns)
		if role == "system" && n > 0 && turns[n-1].role != "system" {
			err = adaptor.BadRequest(msgParam(i, ".role"), "hunyuan accepts system messages only at the start")
			return false
		}
		if n > 0 && role != "tool" && turns[n-1].role == role {
			t := &turns[n-1]
			t.srcs = append(t.srcs, m)
			t.images = t.images || images
			t.calls = t.calls || calls
			return true
		}
		turns = append(turns, turn{role: role, first: i, srcs: []gjson.Result{m}, images: images, calls: calls})
		return true
	})
	if err != nil {
		return nil, err
	}
	if i < 0 {
		return nil, adaptor.BadRequest("messages", "messages must be a non-empty array")
	}
	return turns, nil
}

func hunyuanRole(role string, i int) (string, error) {
	switch role {
	case "system", "developer":
		return "system", nil
	case "user", "assistant", "tool":
		return role, nil
	case "function":
		return "", adaptor.BadRequest(msgParam(i, ".role"), "hunyuan does not support the legacy function role; use tools")
	}
	return "", adaptor.BadRequest(msgParam(i, ".role"), "unknown role "+strconv.Quote(role))
}

// checkParts validates an array content and reports whether it holds images.
func checkParts(content gjson.Result, i int, role string) (bool, error) {
	if !content.IsArray() {
		if content.Type == gjson.String || isNull(content) {
			return false, nil
		}
		return false, adaptor.BadRequest(msgParam(i, ".content"), "content must be a string or an array of parts")
	}
	images := false
	var err error
	j := -1
	content.ForEach(func(_, p gjson.Result) bool {
		j++
		switch typ := p.Get("type").String(); typ {
		case "text":
		case "image_url":
			if role != "user" {
				err = adaptor.BadRequest(msgParam(i, ".content"), "hunyuan accepts images only in user messages")
				return false
			}
			if imageURL(p) == "" {
				err = adaptor.BadRequest(msgParam(i, ".content["+strconv.Itoa(j)+"].image_url.url"), "image url is required")
				return false
			}
			images = true
		default:
			err = adaptor.BadRequest(msgParam(i, ".content["+strconv.Itoa(j)+"].type"),
				"hunyuan does not accept "+strconv.Quote(typ)+" content parts")
			return false
		}
		return true
	})
	return images, err
}

func imageURL(part gjson.Result) string {
	u := part.Get("image_url")
	if u.Type == gjson.String {
		return u.Str
	}
	return u.Get("url").String()
}

// flatten returns a content's text: a string as is, text parts joined by newlines so words of separate
// parts do not run together.
func flatten(content gjson.Result) string {
	if content.Type == gjson.String {
		return content.Str
	}
	var b []byte
	content.ForEach(func(_, p gjson.Result) bool {
		if p.Get("type").String() == "text" {
			if t := p.Get("text").String(); t != "" {
				if len(b) > 0 {
					b = append(b, '\n')
				}
				b = append(b, t...)
			}
		}
		return true
	})
	return string(b)
}

// blank reports content Hunyuan would reject as empty.
func blank(s string) bool { return strings.TrimSpace(s) == "" }

func checkOrder(turns []turn) error {
	start := 0
	if len(turns) > 0 && turns[0].role == "system" {
		start = 1
	}
	if start == len(turns) {
		return adaptor.BadRequest("messages", "hunyuan needs at least one user message")
	}
	for k := start; k < len(turns); k++ {
		t := &turns[k]
		if k == start {
			if t.role != "user" {
				return adaptor.BadRequest(msgParam(t.first, ".role"), "hunyuan needs the conversation to start with a user message")
			}
			continue
		}
		prev := &turns[k-1]
		switch {
		case t.role == "user" && prev.role == "tool":
			return adaptor.BadRequest(msgParam(t.first, ".role"), "hunyuan needs an assistant message between tool results and the next user message")
		case t.role == "tool" && prev.role != "tool" && !(prev.role == "assistant" && prev.calls):
			return adaptor.BadRequest(msgParam(t.first, ".role"), "a tool message must follow an assistant message with tool_calls")
		}
	}
	if last := turns[len(turns)-1]; last.role == "assistant" {
		return adaptor.BadRequest(msgParam(last.first, ".role"), "hunyuan needs the last message to be from the user or a tool")
	}
	return nil
}

// appendTurn writes one Message. scratch is reused for merged text.
func appendTurn(out, scratch []byte, t *turn) ([]byte, []byte, error) {
	out = append(out, `{"Role":`...)
	out = adaptor.AppendJSONString(out, t.role)
	if t.images {
		var err error
		if out, err = appendContents(out, t); err != nil {
			return nil, scratch, err
		}
	} else {
		scratch = scratch[:0]
		for _, m := range t.srcs {
			text := flatten(m.Get("content"))
			if blank(text) {
				continue
			}
			if len(scratch) > 0 {
				scratch = append(scratch, "\n\n"...) // merged messages stay separate paragraphs
			}
			scratch = append(scratch, text...)
		}
		switch {
		case len(scratch) > 0:
			out = append(out, `,"Content":`...)
			out = adaptor.AppendJSONString(out, adaptor.BytesString(scratch))
		case t.role == "assistant" && t.calls:
			// A tool-calling turn may have no text; Content is left out rather than sent empty.
		default:
			return nil, scratch, adaptor.BadRequest(msgParam(t.first, ".content"), "hunyuan does not accept empty message content")
		}
	}
	if t.role == "tool" {
		id := t.srcs[0].Get("tool_call_id").String()
		if id == "" {
			return nil, scratch, adaptor.BadRequest(msgParam(t.first, ".tool_call_id"), "tool messages need tool_call_id")
		}
		out = append(out, `,"ToolCallId":`...)
		out = adaptor.AppendJSONString(out, id)
	}
	if t.calls {
		var err error
		if out, err = appendCalls(out, t); err != nil {
			return nil, scratch, err
		}
	}
	return append(out, '}'), scratch, nil
}

// appendContents writes Contents for a vision turn; Hunyuan wants at least one text item.
func appendContents(out []byte, t *turn) ([]byte, error) {
	out = append(out, `,"Contents":[`...)
	n, texts := 0, 0
	item := func() {
		if n > 0 {
			out = append(out, ',')
		}
		n++
	}
	for _, m := range t.srcs {
		c := m.Get("content")
		if c.Type == gjson.String {
			if s := c.Str; !blank(s) {
				item()
				out = append(out, `{"Type":"text","Text":`...)
				out = adaptor.AppendJSONString(out, s)
				out = append(out, '}')
				texts++
			}
			continue
		}
		c.ForEach(func(_, p gjson.Result) bool {
			switch p.Get("type").String() {
			case "text":
				if s := p.Get("text").String(); !blank(s) {
					item()
					out = append(out, `{"Type":"text","Text":`...)
					out = adaptor.AppendJSONString(out, s)
					out = append(out, '}')
					texts++
				}
			case "image_url":
				item()
				out = append(out, `{"Type":"image_url","ImageUrl":{"Url":`...)
				out = adaptor.AppendJSONString(out, imageURL(p))
				out = append(out, "}}"...)
			}
			return true
		})
	}
	if texts == 0 {
		return nil, adaptor.BadRequest(msgParam(t.first, ".content"), "hunyuan needs a text part beside images")
	}
	return append(out, ']'), nil
}

// appendCalls writes an assistant turn's ToolCalls; Arguments is a JSON string.
func appendCalls(out []byte, t *turn) ([]byte, error) {
	out = append(out, `,"ToolCalls":[`...)
	n := 0
	var err error
	for _, m := range t.srcs {
		j := -1
		m.Get("tool_calls").ForEach(func(_, c gjson.Result) bool {
			j++
			id := c.Get("id").String()
			name := c.Get("function.name").String()
			if id == "" || name == "" {
				err = adaptor.BadRequest(msgParam(t.first, ".tool_calls["+strconv.Itoa(j)+"]"), "tool calls need an id and a function name")
				return false
			}
			if n > 0 {
				out = append(out, ',')
			}
			n++
			out = append(out, `{"Id":`...)
			out = adaptor.AppendJSONString(out, id)
			out = append(out, `,"Type":"function","Function":{"Name":`...)
			out = adaptor.AppendJSONString(out, name)
			out = append(out, `,"Arguments":`...)
			args := "{}"
			if a := c.Get("function.arguments"); !isNull(a) {
				args = jsonText(a)
			}
			out = adaptor.AppendJSONString(out, args)
			out = append(out, "}}"...)
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return append(out, ']'), nil
}
