package hunyuantest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// chatRequest lists the ChatCompletions fields of the wire reference; other keys are refused, so a
// misspelt key in the adaptor's output shows up in tests.
type chatRequest struct {
	Model                      string
	Messages                   []message
	Stream                     bool
	StreamModeration           *bool
	TopP                       *float64
	Temperature                *float64
	EnableEnhancement          *bool
	Tools                      []tool
	ToolChoice                 string
	CustomTool                 *tool
	SearchInfo                 *bool
	Citation                   *bool
	EnableSpeedSearch          *bool
	EnableMultimedia           *bool
	EnableDeepSearch           *bool
	ForceSearchEnhancement     *bool
	EnableRecommendedQuestions *bool
	EnableDeepRead             *bool
	WebSearchOptions           json.RawMessage
	TopicChoice                string
	Seed                       *int64
	Stop                       []string
}

type message struct {
	Role             string
	Content          string
	Contents         []content
	ToolCallId       string
	ToolCalls        []toolCall
	FileIDs          []string
	ReasoningContent string
}

type content struct {
	Type     string
	Text     string
	ImageUrl *struct{ Url string }
}

type tool struct {
	Type     string
	Function struct {
		Name        string
		Parameters  string
		Description string
	}
}

// decodeRequest parses and checks a body; it returns a Tencent error code and message on failure.
func decodeRequest(body []byte, req *chatRequest) (code, msg string) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		if strings.Contains(err.Error(), "unknown field") {
			return "UnknownParameter", err.Error()
		}
		return "InvalidParameter", "body is not a valid request: " + err.Error()
	}
	if msg := checkKeys(body); msg != "" {
		return "UnknownParameter", msg
	}
	if req.Model == "" {
		return "MissingParameter", "Model is required"
	}
	if msg := checkMessages(req.Messages); msg != "" {
		return "InvalidParameter", msg
	}
	for i, t := range req.Tools {
		if t.Type != "function" || t.Function.Name == "" {
			return "InvalidParameter", "Tools[" + strconv.Itoa(i) + "] needs Type function and a Name"
		}
		if t.Function.Parameters != "" && !json.Valid([]byte(t.Function.Parameters)) {
			return "InvalidParameter", "Tools[" + strconv.Itoa(i) + "].Function.Parameters is not a JSON string"
		}
	}
	switch req.ToolChoice {
	case "", "none", "auto":
	case "custom":
		if req.CustomTool == nil {
			return "InvalidParameter", "ToolChoice custom needs CustomTool"
		}
	default:
		return "InvalidParameterValue", "ToolChoice must be none, auto or custom"
	}
	if req.Seed != nil && (*req.Seed < 1 || *req.Seed > 10000) {
		return "InvalidParameterValue", "Seed must be in 1..10000"
	}
	if req.Temperature != nil && (*req.Temperature < 0 || *req.Temperature > 2) {
		return "InvalidParameterValue", "Temperature must be 2 or less"
	}
	return "", ""
}

// checkMessages applies Hunyuan's documented message rules.
func checkMessages(msgs []message) string {
	if len(msgs) == 0 {
		return "Messages must not be empty"
	}
	if len(msgs) > 40 {
		return "Messages has more than 40 items"
	}
	prev := ""
	for i, m := range msgs {
		at := "Messages[" + strconv.Itoa(i) + "]"
		switch m.Role {
		case "system":
			if i != 0 {
				return at + ": system is allowed only as the first message"
			}
		case "user":
			if prev == "user" || prev == "tool" {
				return at + ": user must follow assistant"
			}
		case "assistant":
			if prev != "user" && prev != "tool" {
				return at + ": assistant must follow user or tool"
			}
		case "tool":
			if m.ToolCallId == "" {
				return at + ": tool needs ToolCallId"
			}
			if prev != "tool" && !(prev == "assistant" && len(msgs[i-1].ToolCalls) > 0) {
				return at + ": tool must follow an assistant tool call"
			}
		default:
			return at + ": unknown Role " + m.Role
		}
		if msg := checkContent(m); msg != "" {
			return at + ": " + msg
		}
		if m.Role != "system" && prev == "" && m.Role != "user" {
			return at + ": the conversation must start with user"
		}
		prev = m.Role
	}
	if prev != "user" && prev != "tool" {
		return "the last message must be user or tool"
	}
	return ""
}

