package anthropic

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"relay/adaptor"
	"relay/adaptor/streamtest"
)

const streamHead = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-3-5-haiku-20241022\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":14,\"output_tokens\":1}}}\n\n" +
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_tide\",\"input\":{}}}\n\n"

func benchFrames(b *testing.B, frame string) {
	ev := NewEvents(context.Background(), io.NopCloser(io.MultiReader(strings.NewReader(streamHead), streamtest.NewLoop(frame))))
	for range 2 { // role chunk and tool call start
		if _, err := ev.Next(); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e, err := ev.Next()
		if err != nil || len(e.Choices) == 0 {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamTextDelta is the per-chunk cost of the common case: one text_delta frame in, one
// OpenAI choices array out.
func BenchmarkStreamTextDelta(b *testing.B) {
	benchFrames(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" the quick brown fox\"}}\n\n")
}

// BenchmarkStreamTextDeltaEscaped has escapes and non-ASCII text (gjson unescapes into a new string).
func BenchmarkStreamTextDeltaEscaped(b *testing.B) {
	benchFrames(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\\"巴黎\\\" est\\n la capitale\"}}\n\n")
}

// BenchmarkStreamToolDelta is one input_json_delta frame (a tool call arguments fragment).
func BenchmarkStreamToolDelta(b *testing.B) {
	benchFrames(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"port\\\": \\\"Br\"}}\n\n")
}

// BenchmarkStreamWhole decodes the doc's whole example stream, per stream.
func BenchmarkStreamWhole(b *testing.B) {
	data, err := os.ReadFile("testdata/stream/text.sse")
	if err != nil {
		b.Fatal(err)
	}
	r := &rewinder{}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.data, r.off = data, 0
		ev := NewEvents(context.Background(), r)
		for {
			if _, err := ev.Next(); err != nil {
				if !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

type rewinder struct {
	data []byte
	off  int
}

func (r *rewinder) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

func (r *rewinder) Close() error { return nil }

// BenchmarkBuildRequest converts a tool-calling conversation.
func BenchmarkBuildRequest(b *testing.B) {
	body, err := os.ReadFile("testdata/request/tools.in.json")
	if err != nil {
		b.Fatal(err)
	}
	req := &adaptor.Request{Body: body, Model: "m", UpstreamModel: "m"}
	set := settings{maxTokens: DefaultMaxTokens}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := buildRequest(context.Background(), set, req, true); err != nil {
			b.Fatal(err)
		}
	}
}
