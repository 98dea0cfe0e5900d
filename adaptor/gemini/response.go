package gemini

import (
	"bytes"
	"encoding/json"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// decoder translates GenerateContentResponse objects (a whole answer, or one stream chunk) into
// OpenAI deltas. Its buffers are reused: what decode returns is valid until the next call.
type decoder struct {
	text, thought, tools []byte
	compact              bytes.Buffer
	ncalls               int // tool calls so far in this answer (their OpenAI index)
}

// frame is what one response object says.
type frame struct {
	delta        adaptor.Delta
	usage        adaptor.Usage
	hasUsage     bool
	hasCandidate bool
	responseID   string
	err          *adaptor.Error
}

// decode reads one GenerateContentResponse. errStatus is the HTTP status given to an error object.
func (d *decoder) decode(s string, errStatus int) frame {
	var fr frame
	var cands, usage, feedback gjson.Result
	gjson.Parse(s).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "candidates":
			cands = v
		case "usageMetadata":
			usage = v
		case "promptFeedback":
			feedback = v
		case "responseId":
			fr.responseID = v.Str
		case "error":
			if v.IsObject() {
				fr.err = errorFrom(errStatus, v)
				return false
			}
		}
		return true
	})
	if fr.err != nil {
		return fr
	}
	if usage.IsObject() {
		fr.usage, fr.hasUsage = parseUsage(usage), true
	}
	d.text, d.thought, d.tools = d.text[:0], d.thought[:0], d.tools[:0]
	finish := ""
	cands.ForEach(func(_, c gjson.Result) bool {
		fr.hasCandidate = true
		c.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "content":
				d.parts(v.Get("parts"))
			case "finishReason":
				finish = v.Str
			}
			return true
		})
		return false // n=1: only the first candidate
	})
	if !fr.hasCandidate {
		if r := feedback.Get("blockReason").Str; r != "" {
			// The prompt was blocked: an empty answer filtered by content policy.
			finish = "SAFETY"
		}
	}
	fr.delta.Content = adaptor.BytesString(d.text)
	fr.delta.ReasoningContent = adaptor.BytesString(d.thought)
	if len(d.tools) > 0 {
		d.tools = append(d.tools, ']')
		fr.delta.ToolCalls = d.tools
	}
	if finish != "" {
		fr.delta.FinishReason = mapFinish(finish, d.ncalls > 0)
	}
	return fr
}

// parts appends a candidate's parts: text, thoughts (thought: true) and function calls.
func (d *decoder) parts(parts gjson.Result) {
	parts.ForEach(func(_, p gjson.Result) bool {
		var text, call gjson.Result
		thought := false
		p.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "text":
				text = v
			case "thought":
				thought = v.Type == gjson.True
			case "functionCall":
				call = v
			}
			return true
		})
		switch {
		case call.IsObject():
			d.call(call)
		case thought:
			d.thought = append(d.thought, text.Str...)
		default:
			d.text = append(d.text, text.Str...)
		}
		return true
	})
}

// call appends one OpenAI tool_call delta (whole: Gemini does not fragment function calls).
func (d *decoder) call(fc gjson.Result) {
	if len(d.tools) == 0 {
		d.tools = append(d.tools, '[')
	} else {
		d.tools = append(d.tools, ',')
	}
	var name, id, args gjson.Result
	fc.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "name":
			name = v
		case "id":
			id = v
		case "args":
			args = v
		}
		return true
	})
	// Gemini's functionCall has no id unless the API sends one; OpenAI clients need one.
	callID := id.Str
	if callID == "" {
		callID = adaptor.NewToolCallID()
	}
	raw := args.Raw
	if raw == "" || args.Type == gjson.Null {
		raw = "{}"
	} else if bytes.ContainsAny(adaptor.StringBytes(raw), " \t\r\n") {
		d.compact.Reset()
		if json.Compact(&d.compact, adaptor.StringBytes(raw)) == nil {
			raw = adaptor.BytesString(d.compact.Bytes())
		}
	}
	d.tools = adaptor.AppendToolCallStart(d.tools, d.ncalls, callID, name.Str, raw)
	d.ncalls++
}

// mapFinish maps a Gemini finishReason to OpenAI's. A STOP after function calls is tool_calls.
func mapFinish(r string, calls bool) string {
	switch r {
	case "MAX_TOKENS":
		return "length"
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
		"IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION":
		return "content_filter"
	}
	// STOP, and MALFORMED_FUNCTION_CALL, OTHER, LANGUAGE, FINISH_REASON_UNSPECIFIED or anything new.
	if calls {
		return "tool_calls"
	}
	return "stop"
}

// parseUsage reads usageMetadata; thinking tokens count as completion tokens.
func parseUsage(u gjson.Result) adaptor.Usage {
	var p, c, thoughts, t int64
	u.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "promptTokenCount":
			p = v.Int()
		case "candidatesTokenCount":
			c = v.Int()
		case "thoughtsTokenCount":
			thoughts = v.Int()
		case "totalTokenCount":
			t = v.Int()
		}
		return true
	})
	c += thoughts
	if t == 0 {
		t = p + c
	}
	return adaptor.Usage{PromptTokens: int(p), CompletionTokens: int(c), TotalTokens: int(t)}
}
