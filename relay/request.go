package relay

import (
	"strconv"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// ParseChatRequest validates an OpenAI chat request body with gjson (no unmarshal) and extracts the
// fields the core needs. Errors are 400s naming the offending field.
func ParseChatRequest(body []byte) (*adaptor.Request, *adaptor.Error) {
	if !gjson.ValidBytes(body) {
		return nil, adaptor.BadRequest("", "request body is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, adaptor.BadRequest("", "request body must be a JSON object")
	}
	f := root.Get("model")
	if f.Type != gjson.String || f.Str == "" {
		return nil, missingOrType("model", f, "a non-empty string")
	}
	req := &adaptor.Request{Body: body, Model: f.Str}

	if e := checkMessages(root.Get("messages")); e != nil {
		return nil, e
	}
	if f = root.Get("stream"); f.Exists() && f.Type != gjson.Null {
		if f.Type != gjson.True && f.Type != gjson.False {
			return nil, typeError("stream", "a boolean")
		}
		req.Stream = f.Type == gjson.True
	}
	if f = root.Get("stream_options"); f.Exists() && f.Type != gjson.Null {
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
		if f = root.Get(name); f.Exists() && f.Type != gjson.Null && f.Type != gjson.Number {
			return nil, typeError(name, "a number")
		}
	}
	if n := root.Get("n"); n.Type == gjson.Number && n.Int() != 1 {
		return nil, adaptor.BadRequest("n", "n must be 1: the relay returns one choice")
	}
	if f = root.Get("stop"); f.Exists() && f.Type != gjson.Null && f.Type != gjson.String && !f.IsArray() {
		return nil, typeError("stop", "a string or an array of strings")
	}
	if f = root.Get("user"); f.Exists() && f.Type != gjson.Null {
		if f.Type != gjson.String {
			return nil, typeError("user", "a string")
		}
		req.User = f.Str
	}
	if f = root.Get("tools"); f.Exists() && f.Type != gjson.Null && !f.IsArray() {
		return nil, typeError("tools", "an array")
	}
	if e := parseFastGPTFields(root, req); e != nil {
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
		at := "messages[" + strconv.Itoa(i) + "]"
		i++
		if !m.IsObject() {
			err = typeError(at, "an object")
			return false
		}
		role := m.Get("role")
		if role.Type != gjson.String || !roles[role.Str] {
			err = adaptor.BadRequest(at+".role", at+".role must be one of system, developer, user, assistant, tool")
			return false
		}
		content := m.Get("content")
		switch {
		case content.Type == gjson.String:
		case content.IsArray():
			j := 0
			content.ForEach(func(_, p gjson.Result) bool {
				pat := at + ".content[" + strconv.Itoa(j) + "]"
				j++
				if !p.IsObject() || p.Get("type").Type != gjson.String {
					err = adaptor.BadRequest(pat, pat+" must be an object with a string type")
					return false
				}
				if p.Get("type").Str == "text" && p.Get("text").Type != gjson.String {
					err = typeError(pat+".text", "a string")
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
			err = typeError(at+".content", "a string or an array of content parts")
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
func parseFastGPTFields(root gjson.Result, req *adaptor.Request) *adaptor.Error {
	var e *adaptor.Error
	if req.ChatID, e = eitherString(root, "chatId", "chat_id"); e != nil {
		return e
	}
	if req.ResponseChatItemID, e = eitherString(root, "responseChatItemId", "response_chat_item_id"); e != nil {
		return e
	}
	if f := root.Get("detail"); f.Exists() && f.Type != gjson.Null {
		if f.Type != gjson.True && f.Type != gjson.False {
			return typeError("detail", "a boolean")
		}
		req.Detail = f.Type == gjson.True
	}
	if f := root.Get("variables"); f.Exists() && f.Type != gjson.Null {
		if !f.IsObject() {
			return typeError("variables", "an object")
		}
		req.Variables = []byte(f.Raw)
	}
	return nil
}

// eitherString reads a string field that may come under two names; if both are given they must agree.
func eitherString(root gjson.Result, a, b string) (string, *adaptor.Error) {
	fa, fb := root.Get(a), root.Get(b)
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
