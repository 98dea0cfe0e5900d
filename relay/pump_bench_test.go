package relay

import (
	"io"
	"net/http"
	"testing"
	"time"

	"relay/adaptor"
)

type loopEvents struct {
	ev adaptor.Event
}

func (l *loopEvents) Next() (*adaptor.Event, error) { return &l.ev, nil }
func (l *loopEvents) Close() error                  { return nil }

type nopFlusher struct{ io.Writer }

func (nopFlusher) Header() http.Header { return http.Header{} }
func (nopFlusher) WriteHeader(int)     {}
func (nopFlusher) Flush()              {}

// countingEvents yields n events then io.EOF.
type countingEvents struct {
	n  int
	ev adaptor.Event
}

func (c *countingEvents) Next() (*adaptor.Event, error) {
	if c.n == 0 {
		return nil, io.EOF
	}
	c.n--
	return &c.ev, nil
}
func (c *countingEvents) Close() error { return nil }

// BenchmarkPumpChunk is the relay's per-chunk cost on the OpenAI surface: read the event's content and
// finish reason, keep the answer, frame it with the stream's fixed envelope, write and flush.
func BenchmarkPumpChunk(b *testing.B) {
	req := &adaptor.Request{Model: "gpt-4o-mini", Stream: true, IncludeUsage: true, Body: []byte(`{"messages":[]}`)}
	f := newOpenAIFramer(io.Discard, req)
	co := &Core{maxAnswer: 1 << 20, keepAlive: 15 * time.Second} // the default keep-alive timer, armed per event
	ev := &countingEvents{n: b.N, ev: adaptor.Event{Choices: []byte(`[{"index":0,"delta":{"content":"It is a"},"logprobs":null,"finish_reason":null}]`),
		HasUsage: true, Usage: adaptor.Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}}}
	b.ReportAllocs()
	b.ResetTimer()
	res := co.Pump(ev, f, nopFlusher{io.Discard}, req, time.Now())
	b.StopTimer()
	if res.Err != nil {
		b.Fatal(res.Err)
	}
}
