package relay

import (
	"strconv"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// ParseChatRequest validates an OpenAI chat request body with gjson (no unmarshal) and extracts the
// fields the core needs. Errors are 400s naming the offending field. The Request's strings (model,
// user, chat id) share body's memory instead of copying it: body must not change afterwards (rewrites
// go through sjson, which makes new slices).
func ParseChatRequest(body []byte) (*adaptor.Request, *adaptor.Error) {
	if !gjson.ValidBytes(body) {
		return nil, adaptor.BadRequest("", "request body is not valid JSON")
	}
	root := gjson.Parse(adaptor.BytesString(body))
	if !root.IsObject() {
		return nil, adaptor.BadRequest("", "request body must be a JSON object")
	}
	top := gatherTop(root)
	f := top.get("model")
	if f.Type != gjson.String || f.Str == "" {
		return nil, missingOrType("model", f, "a non-empty string")
	}
	req := &adaptor.Request{Body: body, Model: f.Str}

	if e := checkMessages(top.get("messages")); e != nil {
		return nil, e
	}
	if f = top.get("stream"); f.Exists() && f.Type != gjson.Null {
		if f.Type != gjson.True && f.Type != gjson.False {
			return nil, typeError("stream", "a boolean")
		}
		req.Stream = f.Type == gjson.True
	}
	if f = top.get("stream_options"); f.Exists() && f.Type != gjson.Null {
		if !f.IsObject() {
			return nil, typeError("stream_options", "an object")
		}
		iu := f.Get("include_usage")
		if iu.Exists() && iu.Type != gjson.True && iu.Type != gjson.False && iu.Type != gjson.Null {
			return nil, typeError("stream_options.include_usage", "a boolean")
		}
		req.IncludeUsage = req.Stream && iu.Type == gjson.True
	}
	for _, name := range [...]string{"temperature", "top_p", "max_tokens", "max_completion_tokens", "presence_penalty", "frequency_penalty", "seed", "n"} {
		if f = top.get(name); f.Exists() && f.Type != gjson.Null && f.Type != gjson.Number {
			return nil, typeError(name, "a number")
		}
	}
	if n := top.get("n"); n.Type == gjson.Number && n.Int() != 1 {
		return nil, adaptor.BadRequest("n", "n must be 1: the relay returns one choice")
	}
	if f = top.get("stop"); f.Exists() && f.Type != gjson.Null && f.Type != gjson.String && !f.IsArray() {
		return nil, typeError("stop", "a string or an array of strings")
	}
	if f = top.get("user"); f.Exists() && f.Type != gjson.Null {
		if f.Type != gjson.String {
			return nil, typeError("user", "a string")
		}
		req.User = f.Str
	}
	if f = top.get("tools"); f.Exists() && f.Type != gjson.Null && !f.IsArray() {
		return nil, typeError("tools", "an array")
	}
	if e := parseFastGPTFields(&top, req); e != nil {
		return nil, e
	}
	return req, nil
}

var roles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true, "function": true}

