package fastgpt

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"relay/adaptor"
)

// openAIChunk frames an event's choices the way the relay's OpenAI surface does.
func openAIChunk(choices []byte) []byte {
	b := []byte(`{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1731000000,"model":"support-bot","choices":`)
	b = append(b, choices...)
	return append(b, '}')
}

// checkChoices holds each choice to the OpenAI chunk shape: integer index, a delta object whose
// role (when present) is assistant and whose content is a string or null, and finish_reason null or
// one of OpenAI's values.
func checkChoices(t *testing.T, choices []byte) {
	t.Helper()
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(choices, &list); err != nil || len(list) == 0 {
		t.Fatalf("choices %s: %v", choices, err)
	}
	for _, c := range list {
		var idx int
		if err := json.Unmarshal(c["index"], &idx); err != nil {
			t.Errorf("index in %s: %v", choices, err)
		}
		var delta map[string]json.RawMessage
		if err := json.Unmarshal(c["delta"], &delta); err != nil || delta == nil {
			t.Errorf("delta in %s: %v", choices, err)
		}
		if r, ok := delta["role"]; ok && string(r) != `"assistant"` {
			t.Errorf("role %s", r)
		}
		if v, ok := delta["content"]; ok && string(v) != "null" {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				t.Errorf("content %s is not a string", v)
			}
		}
		switch f := string(c["finish_reason"]); f {
		case "null", `"stop"`, `"length"`, `"tool_calls"`, `"content_filter"`:
		default:
			t.Errorf("finish_reason %q", f)
		}
	}
}

// TestOpenAIConsumer feeds what Events produce to the official OpenAI Go SDK's chunk type and
// stream accumulator: every chunk parses, the first carries the assistant role, and the SDK rebuilds
// the exact answer.
func TestOpenAIConsumer(t *testing.T) {
	for _, name := range []string{"plain.sse", "detail.sse", "legacy.sse"} {
		t.Run(name, func(t *testing.T) {
			ev := NewEvents(context.Background(), io.NopCloser(strings.NewReader(readFixture(t, name))))
			var acc openai.ChatCompletionAccumulator
			var ours adaptor.Accumulator
			n := 0
			for {
				e, err := ev.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if e.Name != "" {
					continue // surfaces speaking OpenAI drop named events
				}
				checkChoices(t, e.Choices)
				var chunk openai.ChatCompletionChunk
				if err := json.Unmarshal(openAIChunk(e.Choices), &chunk); err != nil {
					t.Fatalf("SDK cannot parse %s: %v", e.Choices, err)
				}
				if len(chunk.Choices) != 1 {
					t.Fatalf("choices %d", len(chunk.Choices))
				}
				if n == 0 && chunk.Choices[0].Delta.Role != "assistant" {
					t.Errorf("first chunk has role %q", chunk.Choices[0].Delta.Role)
				}
				if !acc.AddChunk(chunk) {
					t.Fatalf("SDK accumulator refused chunk %d: %s", n, e.Choices)
				}
				ours.Add(e)
				n++
			}
			want := map[string]string{"plain.sse": "退款须在 30 天内 ✓ 🎉", "detail.sse": "Oslo: 4°C，小雨 ☔", "legacy.sse": "Hi \"there\"\n!"}[name]
			if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != want || acc.Choices[0].FinishReason != "stop" {
				t.Errorf("SDK rebuilt %+v, want %q", acc.Choices, want)
			}
			if ours.Text() != want {
				t.Errorf("relay accumulator rebuilt %q", ours.Text())
			}
		})
	}
}

// TestOpenAIConsumerCompletion parses a non-stream answer with the SDK's completion type.
func TestOpenAIConsumerCompletion(t *testing.T) {
	c, err := pinned().completion(request(true, false), []byte(`{"responseData":[{"inputTokens":3,"outputTokens":2}],"newVariables":{},"id":"conv-7","model":"","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":1},"choices":[{"message":{"role":"assistant","content":"OK ✓"},"finish_reason":"stop","index":0}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var cc openai.ChatCompletion
	if err := json.Unmarshal(c.Body, &cc); err != nil {
		t.Fatal(err)
	}
	if cc.ID == "" || cc.Object != "chat.completion" || cc.Created == 0 || cc.Model != "support-bot" ||
		cc.Choices[0].Message.Content != "OK ✓" || cc.Usage.TotalTokens != 5 || cc.Usage.PromptTokens != 3 {
		t.Errorf("SDK sees %+v", cc)
	}
}
