// Package openaitest is a mock OpenAI-compatible upstream for tests, following
// ../shared/wire/openai.md: chat.completion bodies, SSE chunks with include_usage, [DONE], and OpenAI
// error bodies. Knobs inject the failures a relay must survive.
package openaitest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options shape the mock's answers. Zero values give a quick, successful answer.
type Options struct {
	// Answer is the reply text (default "Hello from the mock upstream."); it is streamed in Chunks
	// pieces (default 4).
	Answer string
	Chunks int
	// Model, when set, is what the upstream says it is (the relay must still answer with the client's).
	Model string
	// Key, when set, is the Bearer key the mock requires (401 otherwise).
	Key string
	// Status, when >= 400, is returned with an OpenAI error body carrying ErrorMessage.
	Status       int
	ErrorMessage string
	RetryAfter   string // sent with the error status
	// Delay is slept before the first byte; ChunkDelay between chunks.
	Delay      time.Duration
	ChunkDelay time.Duration
	// CloseAfter > 0 closes the stream after that many chunks, without [DONE].
	CloseAfter int
	// ErrorAfter > 0 sends an error frame after that many chunks; FirstFrameError sends it as the first
	// frame (after a 200, as some upstreams report overload).
	ErrorAfter      int
	FirstFrameError bool
	// NoUsage leaves usage out (the relay must estimate).
	NoUsage bool
	// NoRole leaves the role out of the first chunk (the relay must add it).
	NoRole bool
}

// Server is a running mock with what it has seen.
type Server struct {
	*httptest.Server
	opts      Options
	mu        sync.Mutex
	bodies    [][]byte
	headers   []http.Header
	Requests  atomic.Int64
	Cancelled atomic.Int64 // requests whose client went away before the mock finished
	// CancelSeen receives once per request whose context was cancelled mid-answer.
	CancelSeen chan struct{}
}

// New starts a mock upstream; close it with Close.
func New(opts Options) *Server {
	if opts.Answer == "" {
		opts.Answer = "Hello from the mock upstream."
	}
	if opts.Chunks <= 0 {
		opts.Chunks = 4
	}
	s := &Server{opts: opts, CancelSeen: make(chan struct{}, 64)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// URL of the OpenAI base (ends in /v1).
func (s *Server) BaseURL() string { return s.Server.URL + "/v1" }

// Bodies returns the request bodies received so far.
func (s *Server) Bodies() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies...)
}

// Headers returns the request headers received so far.
func (s *Server) Headers() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

func writeError(w http.ResponseWriter, status int, msg, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": "invalid_request_error", "param": nil, "code": code}})
	w.Write(b)
}

// pieces splits the answer into n nearly equal parts on rune boundaries.
func pieces(s string, n int) []string {
	r := []rune(s)
	if n > len(r) {
		n = len(r)
	}
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, string(r[i*len(r)/n:(i+1)*len(r)/n]))
	}
	return out
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.Requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.bodies = append(s.bodies, body)
	s.headers = append(s.headers, r.Header.Clone())
	s.mu.Unlock()
	if r.URL.Path != "/v1/chat/completions" {
		writeError(w, 404, "unknown path "+r.URL.Path, "unknown_url")
		return
	}
	if s.opts.Key != "" && r.Header.Get("Authorization") != "Bearer "+s.opts.Key {
		writeError(w, 401, "Incorrect API key provided.", "invalid_api_key")
		return
	}
	var req struct {
		Model         string `json:"model"`
		Stream        bool   `json:"stream"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, 400, "bad json: "+err.Error(), "")
		return
	}
	if s.opts.Delay > 0 && !s.sleep(r, s.opts.Delay) {
		return
	}
	if s.opts.Status >= 400 {
		msg := s.opts.ErrorMessage
		if msg == "" {
			msg = http.StatusText(s.opts.Status)
		}
		if s.opts.RetryAfter != "" {
			w.Header().Set("Retry-After", s.opts.RetryAfter)
		}
		writeError(w, s.opts.Status, msg, "mock_error")
		return
	}
	model := req.Model
	if s.opts.Model != "" {
		model = s.opts.Model
	}
	prompt, completion := 11, len(pieces(s.opts.Answer, s.opts.Chunks))
	if !req.Stream {
		resp := map[string]any{
			"id": "chatcmpl-mock", "object": "chat.completion", "created": 1731000000, "model": model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": s.opts.Answer}, "finish_reason": "stop"}},
		}
		if !s.opts.NoUsage {
			resp["usage"] = map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	fl := w.(http.Flusher)
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		fl.Flush()
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1731000000, "model": model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	if s.opts.FirstFrameError {
		send(map[string]any{"error": map[string]any{"message": "mock overloaded", "type": "server_error", "code": "mock_overloaded"}})
		return
	}
	parts := pieces(s.opts.Answer, s.opts.Chunks)
	for i, p := range parts {
		if i > 0 && s.opts.ChunkDelay > 0 && !s.sleep(r, s.opts.ChunkDelay) {
			return
		}
		if s.opts.CloseAfter > 0 && i == s.opts.CloseAfter {
			return
		}
		if s.opts.ErrorAfter > 0 && i == s.opts.ErrorAfter {
			send(map[string]any{"error": map[string]any{"message": "mock failure mid-stream", "type": "server_error", "code": "mock_mid_stream"}})
			return
		}
		delta := map[string]any{"content": p}
		if i == 0 && !s.opts.NoRole {
			delta["role"] = "assistant"
		}
		send(chunk(delta, nil))
	}
	send(chunk(map[string]any{}, "stop"))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage && !s.opts.NoUsage {
		send(map[string]any{"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1731000000, "model": model,
			"choices": []any{}, "usage": map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})
	}
	io.WriteString(w, "data: [DONE]\n\n")
	fl.Flush()
}

// sleep waits d or until the client goes away (then it records the cancel and reports false).
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		s.Cancelled.Add(1)
		select {
		case s.CancelSeen <- struct{}{}:
		default:
		}
		return false
	}
}

// Contains reports whether any received body contains sub (for checking what reached the upstream).
func (s *Server) Contains(sub string) bool {
	for _, b := range s.Bodies() {
		if strings.Contains(string(b), sub) {
			return true
		}
	}
	return false
}
