package fastgpt

import (
	"context"
	"testing"

	"relay/adaptor/streamtest"
)

func benchChunks(b *testing.B, frame string) {
	ev := NewEvents(context.Background(), streamtest.NewLoop(frame))
	if _, err := ev.Next(); err != nil { // the first chunk may rebuild the role
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		e, err := ev.Next()
		if err != nil || len(e.Choices) == 0 {
			b.Fatal(err)
		}
	}
}

// BenchmarkChunkPlain is one detail=false answer chunk as FastGPT writes it.
func BenchmarkChunkPlain(b *testing.B) {
	benchChunks(b, `data: {"id":"","object":"","created":0,"model":"","choices":[{"delta":{"role":"assistant","content":"Refunds are accepted within"},"index":0,"finish_reason":null}]}`+"\n\n")
}

// BenchmarkChunkDetail is one detail=true answer event with CJK text.
func BenchmarkChunkDetail(b *testing.B) {
	benchChunks(b, "event: answer\n"+`data: {"id":"","object":"","created":0,"model":"","choices":[{"delta":{"role":"assistant","content":"退款须在 30 天内申请。"},"index":0,"finish_reason":null}]}`+"\n\n")
}

// BenchmarkNamedEvent is one pass-through flowNodeStatus event.
func BenchmarkNamedEvent(b *testing.B) {
	frame := "event: flowNodeStatus\ndata: {\"status\":\"running\",\"name\":\"AI chat\"}\n\n"
	ev := NewEvents(context.Background(), streamtest.NewLoop(frame))
	b.ReportAllocs()
	for range b.N {
		e, err := ev.Next()
		if err != nil || e.Name != EventFlowNodeStatus {
			b.Fatal(err)
		}
	}
}
