package adaptor

import (
	"testing"

	"github.com/tidwall/gjson"
)

// The accumulator must copy what it keeps: adaptors reuse the event's bytes for the next chunk.
func TestAccumulatorCopiesReusedBytes(t *testing.T) {
	var acc Accumulator
	var b ChunkBuilder
	ev := &Event{Choices: b.Choices(Delta{ToolCalls: []byte(`[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"a\":"}}]`)})}
	acc.Add(ev)
	ev.Choices = b.Choices(Delta{ToolCalls: []byte(`[{"index":0,"function":{"arguments":"1}"}}]`)})
	acc.Add(ev)
	ev.Choices = b.Choices(Delta{FinishReason: "tool_calls"})
	acc.Add(ev)
	ev.Choices = b.Choices(Delta{Content: "overwrite the buffer with something much longer than before"})
	acc.Usage = Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}
	body := acc.Completion("chatcmpl-x", 1, "m").Body
	g := gjson.ParseBytes(body)
	tc := g.Get("choices.0.message.tool_calls.0")
	if tc.Get("id").Str != "call_1" || tc.Get("function.name").Str != "lookup" || tc.Get("function.arguments").Str != `{"a":1}` ||
		g.Get("choices.0.finish_reason").Str != "tool_calls" {
		t.Fatalf("completion %s", body)
	}
}
