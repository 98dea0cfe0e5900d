package anthropic

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// finishReason maps an Anthropic stop_reason to OpenAI's finish_reason.
func finishReason(stop string) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	default: // end_turn, stop_sequence, pause_turn, anything new
		return "stop"
	}
}

// parseUsage reads an Anthropic usage object; cache reads and writes count as prompt tokens.
func parseUsage(u gjson.Result) adaptor.Usage {
	in := int(u.Get("input_tokens").Int() + u.Get("cache_creation_input_tokens").Int() + u.Get("cache_read_input_tokens").Int())
	out := int(u.Get("output_tokens").Int())
	return adaptor.Usage{PromptTokens: in, CompletionTokens: out, TotalTokens: in + out}
}

// convertResponse turns an Anthropic message into an OpenAI chat.completion.
func convertResponse(body []byte, req *adaptor.Request) (*adaptor.Completion, error) {
	s := adaptor.BytesString(body)
	if !gjson.Valid(s) {
		return nil, adaptor.UpstreamError(502, "bad_response", "answer is not JSON")
	}
	res := gjson.GetMany(s, "type", "id", "content", "stop_reason", "usage", "error")
	if res[0].Str == "error" || res[5].IsObject() {
		return nil, ParseError(0, body)
	}
	if !res[2].IsArray() {
		return nil, adaptor.UpstreamError(502, "bad_response", "answer is not an Anthropic message")
	}
	var text, reasoning, tools []byte
	ntools := 0
	var err error
	res[2].ForEach(func(_, blk gjson.Result) bool {
		switch blk.Get("type").Str {
		case "text":
			text = append(text, blk.Get("text").Str...)
		case "thinking":
			reasoning = append(reasoning, blk.Get("thinking").Str...)
		case "tool_use":
			if ntools > 0 {
				tools = append(tools, ',')
			}
			tools = append(tools, `{"id":`...)
			tools = adaptor.AppendJSONString(tools, blk.Get("id").Str)
			tools = append(tools, `,"type":"function","function":{"name":`...)
			tools = adaptor.AppendJSONString(tools, blk.Get("name").Str)
			tools = append(tools, `,"arguments":`...)
			args, e := compactInput(blk.Get("input"))
			if e != nil {
				err = e
				return false
			}
			tools = adaptor.AppendJSONString(tools, adaptor.BytesString(args))
			tools = append(tools, "}}"...)
			ntools++
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	usage := parseUsage(res[4])

	out := make([]byte, 0, 256+len(text)+len(reasoning)+len(tools))
	out = append(out, `{"id":`...)
	id := "chatcmpl-" + res[1].Str
	if res[1].Str == "" {
		id = adaptor.NewID("chatcmpl-")
	}
	out = adaptor.AppendJSONString(out, id)
	out = append(out, `,"object":"chat.completion","created":`...)
	out = strconv.AppendInt(out, time.Now().Unix(), 10)
	out = append(out, `,"model":`...)
	out = adaptor.AppendJSONString(out, req.Model)
	out = append(out, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	if len(text) == 0 && ntools > 0 {
		out = append(out, "null"...)
	} else {
		out = adaptor.AppendJSONString(out, adaptor.BytesString(text))
	}
	if len(reasoning) > 0 {
		out = append(out, `,"reasoning_content":`...)
		out = adaptor.AppendJSONString(out, adaptor.BytesString(reasoning))
	}
	if ntools > 0 {
		out = append(out, `,"tool_calls":[`...)
		out = append(out, tools...)
		out = append(out, ']')
	}
	out = append(out, `,"refusal":null},"logprobs":null,"finish_reason":`...)
	out = adaptor.AppendJSONString(out, finishReason(res[3].Str))
	out = append(out, `}],"usage":`...)
	out = adaptor.AppendUsage(out, usage)
	out = append(out, '}')
	return &adaptor.Completion{Body: out, Usage: usage}, nil
}

// compactInput renders a tool_use input as compact JSON text (JSON.stringify(input)).
func compactInput(in gjson.Result) ([]byte, error) {
	if !in.Exists() || in.Type == gjson.Null {
		return []byte("{}"), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, adaptor.StringBytes(in.Raw)); err != nil {
		return nil, adaptor.UpstreamError(502, "bad_response", "tool_use input is not JSON")
	}
	return buf.Bytes(), nil
}
