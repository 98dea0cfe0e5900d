package ollama

import (
	"context"
	"os"
	"testing"

	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/streamtest"
)

// benchChunks measures one translated chunk: NDJSON framing, decoding, chunk building.
func benchChunks(b *testing.B, line string) {
	old := adaptor.NewToolCallID
	adaptor.NewToolCallID = func() string { return "call_x" }
	b.Cleanup(func() { adaptor.NewToolCallID = old })
	a := &Adaptor{}
	ev := a.newEvents(context.Background(), streamtest.NewLoop(line+"\n"))
	if _, err := ev.Next(); err != nil { // the first chunk carries the role; measure the steady state
		b.Fatal(err)
	}
	b.SetBytes(int64(len(line) + 1))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := ev.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// A content object as the wire doc shows it.
func BenchmarkStreamChunk(b *testing.B) {
	benchChunks(b, `{"model":"llama3.2","created_at":"2024-11-05T09:12:44.031Z","message":{"role":"assistant","content":"t"},"done":false}`)
}

// Content with JSON escapes (newlines, quotes) makes gjson unescape into a new string.
func BenchmarkStreamChunkEscaped(b *testing.B) {
	benchChunks(b, `{"model":"qwen2.5:7b","created_at":"2024-11-05T09:12:44.031234567Z","message":{"role":"assistant","content":"巴黎\n\n\"首都\" é"},"done":false}`)
}

// A thinking model's reasoning object.
func BenchmarkStreamChunkThinking(b *testing.B) {
	benchChunks(b, `{"model":"qwen3:8b","created_at":"2024-11-05T09:12:44.031234567Z","message":{"role":"assistant","content":"","thinking":" the user"},"done":false}`)
}

// A tool-call object (rare: once per call); measured for reference.
func BenchmarkStreamChunkToolCall(b *testing.B) {
	benchChunks(b, `{"model":"qwen3","created_at":"2025-01-01T00:00:00.2Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"index":0,"name":"get_tide","arguments":{"port":"Brest"}}}]},"done":false}`)
}

// Request translation happens once per request; measured for reference.
func BenchmarkBuildBody(b *testing.B) {
	raw, err := os.ReadFile("testdata/request/tool_history.json")
	if err != nil {
		b.Fatal(err)
	}
	req := &adaptor.Request{Body: []byte(gjsonGet(raw, "openai")), Model: "qwen3"}
	a, ch := New(), &adaptor.Channel{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.buildBody(context.Background(), ch, req, true); err != nil {
			b.Fatal(err)
		}
	}
}

func gjsonGet(b []byte, path string) string { return gjson.GetBytes(b, path).Raw }
