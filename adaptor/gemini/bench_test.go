package gemini

import (
	"context"
	"io"
	"os"
	"testing"

	"relay/adaptor"
)

// repeatReader replays one SSE frame n times without allocating.
type repeatReader struct {
	frame []byte
	n     int
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	w := 0
	for w < len(p) {
		if r.off == len(r.frame) {
			if r.n == 0 {
				break
			}
			r.n--
			r.off = 0
		}
		c := copy(p[w:], r.frame[r.off:])
		r.off += c
		w += c
	}
	if w == 0 {
		return 0, io.EOF
	}
	return w, nil
}

func benchStream(b *testing.B, frame string) {
	r := &repeatReader{frame: []byte(frame), n: b.N, off: len(frame)}
	ev := NewEvents(context.Background(), io.NopCloser(r))
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

// One typical streamed text chunk (running usage, model version), plain text.
func BenchmarkStreamChunk(b *testing.B) {
	benchStream(b, `data: {"candidates":[{"content":{"role":"model","parts":[{"text":" — it develops from the flower's ovary, which is why"}]},"index":0}],"usageMetadata":{"promptTokenCount":27,"totalTokenCount":27},"modelVersion":"gemini-2.0-flash","responseId":"mZ3kZ_abc123"}`+"\r\n\r\n")
}

// A chunk whose text has JSON escapes (newlines, quotes), which gjson must unescape.
func BenchmarkStreamChunkEscaped(b *testing.B) {
	benchStream(b, `data: {"candidates":[{"content":{"role":"model","parts":[{"text":"line one\nline \"two\"\n- item"}]},"index":0}],"usageMetadata":{"promptTokenCount":27,"totalTokenCount":27},"modelVersion":"gemini-2.0-flash"}`+"\n\n")
}

func BenchmarkBuildRequest(b *testing.B) {
	body, err := os.ReadFile("testdata/request/tools.in.json")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := buildRequest(ctx, body, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompletion(b *testing.B) {
	body, err := os.ReadFile("testdata/response/text.json")
	if err != nil {
		b.Fatal(err)
	}
	req := &adaptor.Request{Model: "m", Body: []byte(`{"messages":[{"role":"user","content":"hi"}]}`)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := completion(body, req); err != nil {
			b.Fatal(err)
		}
	}
}
