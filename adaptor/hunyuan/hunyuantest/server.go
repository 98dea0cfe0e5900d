// Package hunyuantest is a mock Tencent Hunyuan upstream (native API, ChatCompletions 2023-09-01) for
// tests, built from the wire reference rather than from the relay's adaptor: it checks signatures and
// message rules with its own code, so it can catch the adaptor's mistakes.
package hunyuantest

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// DefaultAnswer is the answer text when Options.Answer is empty and there are no tool calls.
const DefaultAnswer = "Paris is the capital of France."

// Note is the compliance disclaimer Hunyuan returns with every answer.
const Note = "以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记"

// Fault is a way for a stream to go wrong after Options.FaultAfter content frames.
type Fault int

const (
	NoFault Fault = iota
	// Stall stops sending and holds the connection open until the client goes away or the server closes.
	Stall
	// CloseEarly ends the response cleanly but without the frame carrying FinishReason.
	CloseEarly
	// Abort drops the connection mid-response (the client sees an unexpected EOF).
	Abort
	// ErrorFrame sends a frame with ErrorMsg {Code: StreamErrorCode, Msg} and closes.
	ErrorFrame
)

// ToolCall is one function call the mock answers with.
type ToolCall struct {
	ID, Name, Arguments string
}

// Options configure the mock. The zero value answers DefaultAnswer in 3 frames without checking
// signatures.
type Options struct {
	// Answer is the assistant text; Chunks is how many stream frames carry it (default 3), split on
	// rune boundaries.
	Answer string
	Chunks int
	// ReasoningContent, when set, is streamed in one frame before the answer (T1 models do this) and
	// returned in Message.ReasoningContent.
	ReasoningContent string
	// ToolCalls makes the answer a tool call. Streamed as Tencent does: a first fragment per call with
	// the name and empty Arguments, then the arguments in two pieces, all keyed by Id.
	ToolCalls []ToolCall
	// FinishReason of the last frame / the choice: default "stop", or "tool_calls" with ToolCalls.
	// Set "sensitive" to mimic stream moderation.
	FinishReason string
	// PromptTokens reported in Usage (default 9). CompletionTokens is the number of content and tool
	// frames sent so far (cumulative, as Hunyuan reports it); a non-stream answer reports the total.
	PromptTokens int

	// VerifySignature checks each request's TC3-HMAC-SHA256 Authorization against SecretID/SecretKey
	// and the 5-minute timestamp window, answering AuthFailure.* errors like Tencent.
	VerifySignature     bool
	SecretID, SecretKey string
	// Now is the server clock for the timestamp window (default time.Now).
	Now func() time.Time

	// ErrorCode, when set, answers with {"Response":{"Error":{"Code","Message"},"RequestId"}} (also to
	// stream requests, as JSON, as Tencent does for errors found before streaming starts).
	ErrorCode, ErrorMessage string
	// ErrorStatus is the HTTP status of every error answer (default 200, Tencent's usual).
	ErrorStatus int
	// ErrorTimes limits ErrorCode to the first N requests (0: every request), for failover tests.
	ErrorTimes int

	// Fault and FaultAfter break streams; StreamErrorCode is ErrorMsg.Code for ErrorFrame (default
	// 4000; 4001 is a model timeout).
	Fault           Fault
	FaultAfter      int
	StreamErrorCode int
	// ChunkDelay waits before each stream frame after the first.
	ChunkDelay time.Duration
	// Models, when set, are the only models served; others get InvalidParameterValue.Model.
	Models []string
}

// Request is one request the mock received.
type Request struct {
	Header http.Header
	Host   string
	Body   []byte
}

// Server is a running mock; it embeds the httptest server (URL, Client, ...).
type Server struct {
	*httptest.Server
	opts    Options
	mu      sync.Mutex
	reqs    []Request
	release chan struct{}
	once    sync.Once
}

// NewServer starts a mock Hunyuan upstream. Point a channel's base_url at its URL.
func NewServer(opts Options) *Server {
	if opts.Chunks <= 0 {
		opts.Chunks = 3
	}
	if opts.Answer == "" && len(opts.ToolCalls) == 0 {
		opts.Answer = DefaultAnswer
	}
	if opts.FinishReason == "" {
		opts.FinishReason = "stop"
		if len(opts.ToolCalls) > 0 {
			opts.FinishReason = "tool_calls"
		}
	}
	if opts.PromptTokens == 0 {
		opts.PromptTokens = 9
	}
	if opts.ErrorStatus == 0 {
		opts.ErrorStatus = http.StatusOK
	}
	if opts.StreamErrorCode == 0 {
		opts.StreamErrorCode = 4000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// Requests returns what the mock received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Close releases stalled streams, then shuts the server down.
func (s *Server) Close() {
	s.once.Do(func() { close(s.release) })
	s.Server.Close()
}

// record stores the request and returns its 1-based number.
func (s *Server) record(r *http.Request, body []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, Request{Header: r.Header.Clone(), Host: r.Host, Body: body})
	return len(s.reqs)
}

func requestID(n int) string {
	return "mock-request-" + strconv.Itoa(n)
}
