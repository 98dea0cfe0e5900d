package hunyuan

import (
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// finishReason maps Hunyuan's FinishReason to OpenAI's vocabulary ("" stays "": not finished).
func finishReason(r string) string {
	switch r {
	case "", "stop", "tool_calls", "length":
		return r
	case "sensitive": // stream moderation cut the answer
		return "content_filter"
	}
	return "stop"
}

// parseUsage reads Usage in one pass (it is on every stream frame).
func parseUsage(u gjson.Result) adaptor.Usage {
	var p, c, t int
	u.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "PromptTokens":
			p = int(v.Int())
		case "CompletionTokens":
			c = int(v.Int())
		case "TotalTokens":
			t = int(v.Int())
		}
		return true
	})
	if t == 0 {
		t = p + c
	}
	return adaptor.Usage{PromptTokens: p, CompletionTokens: c, TotalTokens: t}
}

var (
	rootFields     = []string{"Response"}
	responseFields = []string{"Error", "Choices", "Id", "RequestId", "Created", "Usage"}
	choiceFields   = []string{"Message", "FinishReason"}
	messageFields  = []string{"Content", "ReasoningContent", "ToolCalls"}
)

// translateResponse turns a non-stream answer into an OpenAI chat.completion. now is used only when the
// answer has no Created. Each level is read in one pass (adaptor.ObjectFields): the answer is mostly one
// long Content string, which a path lookup per field would walk again and again.
func translateResponse(body []byte, req *adaptor.Request, now time.Time) (*adaptor.Completion, error) {
	var root [1][]byte
	if !adaptor.ObjectFields(body, rootFields, root[:]) {
		return nil, adaptor.UpstreamError(502, "bad_response", "hunyuan answer is not JSON")
	}
	r := root[0]
	if r == nil {
		r = body // one documented example has no Response wrapper
	}
	var f [6][]byte // Error, Choices, Id, RequestId, Created, Usage
	adaptor.ObjectFields(r, responseFields, f[:])
	if len(f[0]) > 0 && f[0][0] == '{' {
		e := gjson.ParseBytes(f[0])
		return nil, apiError(e.Get("Code").String(), e.Get("Message").String(), adaptor.StringValue(f[3]))
	}
	id := adaptor.StringValue(f[2])
	if id == "" {
		id = adaptor.StringValue(f[3])
	}
	if id == "" {
		id = adaptor.NewID("")
	}
	created := gjson.ParseBytes(f[4]).Int()
	if created == 0 {
		created = now.Unix()
	}

	b := make([]byte, 0, 256+len(body))
	b = append(b, `{"id":`...)
	b = adaptor.AppendJSONString(b, "chatcmpl-"+id)
	b = append(b, `,"object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = adaptor.AppendJSONString(b, req.Model)
	b = append(b, `,"choices":[`...)
	var text string
	i := 0
	adaptor.EachElement(f[1], func(c []byte) {
		if i > 0 {
			b = append(b, ',')
		}
		var cf [2][]byte // Message, FinishReason
		adaptor.ObjectFields(c, choiceFields, cf[:])
		var mf [3][]byte // Content, ReasoningContent, ToolCalls
		adaptor.ObjectFields(cf[0], messageFields, mf[:])
		content := adaptor.StringValue(mf[0])
		if i == 0 {
			text = content
		}
		b = appendChoice(b, i, content, adaptor.StringValue(mf[1]), mf[2], adaptor.StringValue(cf[1]))
		i++
	})
	if i == 0 { // not an array, or an empty one
		return nil, adaptor.UpstreamError(502, "bad_response", "hunyuan answer has no Choices")
	}
	b = append(b, `],"usage":`...)

	usage := parseUsage(gjson.ParseBytes(f[5]))
	if !usage.Valid() {
		usage = adaptor.EstimateUsage(req.Body, text)
	}
	b = adaptor.AppendUsage(b, usage)
	b = append(b, '}')
	return &adaptor.Completion{Body: b, Usage: usage}, nil
}

// appendChoice writes choice i of a completion; toolCalls is the raw ToolCalls array (nil when absent).
func appendChoice(b []byte, i int, content, reasoning string, toolCalls []byte, finishRaw string) []byte {
	calls := gjson.ParseBytes(toolCalls)
	hasCalls := calls.IsArray() && len(calls.Array()) > 0
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `,"message":{"role":"assistant","content":`...)
	if content == "" && hasCalls {
		b = append(b, "null"...)
	} else {
		b = adaptor.AppendJSONString(b, content)
	}
	if reasoning != "" {
		b = append(b, `,"reasoning_content":`...)
		b = adaptor.AppendJSONString(b, reasoning)
	}
	if hasCalls {
		b = append(b, `,"tool_calls":[`...)
		j := 0
		calls.ForEach(func(_, tc gjson.Result) bool {
			if j > 0 {
				b = append(b, ',')
			}
			j++
			b = append(b, `{"id":`...)
			b = adaptor.AppendJSONString(b, tc.Get("Id").String())
			b = append(b, `,"type":"function","function":{"name":`...)
			b = adaptor.AppendJSONString(b, tc.Get("Function.Name").String())
			b = append(b, `,"arguments":`...)
			b = adaptor.AppendJSONString(b, jsonText(tc.Get("Function.Arguments")))
			b = append(b, "}}"...)
			return true
		})
		b = append(b, ']')
	}
	b = append(b, `,"refusal":null},"logprobs":null,"finish_reason":`...)
	finish := finishReason(finishRaw)
	if finish == "" {
		finish = "stop"
		if hasCalls {
			finish = "tool_calls"
		}
	}
	b = adaptor.AppendJSONString(b, finish)
	return append(b, '}')
}
