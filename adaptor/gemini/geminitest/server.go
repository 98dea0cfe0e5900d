// Package geminitest is a mock Gemini upstream for tests, following ../shared/wire/gemini.md:
// generateContent and streamGenerateContent?alt=sse under /v1beta/models/{model}, x-goog-api-key auth,
// Google RPC-style error bodies (an invalid key is a 400 INVALID_ARGUMENT with reason API_KEY_INVALID),
// function calls, safety blocks and the failures a relay must survive. It records every request.
package geminitest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FunctionCall is one functionCall part the mock answers with.
type FunctionCall struct {
	Name string
	Args string // a JSON object ("{}" when empty)
}

// Options shape the mock's answers. Zero values give a quick, successful text answer.
type Options struct {
	// Answer is the reply text (default "Hello from the mock Gemini."), streamed in Chunks pieces
	// (default 3) split on rune boundaries.
	Answer string
	Chunks int
	// Thought, when set, comes first as a thought: true part.
	Thought string
	// FunctionCalls, when set, are the answer (with finishReason STOP) unless the request's last turn
	// already carries functionResponse parts; then the mock answers with Answer.
	FunctionCalls []FunctionCall
	// FinishReason overrides the final finishReason (default STOP).
	FinishReason string
	// BlockReason, when set, blocks the prompt: promptFeedback.blockReason and no candidates.
	BlockReason string
	// Key, when set, is the x-goog-api-key the mock requires (400 API_KEY_INVALID otherwise, 403 when
	// there is none).
	Key string
	// Status, when >= 400, is answered with a Google error body: ErrorStatus (default derived from
	// Status), ErrorMessage, and a RetryInfo detail when RetryDelay is set ("37s").
	Status       int
	ErrorStatus  string
	ErrorMessage string
	RetryDelay   string
	// Delay is slept before the answer, ChunkDelay between stream chunks; both end early (and count in
	// Cancelled) when the client goes away.
	Delay      time.Duration
	ChunkDelay time.Duration
	// CloseAfter > 0 ends the stream after that many chunks, before the chunk with finishReason.
	CloseAfter int
	// ErrorAfter > 0 sends an error object as a data: frame after that many chunks, then ends.
	ErrorAfter int
	// CRLF separates stream events with \r\n\r\n instead of \n\n.
	CRLF bool
	// NoUsage leaves usageMetadata out.
	NoUsage bool
	// PromptTokens is the promptTokenCount (default 11). candidatesTokenCount is the number of answer
	// pieces (plus one per function call); totalTokenCount is their sum.
	PromptTokens int
	// ModelVersion is reported as modelVersion (default: the model from the path).
	ModelVersion string
}

// Request is one request the mock received.
type Request struct {
	Method   string
	Path     string // the escaped path: /v1beta/models/gemini-2.0-flash:streamGenerateContent
	RawQuery string
	Query    url.Values
	Header   http.Header
	Body     []byte
	Model    string
	Stream   bool
}

// Server is a running mock and what it has seen.
type Server struct {
	*httptest.Server
	opts      Options
	mu        sync.Mutex
	reqs      []Request
	Count     atomic.Int64
	Cancelled atomic.Int64
	// CancelSeen receives once per request whose client went away mid-answer.
	CancelSeen chan struct{}
}

