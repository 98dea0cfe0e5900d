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

// translateResponse turns a non-stream answer into an OpenAI chat.completion. now is used only when the
// answer has no Created.
func translateResponse(body []byte, req *adaptor.Request, now time.Time) (*adaptor.Completion, error) {
	if !gjson.ValidBytes(body) {
		return nil, adaptor.UpstreamError(502, "bad_response", "hunyuan answer is not JSON")
	}
	root := gjson.ParseBytes(body)
	if e := responseError(root); e != nil {
		return nil, e
	}
	r := root.Get("Response")
	if !r.Exists() {
		r = root // one documented example has no Response wrapper
	}
	choices := r.Get("Choices")
	if !choices.IsArray() || len(choices.Array()) == 0 {
		return nil, adaptor.UpstreamError(502, "bad_response", "hunyuan answer has no Choices")
	}

	id := r.Get("Id").String()
	if id == "" {
		id = r.Get("RequestId").String()
	}
	if id == "" {
		id = adaptor.NewID("")
	}
	created := r.Get("Created").Int()
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
	var text []byte
	i := 0
	choices.ForEach(func(_, c gjson.Result) bool {
		if i > 0 {
			b = append(b, ',')
		}
		m := c.Get("Message")
		if i == 0 {
			text = append(text, m.Get("Content").String()...)
		}
		b = appendChoice(b, c, m, i)
		i++
		return true
	})
	b = append(b, `],"usage":`...)

	usage := parseUsage(r.Get("Usage"))
	if !usage.Valid() {
		usage = adaptor.EstimateUsage(req.Body, string(text))
	}
	b = adaptor.AppendUsage(b, usage)
	b = append(b, '}')
	return &adaptor.Completion{Body: b, Usage: usage}, nil
}

func appendChoice(b []byte, c, m gjson.Result, i int) []byte {
	calls := m.Get("ToolCalls")
	hasCalls := len(calls.Array()) > 0
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `,"message":{"role":"assistant","content":`...)
	if content := m.Get("Content").String(); content == "" && hasCalls {
		b = append(b, "null"...)
	} else {
		b = adaptor.AppendJSONString(b, content)
	}
	if rc := m.Get("ReasoningContent").String(); rc != "" {
		b = append(b, `,"reasoning_content":`...)
		b = adaptor.AppendJSONString(b, rc)
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
	finish := finishReason(c.Get("FinishReason").String())
	if finish == "" {
		finish = "stop"
		if hasCalls {
			finish = "tool_calls"
		}
	}
	b = adaptor.AppendJSONString(b, finish)
	return append(b, '}')
}
