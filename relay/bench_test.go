package relay_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"relay/adaptor"
	"relay/relay"
	"relay/store"
	"relay/store/sqlite"
)

// stubAdaptor answers from memory, so the handler benchmarks measure the relay alone.
type stubAdaptor struct{}

var stubCompletion = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1731000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"It is a heron."},"finish_reason":"stop"}],"usage":{"prompt_tokens":41,"completion_tokens":6,"total_tokens":47}}`)

func (stubAdaptor) Complete(context.Context, *adaptor.Channel, *adaptor.Request) (*adaptor.Completion, error) {
	return &adaptor.Completion{Body: stubCompletion, Usage: adaptor.Usage{PromptTokens: 41, CompletionTokens: 6, TotalTokens: 47}}, nil
}

func (stubAdaptor) Stream(context.Context, *adaptor.Channel, *adaptor.Request) (adaptor.Events, error) {
	return &stubEvents{}, nil
}

type stubEvents struct {
	i  int
	ev adaptor.Event
}

var stubChoices = []byte(`[{"index":0,"delta":{"content":"word "},"finish_reason":null}]`)

func (s *stubEvents) Next() (*adaptor.Event, error) {
	s.i++
	switch {
	case s.i <= 20:
		s.ev = adaptor.Event{Choices: stubChoices}
	case s.i == 21:
		s.ev = adaptor.Event{Choices: []byte(`[{"index":0,"delta":{},"finish_reason":"stop"}]`), HasUsage: true,
			Usage: adaptor.Usage{PromptTokens: 41, CompletionTokens: 20, TotalTokens: 61}}
	default:
		return nil, io.EOF
	}
	return &s.ev, nil
}

func (s *stubEvents) Close() error { return nil }

func benchHandler(b *testing.B) (http.Handler, string, func()) {
	cfg, err := relay.LoadConfig("")
	if err != nil {
		b.Fatal(err)
	}
	cfg.Channels = []relay.ChannelConfig{{Name: "stub", Kind: "stub", Enabled: "true", Models: []string{"bench"}}}
	chans, err := cfg.BuildChannels(map[string]adaptor.Adaptor{"stub": stubAdaptor{}})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(b.TempDir()+"/bench.db", sqlite.Options{Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	key := "sk-relay-bench"
	if _, err := st.CreateKey(context.Background(), store.Key{Name: "bench", Prefix: "sk", Hash: relay.HashKey(key)}); err != nil {
		b.Fatal(err)
	}
	return relay.NewServer(cfg, st, chans, log).Handler(), key, func() { st.Close() }
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Flush()                      {}

func benchRequests(b *testing.B, body string) {
	h, key, done := benchHandler(b)
	defer done()
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.Body = io.NopCloser(bytes.NewReader([]byte(body)))
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// BenchmarkHandlerNonStream is the whole request path (auth with the key cache, body read, validation,
// core, accounting into the async store writer) around an in-memory upstream.
func BenchmarkHandlerNonStream(b *testing.B) {
	benchRequests(b, `{"model":"bench","messages":[{"role":"system","content":"Answer in one short sentence."},{"role":"user","content":"What animal is on this sign?"}],"temperature":0.3}`)
}

// BenchmarkHandlerStream21 is the same for a 21-chunk stream.
func BenchmarkHandlerStream21(b *testing.B) {
	benchRequests(b, `{"model":"bench","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"What animal is on this sign?"}]}`)
}
