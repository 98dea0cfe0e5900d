// Package anthropictest is a mock Anthropic Messages API upstream for tests, following
// ../shared/wire/anthropic.md: POST /v1/messages with x-api-key and anthropic-version, message bodies,
// named SSE events ending in message_stop, and Anthropic error bodies. It checks requests the way the
// real API does (max_tokens present, user/assistant only, alternating roles starting with user,
// non-empty text, tool_result ids answering the previous assistant turn's tool_use) and records what it
// received. Knobs inject the failures a relay must survive.
package anthropictest

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

// ToolCall is a tool the mock model calls.
type ToolCall struct {
	ID    string // default toolu_mock_<n>
	Name  string
	Input string // JSON object text, default {}
}

// Options shape the mock's answers. Zero values give a quick, successful text answer.
type Options struct {
	// Answer is the reply text (default "Hello from the mock Anthropic upstream."); streamed in Chunks
	// text_delta pieces (default 4), split on rune boundaries.
	Answer string
	Chunks int
	// Thinking, when set, is answered first as a thinking block.
	Thinking string
	// ToolCalls, when set, are called (after Answer text when AnswerWithTools) unless the request's last
	// message carries tool_result blocks; then the mock answers with Answer. Each input is streamed in
	// ArgChunks input_json_delta pieces (default 3).
	ToolCalls       []ToolCall
	AnswerWithTools bool
	ArgChunks       int
	// StopReason overrides the stop_reason (default end_turn, or tool_use when calling tools).
	StopReason string
	// Model, when set, is what the upstream says it is.
	Model string
	// Key, when set, is the x-api-key the mock requires (401 authentication_error otherwise).
	Key string
	// InputTokens is usage.input_tokens (default 11); CacheReadTokens adds cache_read_input_tokens.
	// OutputTokens defaults to the number of deltas sent.
	InputTokens     int
	CacheReadTokens int
	OutputTokens    int
	// Status, when >= 400, is returned with an Anthropic error body of ErrorType (default from the
	// status) and ErrorMessage.
	Status       int
	ErrorType    string
	ErrorMessage string
	// Delay is slept before answering; ChunkDelay between stream events. Both end early when the client
	// goes away.
	Delay      time.Duration
	ChunkDelay time.Duration
	// CloseAfter > 0 ends the stream after that many content_block_delta events, without message_stop.
	CloseAfter int
	// ErrorAfter > 0 sends an error event (ErrorType, default overloaded_error) after that many
	// content_block_delta events, then ends the stream.
	ErrorAfter int
	// Lenient turns off the request checks.
	Lenient bool
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
		opts.Answer = "Hello from the mock Anthropic upstream."
	}
	if opts.Chunks <= 0 {
		opts.Chunks = 4
	}
	if opts.ArgChunks <= 0 {
		opts.ArgChunks = 3
	}
	if opts.InputTokens == 0 {
		opts.InputTokens = 11
	}
	s := &Server{opts: opts, CancelSeen: make(chan struct{}, 64)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// BaseURL is the channel base_url (the API root, without /v1).
func (s *Server) BaseURL() string { return s.Server.URL }

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

// ErrorTypeForStatus is the Anthropic error type of an HTTP status.
func ErrorTypeForStatus(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 402:
		return "billing_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 504:
		return "timeout_error"
	case 529:
		return "overloaded_error"
	}
	return "api_error"
}

func errorBody(typ, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}, "request_id": "req_mock01"})
	return b
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	if typ == "" {
		typ = ErrorTypeForStatus(status)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(errorBody(typ, msg))
}

