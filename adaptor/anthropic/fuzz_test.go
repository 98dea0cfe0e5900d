package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"relay/adaptor"
)

// FuzzEvents feeds arbitrary bytes to the stream decoder: it must not panic or loop, every event's
// choices must be valid JSON with tool call indexes that count calls, every error must be an
// *adaptor.Error (or io.EOF after message_stop), and the end must be sticky.
func FuzzEvents(f *testing.F) {
	files, _ := filepath.Glob("testdata/stream/*.sse")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":9,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\"\"}}\n\n"))
	f.Add([]byte("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":5,\"name\":null,\"input\":{\"x\":[1]}}}\n\nevent: message_stop\ndata: {}\n\n"))
	f.Add([]byte("data: {\"type\":\"error\",\"error\":\"x\"}\n\n"))
	f.Add([]byte("event: message_delta\ndata: {\"delta\":{\"stop_reason\":\"\\u0000\"},\"usage\":{\"output_tokens\":-1,\"input_tokens\":1e99}}\n\n"))
	f.Add([]byte("event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\xff\xfe\\ud800\"}}\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev := NewEvents(context.Background(), io.NopCloser(bytes.NewReader(data)))
		defer ev.Close()
		tools := 0
		for i := 0; ; i++ {
			if i > len(data)+2 {
				t.Fatalf("more events than input bytes")
			}
			e, err := ev.Next()
			if err != nil {
				var ae *adaptor.Error
				if !errors.Is(err, io.EOF) && !errors.As(err, &ae) {
					t.Fatalf("error %T %v", err, err)
				}
				if ae != nil && (ae.Status < 400 || ae.Status > 599 || ae.Message == "") {
					t.Fatalf("bad error %#v", ae)
				}
				if _, again := ev.Next(); again != err {
					t.Fatalf("end not sticky: %v then %v", err, again)
				}
				return
			}
			if len(e.Choices) == 0 {
				if !e.HasUsage {
					t.Fatalf("empty event")
				}
				continue
			}
			var choices []struct {
				Index int `json:"index"`
				Delta struct {
					ToolCalls []struct {
						Index int     `json:"index"`
						ID    *string `json:"id"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			}
			if err := json.Unmarshal(e.Choices, &choices); err != nil || len(choices) != 1 {
				t.Fatalf("choices %s: %v", e.Choices, err)
			}
			for _, tc := range choices[0].Delta.ToolCalls {
				if tc.ID != nil {
					if tc.Index != tools {
						t.Fatalf("new tool call index %d, want %d", tc.Index, tools)
					}
					tools++
				} else if tc.Index < 0 || tc.Index >= tools {
					t.Fatalf("tool call delta index %d with %d calls", tc.Index, tools)
				}
			}
		}
	})
}
