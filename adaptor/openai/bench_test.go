package openai

import (
	"context"
	"testing"

	"relay/adaptor/streamtest"
)

// A content chunk as OpenAI sends it.
const chunkFrame = `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"content":" heron"},"logprobs":null,"finish_reason":null}],"usage":null}`

// BenchmarkStreamChunk is one passthrough chunk: SSE framing, validation, choices and usage picked out.
func BenchmarkStreamChunk(b *testing.B) {
	ev := NewEvents(context.Background(), streamtest.NewLoop("data: "+chunkFrame+"\n\n"))
	b.SetBytes(int64(len(chunkFrame) + 8))
	b.ReportAllocs()
	for b.Loop() {
		e, err := ev.Next()
		if err != nil || len(e.Choices) == 0 {
			b.Fatal(err)
		}
	}
}