func checkMessages(msgs gjson.Result) *adaptor.Error {
	if !msgs.Exists() || msgs.Type == gjson.Null {
		return adaptor.BadRequest("messages", "messages is required")
	}
	if !msgs.IsArray() {
		return typeError("messages", "an array")
	}
	var err *adaptor.Error
	i := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		n := i
		i++
		// The error paths name the message; the path string is built only for them.
		at := func() string { return "messages[" + strconv.Itoa(n) + "]" }
		if !m.IsObject() {
			err = typeError(at(), "an object")
			return false
		}
		role := m.Get("role")
		if role.Type != gjson.String || !roles[role.Str] {
			err = adaptor.BadRequest(at()+".role", at()+".role must be one of system, developer, user, assistant, tool")
			return false
		}
		content := m.Get("content")
		switch {
		case content.Type == gjson.String:
		case content.IsArray():
			j := 0
			content.ForEach(func(_, p gjson.Result) bool {
				k := j
				j++
				pat := func() string { return at() + ".content[" + strconv.Itoa(k) + "]" }
				typ := p.Get("type")
				if !p.IsObject() || typ.Type != gjson.String {
					err = adaptor.BadRequest(pat(), pat()+" must be an object with a string type")
					return false
				}
				if typ.Str == "text" && p.Get("text").Type != gjson.String {
					err = typeError(pat()+".text", "a string")
					return false
				}
				return true
			})
			if err != nil {
				return false
			}
		case (!content.Exists() || content.Type == gjson.Null) && role.Str == "assistant":
			// an assistant message that only calls tools
		default:
			err = typeError(at()+".content", "a string or an array of content parts")
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	if i == 0 {
		return adaptor.BadRequest("messages", "messages must not be empty")
	}
	return nil
}

func typeError(field, want string) *adaptor.Error {
	return adaptor.BadRequest(field, field+" must be "+want)
}

func missingOrType(field string, f gjson.Result, want string) *adaptor.Error {
	if !f.Exists() || f.Type == gjson.Null {
		return adaptor.BadRequest(field, field+" is required")
	}
	return typeError(field, want)
}

// parseFastGPTFields reads the FastGPT fields a client may send on top of the OpenAI body (seed chat.api):
// chatId or chat_id, responseChatItemId or response_chat_item_id, detail, variables. Other upstreams
// ignore them.
func parseFastGPTFields(top *topFields, req *adaptor.Request) *adaptor.Error {
	var e *adaptor.Error
	if req.ChatID, e = eitherString(top, "chatId", "chat_id"); e != nil {
		return e
	}
	if req.ResponseChatItemID, e = eitherString(top, "responseChatItemId", "response_chat_item_id"); e != nil {
		return e
	}
	if f := top.get("detail"); f.Exists() && f.Type != gjson.Null {
		if f.Type != gjson.True && f.Type != gjson.False {
			return typeError("detail", "a boolean")
		}
		req.Detail = f.Type == gjson.True
	}
	if f := top.get("variables"); f.Exists() && f.Type != gjson.Null {
		if !f.IsObject() {
			return typeError("variables", "an object")
		}
		req.Variables = []byte(f.Raw)
	}
	return nil
}

// eitherString reads a string field that may come under two names; if both are given they must agree.
func eitherString(top *topFields, a, b string) (string, *adaptor.Error) {
	fa, fb := top.get(a), top.get(b)
	for _, f := range [...]struct {
		name string
		r    gjson.Result
	}{{a, fa}, {b, fb}} {
		if f.r.Exists() && f.r.Type != gjson.Null && f.r.Type != gjson.String {
			return "", typeError(f.name, "a string")
		}
	}
	if fa.Str != "" && fb.Str != "" && fa.Str != fb.Str {
		return "", adaptor.BadRequest(a, a+" and "+b+" name different chats")
	}
	if fa.Str != "" {
		return fa.Str, nil
	}
	return fb.Str, nil
}

// topNames are the top-level request fields the relay reads.
var topNames = [...]string{"model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens",
	"max_completion_tokens", "presence_penalty", "frequency_penalty", "seed", "n", "stop", "user", "tools",
	"chatId", "chat_id", "responseChatItemId", "response_chat_item_id", "detail", "variables"}

var topIndex = func() map[string]int {
	m := make(map[string]int, len(topNames))
	for i, n := range topNames {
		m[n] = i
	}
	return m
}()

// topFields holds those fields, gathered in one pass over the body: each gjson Get would scan the body
// from the start again, past the messages (long conversations, inline images) every time.
type topFields [len(topNames)]gjson.Result

// gatherTop reads root's top-level fields; for a key given twice the first counts, as with gjson.Get.
func gatherTop(root gjson.Result) (t topFields) {
	root.ForEach(func(k, v gjson.Result) bool {
		if i, ok := topIndex[k.Str]; ok && !t[i].Exists() {
			t[i] = v
		}
		return true
	})
	return t
}

// get returns the field name, which must be one of topNames.
func (t *topFields) get(name string) gjson.Result {
	i, ok := topIndex[name]
	if !ok {
		panic("relay: request field " + name + " is not gathered")
	}
	return t[i]
}
