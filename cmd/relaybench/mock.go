package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// mockOptions are the mock upstream's knobs.
type mockOptions struct {
	Chunks int           // chat.completion.chunk events per stream (before the usage chunk)
	Delay  time.Duration // sleep between two chunks
	Size   int           // answer bytes, spread over the chunks
	Fail   float64       // share of requests answered with an error (OpenAI-style 500, or Hunyuan's Response.Error)
}

func (o *mockOptions) register(fs *flag.FlagSet) {
	fs.IntVar(&o.Chunks, "chunks", 21, "mock: chunks per stream")
	fs.DurationVar(&o.Delay, "chunk-delay", 0, "mock: delay between stream chunks")
	fs.IntVar(&o.Size, "size", 2000, "mock: answer size in bytes")
	fs.Float64Var(&o.Fail, "fail", 0, "mock: failure injection rate, 0..1 (before the first byte: HTTP 500 from the OpenAI mock, "+
		"a Response.Error InternalError from the Hunyuan one)")
}

func (o mockOptions) args() []string {
	return []string{"-chunks", strconv.Itoa(o.Chunks), "-chunk-delay", o.Delay.String(),
		"-size", strconv.Itoa(o.Size), "-fail", strconv.FormatFloat(o.Fail, 'g', -1, 64)}
}

// mock is a fast OpenAI-compatible upstream. Every answer is rendered once at start, so the mock costs
// as little CPU as possible and the time measured is the proxies'.
type mock struct {
	opt        mockOptions
	completion []byte   // non-stream body
	frames     [][]byte // SSE frames of the chunks
	usage      []byte   // SSE frame of the usage chunk
}

const (
	mockModel   = "bench"
	mockCreated = 1700000000
	mockPrompt  = 20 // prompt tokens the mock claims
)

func newMock(opt mockOptions) *mock {
	opt.Chunks = max(opt.Chunks, 1)
	opt.Size = max(opt.Size, 0)
	answer := answerText(opt.Size)
	m := &mock{opt: opt}
	completionTokens := max(opt.Size/4, 1)
	usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`,
		mockPrompt, completionTokens, mockPrompt+completionTokens)

	m.completion = fmt.Appendf(nil, `{"id":"chatcmpl-mock","object":"chat.completion","created":%d,"model":%q,`+
		`"choices":[{"index":0,"message":{"role":"assistant","content":%s},"finish_reason":"stop"}],"usage":%s}`,
		mockCreated, mockModel, jsonString(answer), usage)

	// The answer goes into the first Chunks-1 chunks; the last carries only finish_reason, as OpenAI does.
	content := max(opt.Chunks-1, 1)
	pieces := splitEven(answer, content)
	for i := range opt.Chunks {
		var fields []string
		if i == 0 {
			fields = append(fields, `"role":"assistant"`)
		}
		if i < content {
			fields = append(fields, `"content":`+jsonString(pieces[i]))
		}
		finish := "null"
		if i == opt.Chunks-1 {
			finish = `"stop"`
		}
		choices := `[{"index":0,"delta":{` + strings.Join(fields, ",") + `},"finish_reason":` + finish + `}]`
		m.frames = append(m.frames, m.chunk(choices, "null"))
	}
	m.usage = m.chunk(`[]`, usage)
	return m
}

func (m *mock) chunk(choices, usage string) []byte {
	return fmt.Appendf(nil, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":%d,"+
		"\"model\":%q,\"choices\":%s,\"usage\":%s}\n\n", mockCreated, mockModel, choices, usage)
}

func (m *mock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		http.Error(w, `{"error":{"message":"not found","type":"invalid_request_error"}}`, http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req struct {
		Stream        bool `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeMockError(w, http.StatusBadRequest, "bad request body")
		return
	}
	if m.opt.Fail > 0 && rand.Float64() < m.opt.Fail {
		writeMockError(w, http.StatusInternalServerError, "injected failure")
		return
	}
	if !req.Stream {
		writeJSON(w, m.completion)
		return
	}
	streamFrames(w, r, m.frames, m.opt.Delay)
	if req.StreamOptions.IncludeUsage {
		w.Write(m.usage)
	}
	io.WriteString(w, "data: [DONE]\n\n")
}

func writeMockError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"message":%s,"type":"server_error","code":null}}`, jsonString(msg))
}

// answerText is n bytes of plain words, so token estimates and JSON escaping behave as with real text.
func answerText(n int) string {
	const words = "the relay forwards every chunk as soon as it arrives and keeps a short record of the request "
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(words)
	}
	return b.String()[:n]
}

// splitEven cuts s into n pieces whose lengths differ by at most one byte.
func splitEven(s string, n int) []string {
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, s[len(s)*i/n:len(s)*(i+1)/n])
	}
	return out
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// writeJSON writes a whole JSON answer (status 200) with its length.
func writeJSON(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// streamFrames starts an SSE answer (headers set on w before the call are kept) and writes frames with
// delay between them, each flushed: a real model emits tokens one by one, so the proxies see separate
// frames. It stops early when the client goes away.
func streamFrames(w http.ResponseWriter, r *http.Request, frames [][]byte, delay time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	flusher, _ := w.(http.Flusher)
	var timer *time.Timer
	for i, f := range frames {
		if i > 0 && delay > 0 {
			if timer == nil {
				timer = time.NewTimer(delay)
				defer timer.Stop()
			} else {
				timer.Reset(delay)
			}
			select {
			case <-timer.C:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := w.Write(f); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}
