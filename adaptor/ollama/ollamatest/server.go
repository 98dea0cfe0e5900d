// Package ollamatest is a mock Ollama server for tests, following ../shared/wire/ollama.md: POST
// /api/chat answering one JSON object ("stream": false) or NDJSON objects ending with done:true (the
// default, as in Ollama), {"error": "..."} bodies with HTTP statuses, and mid-stream error objects.
// Knobs inject the failures a relay must survive. It records every request body and header.
package ollamatest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ToolCall is one tool call the mock model makes.
type ToolCall struct {
	// ID is sent as tool_calls[].id when set (Ollama usually sends none).
	ID   string
	Name string
	// Arguments is a JSON object text ("{}" when empty); it is sent as an object, as Ollama does.
	Arguments string
}

// Options shape the mock's answers. Zero values give a quick, successful answer.
type Options struct {
	// Answer is the reply text (default "Hello from the mock Ollama."), streamed in Chunks pieces
	// (default 4) split on rune boundaries.
	Answer string
	Chunks int
	// Thinking, when set, is streamed as message.thinking before the answer.
	Thinking string
	// ToolCalls, when set, are the model's answer to any request whose last message is not a tool
	// result: ToolCallText (if any) streams first, then one object carrying all the calls. A request
	// ending with a tool message gets the plain Answer, so a tool round trip works unchanged.
	ToolCalls    []ToolCall
	ToolCallText string
	// Model, when set, is the model the mock says answered (default: the requested one).
	Model string
	// Models, when set, are the models the mock has; others get 404 "model ... not found".
	Models []string
	// Key, when set, is the Bearer key the mock requires (401 {"error":"unauthorized"} otherwise).
	Key string
	// Status, when >= 400, is answered with {"error": ErrorMessage}; SigninURL is added for 401.
	Status       int
	ErrorMessage string
	SigninURL    string
	// ErrorAfter > 0 sends {"error": ErrorMessage or a runner failure} after that many chunks (status
	// stays 200), then ends the body, as Ollama does. It applies to non-stream answers too (the error
	// object is the whole 200 answer).
	ErrorAfter int
	// CloseAfter > 0 ends the body after that many chunks without the done:true object; with Abort the
	// connection is cut instead of ended cleanly.
	CloseAfter int
	Abort      bool
	// DoneReason is the final done_reason (default "stop"); OmitDoneReason leaves it out (older servers).
	DoneReason     string
	OmitDoneReason bool
	// PromptEvalCount is the final prompt_eval_count (default 11); eval_count is the number of chunks
	// unless EvalCount is set. NoUsage leaves both out.
	PromptEvalCount int
	EvalCount       int
	NoUsage         bool
	// Delay is slept before answering; ChunkDelay between objects. Both end early when the client goes
	// away (counted in Cancelled).
	Delay      time.Duration
	ChunkDelay time.Duration
	// SplitWrites > 0 writes every line in pieces of that many bytes, each flushed on its own, so the
	// client reads objects (and multi-byte characters) split at awkward boundaries.
	SplitWrites int
	// Raw, when set, is written as the whole 200 answer body instead of a generated one.
	Raw string
}

// Server is a running mock with what it has seen.
type Server struct {
	*httptest.Server
	opts      Options
	mu        sync.Mutex
	bodies    [][]byte
	headers   []http.Header
	Requests  atomic.Int64
	Cancelled atomic.Int64
	// CancelSeen receives once per request whose client went away mid-answer.
	CancelSeen chan struct{}
}