// New starts a mock upstream; close it with Close.
func New(opts Options) *Server {
	if opts.Answer == "" {
		opts.Answer = "Hello from the mock Gemini."
	}
	if opts.Chunks <= 0 {
		opts.Chunks = 3
	}
	if opts.PromptTokens <= 0 {
		opts.PromptTokens = 11
	}
	s := &Server{opts: opts, CancelSeen: make(chan struct{}, 64)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// BaseURL is the channel base URL (ends in /v1beta).
func (s *Server) BaseURL() string { return s.Server.URL + "/v1beta" }

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Last returns the last request received (zero when none).
func (s *Server) Last() Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return Request{}
	}
	return s.reqs[len(s.reqs)-1]
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

var statusNames = map[int]string{400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
	429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

// ErrorBody is a Google RPC-style error body.
func ErrorBody(code int, status, msg string, details ...any) []byte {
	if status == "" {
		status = statusNames[code]
	}
	e := map[string]any{"code": code, "message": msg, "status": status}
	if len(details) > 0 {
		e["details"] = details
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return b
}

func writeError(w http.ResponseWriter, code int, status, msg string, details ...any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	w.Write(ErrorBody(code, status, msg, details...))
}

// request is the part of a GenerateContentRequest the mock checks.
type request struct {
	Contents []struct {
		Role  string                       `json:"role"`
		Parts []map[string]json.RawMessage `json:"parts"`
	} `json:"contents"`
}

// check validates a request body the way the API does for the common mistakes.
func check(body []byte) (*request, string) {
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, "Invalid JSON payload received. " + err.Error()
	}
	if len(req.Contents) == 0 {
		return nil, "* GenerateContentRequest.contents: contents is not specified"
	}
	for i, c := range req.Contents {
		if c.Role != "user" && c.Role != "model" {
			return nil, fmt.Sprintf("Please use a valid role: user, model. (contents[%d].role %q)", i, c.Role)
		}
		if len(c.Parts) == 0 {
			return nil, fmt.Sprintf("* GenerateContentRequest.contents[%d].parts: contents.parts must not be empty.", i)
		}
		for j, p := range c.Parts {
			if t, ok := p["text"]; ok && string(t) == `""` {
				return nil, fmt.Sprintf("Unable to submit request because it has an empty text parameter (contents[%d].parts[%d]).", i, j)
			}
			if len(p) == 0 {
				return nil, fmt.Sprintf("* GenerateContentRequest.contents[%d].parts[%d].data: required oneof field 'data' must have one initialized field", i, j)
			}
		}
	}
	return &req, ""
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.Count.Add(1)
	body, _ := io.ReadAll(r.Body)
	rec := Request{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Query: r.URL.Query(),
		Header: r.Header.Clone(), Body: body}
	path, ok := strings.CutPrefix(r.URL.Path, "/v1beta/models/")
	model, method, ok2 := strings.Cut(path, ":")
	rec.Model, rec.Stream = model, method == "streamGenerateContent"
	s.mu.Lock()
	s.reqs = append(s.reqs, rec)
	s.mu.Unlock()
	if !ok || !ok2 || model == "" || (method != "generateContent" && method != "streamGenerateContent") || r.Method != http.MethodPost {
		writeError(w, 404, "NOT_FOUND", "models/"+model+" is not found for API version v1beta, or is not supported for "+method+".")
		return
	}
	key := r.Header.Get("x-goog-api-key")
	if key == "" {
		key = r.URL.Query().Get("key")
	}
	if key == "" {
		writeError(w, 403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")
		return
	}
	if s.opts.Key != "" && key != s.opts.Key {
		writeError(w, 400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
			map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
				"metadata": map[string]any{"service": "generativelanguage.googleapis.com"}})
		return
	}
	req, msg := check(body)
	if msg != "" {
		writeError(w, 400, "INVALID_ARGUMENT", msg)
		return
	}
	if s.opts.Delay > 0 && !s.sleep(r, s.opts.Delay) {
		return
	}
	if s.opts.Status >= 400 {
		m := s.opts.ErrorMessage
		if m == "" {
			m = http.StatusText(s.opts.Status)
		}
		var details []any
		if s.opts.RetryDelay != "" {
			details = append(details, map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": s.opts.RetryDelay})
		}
		writeError(w, s.opts.Status, s.opts.ErrorStatus, m, details...)
		return
	}
	chunks := s.answer(req, model)
	if !rec.Stream {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		json.NewEncoder(w).Encode(merge(chunks))
		return
	}
	if r.URL.Query().Get("alt") != "sse" {
		// Without alt=sse the API answers one JSON array of responses.
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		json.NewEncoder(w).Encode(chunks)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	fl := w.(http.Flusher)
	sep := "\n\n"
	if s.opts.CRLF {
		sep = "\r\n\r\n"
	}
	for i, c := range chunks {
		if i > 0 && s.opts.ChunkDelay > 0 && !s.sleep(r, s.opts.ChunkDelay) {
			return
		}
		if s.opts.CloseAfter > 0 && i == s.opts.CloseAfter {
			return
		}
		if s.opts.ErrorAfter > 0 && i == s.opts.ErrorAfter {
			fmt.Fprintf(w, "data: %s%s", ErrorBody(500, "INTERNAL", "mock failure mid-stream"), sep)
			fl.Flush()
			return
		}
		b, _ := json.Marshal(c)
		fmt.Fprintf(w, "data: %s%s", b, sep)
		fl.Flush()
	}
}

// answer builds the stream chunks of the answer; the non-stream answer is their merge.
func (s *Server) answer(req *request, model string) []map[string]any {
	version := s.opts.ModelVersion
	if version == "" {
		version = model
	}
	prompt := s.opts.PromptTokens
	wrap := func(parts []any, finish string, completion int) map[string]any {
		c := map[string]any{"content": map[string]any{"role": "model", "parts": parts}, "index": 0}
		usage := map[string]any{"promptTokenCount": prompt, "totalTokenCount": prompt}
		if finish != "" {
			c["finishReason"] = finish
			c["safetyRatings"] = []any{map[string]any{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}}
			usage = map[string]any{"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion}
		}
		out := map[string]any{"candidates": []any{c}, "modelVersion": version, "responseId": "mock-response-1"}
		if !s.opts.NoUsage {
			out["usageMetadata"] = usage
		}
		return out
	}
	if s.opts.BlockReason != "" {
		out := map[string]any{"promptFeedback": map[string]any{"blockReason": s.opts.BlockReason,
			"safetyRatings": []any{map[string]any{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}}},
			"modelVersion": version, "responseId": "mock-response-1"}
		if !s.opts.NoUsage {
			out["usageMetadata"] = map[string]any{"promptTokenCount": prompt, "totalTokenCount": prompt}
		}
		return []map[string]any{out}
	}
	finish := s.opts.FinishReason
	if finish == "" {
		finish = "STOP"
	}
	var chunks []map[string]any
	if s.opts.Thought != "" {
		chunks = append(chunks, wrap([]any{map[string]any{"text": s.opts.Thought, "thought": true}}, "", 0))
	}
	if len(s.opts.FunctionCalls) > 0 && !lastTurnAnswersTools(req) {
		var parts []any
		for _, fc := range s.opts.FunctionCalls {
			args := json.RawMessage(fc.Args)
			if fc.Args == "" {
				args = json.RawMessage("{}")
			}
			parts = append(parts, map[string]any{"functionCall": map[string]any{"name": fc.Name, "args": args}})
		}
		return append(chunks, wrap(parts, finish, len(parts)))
	}
	pieces := Pieces(s.opts.Answer, s.opts.Chunks)
	for i, p := range pieces {
		f := ""
		if i == len(pieces)-1 {
			f = finish
		}
		chunks = append(chunks, wrap([]any{map[string]any{"text": p}}, f, len(pieces)))
	}
	return chunks
}

func lastTurnAnswersTools(req *request) bool {
	c := req.Contents[len(req.Contents)-1]
	for _, p := range c.Parts {
		if _, ok := p["functionResponse"]; ok {
			return true
		}
	}
	return false
}

// merge folds stream chunks into one response, as generateContent answers.
func merge(chunks []map[string]any) map[string]any {
	last := chunks[len(chunks)-1]
	cands, ok := last["candidates"].([]any)
	if !ok {
		return last
	}
	var parts []any
	text := ""
	for _, c := range chunks {
		for _, p := range c["candidates"].([]any)[0].(map[string]any)["content"].(map[string]any)["parts"].([]any) {
			pm := p.(map[string]any)
			if t, ok := pm["text"].(string); ok && pm["thought"] == nil {
				text += t
				continue
			}
			parts = append(parts, p)
		}
	}
	if text != "" {
		parts = append(parts, map[string]any{"text": text})
	}
	c := map[string]any{}
	for k, v := range cands[0].(map[string]any) {
		c[k] = v
	}
	c["content"] = map[string]any{"role": "model", "parts": parts}
	out := map[string]any{}
	for k, v := range last {
		out[k] = v
	}
	out["candidates"] = []any{c}
	return out
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

// Contains reports whether any received body contains sub.
func (s *Server) Contains(sub string) bool {
	for _, r := range s.Requests() {
		if strings.Contains(string(r.Body), sub) {
			return true
		}
	}
	return false
}