func checkContent(m message) string {
	if m.Content != "" && len(m.Contents) > 0 {
		return "set Content or Contents, not both"
	}
	if len(m.Contents) > 0 {
		texts := 0
		for _, c := range m.Contents {
			switch {
			case c.Type == "text" && c.Text != "":
				texts++
			case c.Type == "image_url" && c.ImageUrl != nil && c.ImageUrl.Url != "":
			default:
				return "bad Contents item"
			}
		}
		if texts == 0 {
			return "Contents needs a text item"
		}
		return ""
	}
	if strings.TrimSpace(m.Content) == "" && !(m.Role == "assistant" && len(m.ToolCalls) > 0) {
		return "Content must not be empty"
	}
	return ""
}

// Key sets for checkKeys: encoding/json matches names case-insensitively, Tencent does not.
var (
	requestKeys  = keySet(chatRequest{})
	messageKeys  = keySet(message{})
	toolKeys     = map[string]bool{"Type": true, "Function": true}
	functionKeys = map[string]bool{"Name": true, "Parameters": true, "Description": true}
	contentKeys  = map[string]bool{"Type": true, "Text": true, "ImageUrl": true}
	callKeys     = map[string]bool{"Id": true, "Type": true, "Function": true, "Index": true}
)

func keySet(v any) map[string]bool {
	t := reflect.TypeOf(v)
	m := make(map[string]bool, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		m[t.Field(i).Name] = true
	}
	return m
}

// checkKeys reports the first key whose exact spelling is not a ChatCompletions field.
func checkKeys(body []byte) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return ""
	}
	if k := unknownKey(top, requestKeys); k != "" {
		return "unknown parameter " + k
	}
	var msgs []map[string]json.RawMessage
	_ = json.Unmarshal(top["Messages"], &msgs)
	for i, m := range msgs {
		at := "Messages[" + strconv.Itoa(i) + "]."
		if k := unknownKey(m, messageKeys); k != "" {
			return "unknown parameter " + at + k
		}
		if k := unknownItemKey(m["Contents"], contentKeys); k != "" {
			return "unknown parameter " + at + "Contents." + k
		}
		if k := unknownItemKey(m["ToolCalls"], callKeys); k != "" {
			return "unknown parameter " + at + "ToolCalls." + k
		}
	}
	var tools []map[string]json.RawMessage
	_ = json.Unmarshal(top["Tools"], &tools)
	if c, ok := top["CustomTool"]; ok {
		var ct map[string]json.RawMessage
		_ = json.Unmarshal(c, &ct)
		tools = append(tools, ct)
	}
	for _, t := range tools {
		if k := unknownKey(t, toolKeys); k != "" {
			return "unknown tool parameter " + k
		}
		var fn map[string]json.RawMessage
		_ = json.Unmarshal(t["Function"], &fn)
		if k := unknownKey(fn, functionKeys); k != "" {
			return "unknown tool parameter Function." + k
		}
	}
	return ""
}

func unknownKey(m map[string]json.RawMessage, known map[string]bool) string {
	for k := range m {
		if !known[k] {
			return k
		}
	}
	return ""
}

// unknownItemKey checks the keys of each object in a JSON array.
func unknownItemKey(raw json.RawMessage, known map[string]bool) string {
	var items []map[string]json.RawMessage
	_ = json.Unmarshal(raw, &items)
	for _, it := range items {
		if k := unknownKey(it, known); k != "" {
			return k
		}
	}
	return ""
}