// New starts a mock Ollama server; close it with Close. Its URL is the base URL (no /v1).
func New(opts Options) *Server {
	if opts.Answer == "" {
		opts.Answer = "Hello from the mock Ollama."
	}
	if opts.Chunks <= 0 {
		opts.Chunks = 4
	}
	if opts.DoneReason == "" {
		opts.DoneReason = "stop"
	}
	if opts.PromptEvalCount == 0 {
		opts.PromptEvalCount = 11
	}
	s := &Server{opts: opts, CancelSeen: make(chan struct{}, 64)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

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

// Contains reports whether any received body contains sub.
func (s *Server) Contains(sub string) bool {
	for _, b := range s.Bodies() {
		if strings.Contains(string(b), sub) {
			return true
		}
	}
	return false
}

// Pieces splits s into n nearly equal parts on rune boundaries (what the mock streams).
func Pieces(s string, n int) []string {
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

func writeError(w http.ResponseWriter, status int, fields map[string]any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	b, _ := json.Marshal(fields)
	w.Write(b)
}

type chatRequest struct {
	Model    string `json:"model"`
	Stream   *bool  `json:"stream"`
	Messages []struct {
		Role string `json:"role"`
	} `json:"messages"`
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.Requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.bodies = append(s.bodies, body)
	s.headers = append(s.headers, r.Header.Clone())
	s.mu.Unlock()
	if r.URL.Path != "/api/chat" || r.Method != http.MethodPost {
		// Ollama's router answers unknown paths in plain text.
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(404)
		io.WriteString(w, "404 page not found")
		return
	}
	o := &s.opts
	if o.Key != "" && r.Header.Get("Authorization") != "Bearer "+o.Key {
		writeError(w, 401, map[string]any{"error": "unauthorized"})
		return
	}
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, 400, map[string]any{"error": err.Error()})
		return
	}
	if req.Model == "" {
		writeError(w, 400, map[string]any{"error": "model is required"})
		return
	}
	if len(o.Models) > 0 && !contains(o.Models, req.Model) {
		writeError(w, 404, map[string]any{"error": "model \"" + req.Model + "\" not found, try pulling it first"})
		return
	}
	if o.Delay > 0 && !s.sleep(r, o.Delay) {
		return
	}
	if o.Status >= 400 {
		msg := o.ErrorMessage
		if msg == "" {
			msg = strings.ToLower(http.StatusText(o.Status))
		}
		fields := map[string]any{"error": msg}
		if o.SigninURL != "" {
			fields["signin_url"] = o.SigninURL
		}
		writeError(w, o.Status, fields)
		return
	}
	stream := req.Stream == nil || *req.Stream
	if stream {
		w.Header().Set("Content-Type", "application/x-ndjson")
	} else {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.WriteHeader(200)
	fl := w.(http.Flusher)
	write := func(b []byte) {
		if o.SplitWrites <= 0 {
			w.Write(b)
			fl.Flush()
			return
		}
		for len(b) > 0 {
			n := min(o.SplitWrites, len(b))
			w.Write(b[:n])
			fl.Flush()
			b = b[n:]
		}
	}
	if o.Raw != "" {
		write([]byte(o.Raw))
		return
	}

	model := req.Model
	if o.Model != "" {
		model = o.Model
	}
	answer := o.Answer
	var calls []toolCall
	if len(o.ToolCalls) > 0 && (len(req.Messages) == 0 || req.Messages[len(req.Messages)-1].Role != "tool") {
		calls = toolCalls(o.ToolCalls)
		answer = o.ToolCallText
	}
	var parts []string
	if o.Thinking != "" {
		parts = append(parts, Pieces(o.Thinking, o.Chunks)...)
	}
	nThink := len(parts)
	if answer != "" {
		parts = append(parts, Pieces(answer, o.Chunks)...)
	}
	created := time.Date(2024, 11, 5, 9, 12, 44, 10_000_000, time.UTC)
	final := func(msg message) object {
		obj := object{Model: model, CreatedAt: created.Add(50 * time.Millisecond).Format(time.RFC3339Nano), Message: msg, Done: true,
			TotalDuration: 412000000, LoadDuration: 3100000, PromptEvalDuration: 95000000, EvalDuration: 61000000}
		if !o.OmitDoneReason {
			obj.DoneReason = o.DoneReason
		}
		if !o.NoUsage {
			pc, ec := o.PromptEvalCount, o.EvalCount
			if ec == 0 {
				ec = len(parts) + len(calls)
			}
			obj.PromptEvalCount, obj.EvalCount = &pc, &ec
		}
		return obj
	}
	errObj := func() []byte {
		msg := o.ErrorMessage
		if msg == "" {
			msg = "an error was encountered while running the model"
		}
		b, _ := json.Marshal(map[string]any{"error": msg})
		return append(b, '\n')
	}

	if !stream {
		if o.ErrorAfter > 0 {
			write(errObj())
			return
		}
		b, _ := json.Marshal(final(message{Role: "assistant", Content: answer, Thinking: o.Thinking, ToolCalls: calls}))
		write(b)
		return
	}

	line := func(v object) {
		b, _ := json.Marshal(v)
		write(append(b, '\n'))
	}
	sent := 0
	next := func() bool { // before each object: delays and injected failures
		if sent > 0 && o.ChunkDelay > 0 && !s.sleep(r, o.ChunkDelay) {
			return false
		}
		if o.CloseAfter > 0 && sent == o.CloseAfter {
			if o.Abort {
				panic(http.ErrAbortHandler)
			}
			return false
		}
		if o.ErrorAfter > 0 && sent == o.ErrorAfter {
			write(errObj())
			return false
		}
		sent++
		return true
	}
	at := func(i int) string {
		return created.Add(time.Duration(i) * 21 * time.Millisecond).Format(time.RFC3339Nano)
	}
	for i, p := range parts {
		if !next() {
			return
		}
		msg := message{Role: "assistant", Content: p}
		if i < nThink {
			msg = message{Role: "assistant", Thinking: p}
		}
		line(object{Model: model, CreatedAt: at(i), Message: msg})
	}
	if calls != nil {
		if !next() {
			return
		}
		line(object{Model: model, CreatedAt: at(len(parts)), Message: message{Role: "assistant", ToolCalls: calls}})
	}
	if !next() {
		return
	}
	line(final(message{Role: "assistant"}))
}

// The wire shapes, in Ollama's field order.
type message struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	Thinking  string     `json:"thinking,omitempty"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

type toolCall struct {
	ID       string `json:"id,omitempty"`
	Function struct {
		Index     int             `json:"index"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

type object struct {
	Model              string  `json:"model"`
	CreatedAt          string  `json:"created_at"`
	Message            message `json:"message"`
	Done               bool    `json:"done"`
	DoneReason         string  `json:"done_reason,omitempty"`
	TotalDuration      int64   `json:"total_duration,omitempty"`
	LoadDuration       int64   `json:"load_duration,omitempty"`
	PromptEvalCount    *int    `json:"prompt_eval_count,omitempty"`
	PromptEvalDuration int64   `json:"prompt_eval_duration,omitempty"`
	EvalCount          *int    `json:"eval_count,omitempty"`
	EvalDuration       int64   `json:"eval_duration,omitempty"`
}

func toolCalls(calls []ToolCall) []toolCall {
	out := make([]toolCall, len(calls))
	for i, c := range calls {
		out[i].ID = c.ID
		out[i].Function.Index = i
		out[i].Function.Name = c.Name
		out[i].Function.Arguments = json.RawMessage(c.Arguments)
		if c.Arguments == "" {
			out[i].Function.Arguments = json.RawMessage("{}")
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
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