// request is what the mock reads of a Messages body.
type request struct {
	Model     string          `json:"model"`
	MaxTokens *int            `json:"max_tokens"`
	Stream    bool            `json:"stream"`
	System    json.RawMessage `json:"system"`
	Messages  []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

type block struct {
	Type      string          `json:"type"`
	Text      *string         `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Source    *struct {
		Type      string `json:"type"`
		MediaType string `json:"media_type"`
		Data      string `json:"data"`
		URL       string `json:"url"`
	} `json:"source"`
}

func blocks(content json.RawMessage) ([]block, error) {
	var s string
	if json.Unmarshal(content, &s) == nil {
		if s == "" {
			return nil, fmt.Errorf("content must be non-empty")
		}
		return []block{{Type: "text", Text: &s}}, nil
	}
	var bs []block
	if err := json.Unmarshal(content, &bs); err != nil {
		return nil, fmt.Errorf("content must be a string or an array of blocks")
	}
	if len(bs) == 0 {
		return nil, fmt.Errorf("content must be non-empty")
	}
	return bs, nil
}

// check validates a request the way the real API would, returning a message for a 400.
func check(req *request) string {
	if req.Model == "" {
		return "model: field required"
	}
	if req.MaxTokens == nil || *req.MaxTokens < 1 {
		return "max_tokens: field required"
	}
	if len(req.Messages) == 0 {
		return "messages: at least one message is required"
	}
	var prevToolUses map[string]bool
	for i, m := range req.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return fmt.Sprintf("messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
		if i == 0 && m.Role != "user" {
			return "messages: first message must use the \"user\" role"
		}
		if i > 0 && m.Role == req.Messages[i-1].Role {
			return "messages: roles must alternate between \"user\" and \"assistant\""
		}
		bs, err := blocks(m.Content)
		if err != nil {
			return fmt.Sprintf("messages.%d.content: %v", i, err)
		}
		toolUses := map[string]bool{}
		for j, b := range bs {
			switch b.Type {
			case "text":
				if b.Text == nil || *b.Text == "" {
					return fmt.Sprintf("messages.%d.content.%d.text: text content blocks must be non-empty", i, j)
				}
			case "image":
				if m.Role != "user" || b.Source == nil || (b.Source.Type == "base64" && (b.Source.Data == "" || !strings.HasPrefix(b.Source.MediaType, "image/"))) ||
					(b.Source.Type == "url" && b.Source.URL == "") || (b.Source.Type != "base64" && b.Source.Type != "url") {
					return fmt.Sprintf("messages.%d.content.%d: bad image block", i, j)
				}
			case "tool_use":
				var in map[string]any
				if m.Role != "assistant" || b.ID == "" || b.Name == "" || json.Unmarshal(b.Input, &in) != nil || in == nil {
					return fmt.Sprintf("messages.%d.content.%d: bad tool_use block", i, j)
				}
				toolUses[b.ID] = true
			case "tool_result":
				if m.Role != "user" || !prevToolUses[b.ToolUseID] {
					return fmt.Sprintf("messages.%d.content.%d: unexpected `tool_use_id` found in `tool_result` blocks: %s", i, j, b.ToolUseID)
				}
			default:
				return fmt.Sprintf("messages.%d.content.%d.type: unknown block type %q", i, j, b.Type)
			}
		}
		prevToolUses = toolUses
	}
	return ""
}

// hasToolResult reports whether the last message carries tool_result blocks.
func hasToolResult(req *request) bool {
	if len(req.Messages) == 0 {
		return false
	}
	bs, _ := blocks(req.Messages[len(req.Messages)-1].Content)
	for _, b := range bs {
		if b.Type == "tool_result" {
			return true
		}
	}
	return false
}

// pieces splits s into n nearly equal parts on rune boundaries.
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
	w.Header().Set("Request-Id", "req_mock01")
	if r.URL.Path != "/v1/messages" || r.Method != http.MethodPost {
		writeError(w, 404, "not_found_error", "Not found: "+r.Method+" "+r.URL.Path)
		return
	}
	if s.opts.Key != "" && r.Header.Get("X-Api-Key") != s.opts.Key {
		writeError(w, 401, "authentication_error", "invalid x-api-key")
		return
	}
	if r.Header.Get("Anthropic-Version") == "" {
		writeError(w, 400, "invalid_request_error", "anthropic-version: header is required")
		return
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, 400, "invalid_request_error", "There was an issue with the body of the request: "+err.Error())
		return
	}
	if !s.opts.Lenient {
		if msg := check(&req); msg != "" {
			writeError(w, 400, "invalid_request_error", msg)
			return
		}
	}
	if s.opts.Delay > 0 && !s.sleep(r, s.opts.Delay) {
		return
	}
	if s.opts.Status >= 400 {
		msg := s.opts.ErrorMessage
		if msg == "" {
			msg = http.StatusText(s.opts.Status)
		}
		writeError(w, s.opts.Status, s.opts.ErrorType, msg)
		return
	}
	model := req.Model
	if s.opts.Model != "" {
		model = s.opts.Model
	}
	var tools []ToolCall
	if len(s.opts.ToolCalls) > 0 && !hasToolResult(&req) {
		for i, tc := range s.opts.ToolCalls {
			if tc.ID == "" {
				tc.ID = fmt.Sprintf("toolu_mock_%d", i+1)
			}
			if tc.Input == "" {
				tc.Input = "{}"
			}
			tools = append(tools, tc)
		}
	}
	withText := len(tools) == 0 || s.opts.AnswerWithTools
	stop := "end_turn"
	if len(tools) > 0 {
		stop = "tool_use"
	}
	if s.opts.StopReason != "" {
		stop = s.opts.StopReason
	}
	if !req.Stream {
		s.answer(w, model, stop, withText, tools)
		return
	}
	s.stream(w, r, model, stop, withText, tools)
}

func (s *Server) usage(output int) map[string]any {
	u := map[string]any{"input_tokens": s.opts.InputTokens, "output_tokens": output}
	if s.opts.CacheReadTokens > 0 {
		u["cache_read_input_tokens"] = s.opts.CacheReadTokens
		u["cache_creation_input_tokens"] = 0
	}
	return u
}

func (s *Server) answer(w http.ResponseWriter, model, stop string, withText bool, tools []ToolCall) {
	var content []any
	deltas := 0
	if s.opts.Thinking != "" {
		content = append(content, map[string]any{"type": "thinking", "thinking": s.opts.Thinking, "signature": "sig_mock"})
		deltas++
	}
	if withText {
		content = append(content, map[string]any{"type": "text", "text": s.opts.Answer})
		deltas += len(pieces(s.opts.Answer, s.opts.Chunks))
	}
	for _, tc := range tools {
		content = append(content, map[string]any{"type": "tool_use", "id": tc.ID, "name": tc.Name, "input": json.RawMessage(tc.Input)})
		deltas += len(pieces(tc.Input, s.opts.ArgChunks))
	}
	out := s.opts.OutputTokens
	if out == 0 {
		out = deltas
	}
	resp := map[string]any{
		"id": "msg_mock01", "type": "message", "role": "assistant", "model": model, "content": content,
		"stop_reason": stop, "stop_sequence": nil, "usage": s.usage(out),
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, model, stop string, withText bool, tools []ToolCall) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	fl := w.(http.Flusher)
	send := func(v map[string]any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", v["type"], b)
		fl.Flush()
	}
	pause := func() bool { return s.opts.ChunkDelay <= 0 || s.sleep(r, s.opts.ChunkDelay) }

	send(map[string]any{"type": "message_start", "message": map[string]any{
		"id": "msg_mock01", "type": "message", "role": "assistant", "model": model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil, "usage": s.usage(1), // output_tokens 1 is Anthropic's placeholder
	}})
	deltas, index := 0, 0
	// delta sends one content_block_delta, honouring the failure knobs; false ends the stream.
	delta := func(d map[string]any) bool {
		if s.opts.CloseAfter > 0 && deltas == s.opts.CloseAfter {
			return false
		}
		if s.opts.ErrorAfter > 0 && deltas == s.opts.ErrorAfter {
			typ := s.opts.ErrorType
			if typ == "" {
				typ = "overloaded_error"
			}
			msg := s.opts.ErrorMessage
			if msg == "" {
				msg = "Overloaded"
			}
			send(map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}})
			return false
		}
		if deltas > 0 && !pause() {
			return false
		}
		send(map[string]any{"type": "content_block_delta", "index": index, "delta": d})
		deltas++
		return true
	}
	if s.opts.Thinking != "" {
		send(map[string]any{"type": "content_block_start", "index": index, "content_block": map[string]any{"type": "thinking", "thinking": ""}})
		if !delta(map[string]any{"type": "thinking_delta", "thinking": s.opts.Thinking}) {
			return
		}
		send(map[string]any{"type": "content_block_delta", "index": index, "delta": map[string]any{"type": "signature_delta", "signature": "sig_mock"}})
		send(map[string]any{"type": "content_block_stop", "index": index})
		index++
	}
	if withText {
		send(map[string]any{"type": "content_block_start", "index": index, "content_block": map[string]any{"type": "text", "text": ""}})
		send(map[string]any{"type": "ping"})
		for _, p := range pieces(s.opts.Answer, s.opts.Chunks) {
			if !delta(map[string]any{"type": "text_delta", "text": p}) {
				return
			}
		}
		send(map[string]any{"type": "content_block_stop", "index": index})
		index++
	}
	for _, tc := range tools {
		send(map[string]any{"type": "content_block_start", "index": index, "content_block": map[string]any{"type": "tool_use", "id": tc.ID, "name": tc.Name, "input": map[string]any{}}})
		for _, p := range pieces(tc.Input, s.opts.ArgChunks) {
			if !delta(map[string]any{"type": "input_json_delta", "partial_json": p}) {
				return
			}
		}
		send(map[string]any{"type": "content_block_stop", "index": index})
		index++
	}
	out := s.opts.OutputTokens
	if out == 0 {
		out = deltas
	}
	send(map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": map[string]any{"output_tokens": out}})
	send(map[string]any{"type": "message_stop"})
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
