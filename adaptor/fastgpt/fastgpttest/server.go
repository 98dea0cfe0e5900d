// Package fastgpttest is a mock FastGPT upstream for tests, built from the wire reference
// (shared/wire/fastgpt.md): POST /api/v1/chat/completions with FastGPT's non-stream bodies, its
// detail=false and detail=true event streams (end order: final chunk, [DONE], flowResponses, close),
// its error objects and HTTP statuses, pacing knobs, and a record of every request it received.
//
//	srv := fastgpttest.NewServer(fastgpttest.Options{Key: "fastgpt-k", Answer: "Hi there."})
//	defer srv.Close()
//	// channel base_url = srv.URL; then assert on srv.Requests()
package fastgpttest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// Path is where the mock serves chat completions; other paths answer 404 with an HTML page.
const Path = "/api/v1/chat/completions"

// EventError is the SSE event name of FastGPT's stream errors.
const EventError = "error"

// DefaultAnswer is the reply when Options.Answer and Options.Pieces are empty.
const DefaultAnswer = "Refunds are accepted within 30 days."

// Options configure the mock. The zero value is a working app that answers DefaultAnswer.
type Options struct {
	// Key, when set, is the only app key accepted (Authorization: Bearer <Key>); any other answer
	// gets FastGPT's unAuthApiKey error (code 514).
	Key string

	// Answer is the reply, streamed in word-sized pieces. Pieces, when set, is the reply as the exact
	// streamed pieces (Answer is then ignored). AnswerFunc, when set, computes Answer per request
	// from the request body.
	Answer     string
	Pieces     []string
	AnswerFunc func(body []byte) string
	// Reasoning, when set, is streamed before the answer as delta.reasoning_content (and is a
	// reasoning item of the detail=true non-stream content).
	Reasoning string
	// FastAnswer sends the pieces as fastAnswer events instead of answer events (detail mode).
	FastAnswer bool

	// Detail data, sent only when the request has detail=true.
	//
	// NodeStatus names the flowNodeStatus events sent first; nil means {"AI chat"}.
	NodeStatus []string
	// Nodes are the responseData / flowResponses entries; nil means DefaultNodes(). ResponseData,
	// when set, is sent verbatim instead (a raw JSON array, e.g. with nested toolDetail).
	Nodes        []Node
	ResponseData json.RawMessage
	// NewVariables is the non-stream newVariables; nil echoes the request's variables (or {}).
	NewVariables json.RawMessage
	// UpdateVariables, when set, is sent as an updateVariables event.
	UpdateVariables json.RawMessage
	// Interactive, when set, is the interactive object: an `interactive` event in streams and an
	// interactive item of the non-stream content array.
	Interactive json.RawMessage
	// Tool, when set, runs one tool call: toolCall, toolParams, toolResponse events.
	Tool *Tool
	// WorkflowDuration, when positive, is sent as a workflowDuration event before the end.
	WorkflowDuration float64
	// ExtraFrames are sent as they are after the node statuses (detail mode), for unknown events.
	ExtraFrames []Frame
	// OmitFlowResponses leaves out the trailing flowResponses event (apps with responseDetail off).
	OmitFlowResponses bool

	// Fail makes the request fail; see Failure.
	Fail *Failure

	// Delay is the pause before every stream frame after the first; the mock stops when the client
	// goes away. HeaderDelay is the pause before anything is written.
	Delay       time.Duration
	HeaderDelay time.Duration
	// WriteSize, when positive, writes every frame in pieces of this many bytes, flushing each, so
	// frames and multi-byte characters arrive split.
	WriteSize int

	// Old releases and broken upstreams.
	LegacyFinalDelta bool // the final chunk has delta {} instead of {"role":"assistant","content":null}
	NoDone           bool // the stream ends after the answer pieces, without final chunk or [DONE]
}

// Node is one responseData / flowResponses entry.
type Node struct {
	NodeID, Name, Type string
	RunningTime        float64
	// Tokens is the legacy total; InputTokens/OutputTokens the split newer releases send.
	Tokens, InputTokens, OutputTokens int
	// Fields are merged into the entry (quoteList, error, pluginOutput, ...).
	Fields map[string]any
}

// DefaultNodes is a workflow start and one AI chat node with 41 input and 16 output tokens.
func DefaultNodes() []Node {
	return []Node{
		{NodeID: "workflowStartNodeId", Name: "Workflow start", Type: "workflowStart"},
		{NodeID: "aiChatNode01", Name: "AI chat", Type: "chatNode", RunningTime: 1.2, Tokens: 57, InputTokens: 41, OutputTokens: 16,
			Fields: map[string]any{"model": "gpt-4o-mini", "totalPoints": 0.01}},
	}
}

// Tool is one tool call made by a tool-call node.
type Tool struct {
	ID, Name, FunctionName string
	Params, Response       string
}

// Frame is one raw SSE frame; Event "" writes no event line.
type Frame struct {
	Event string
	Data  string
}

// Failure describes how a request fails.
//
// With HTTPStatus zero the failure is FastGPT's own: a non-stream request gets HTTP 500 and the
// JSON error object; a stream request gets HTTP 200 and one `event: error` frame, then the body
// ends (no [DONE]). By default the failure happens before the workflow starts (auth, balance,
// validation): the error is the only frame and no content type is set, as FastGPT fails before its
// SSE headers. With InWorkflow or AfterPieces > 0 it happens while the workflow runs: after the
// node status events and AfterPieces answer pieces.
//
// With HTTPStatus set, the answer is that HTTP status for stream requests too (a gateway failing,
// or an older release answering errors with 200): the body is Body when set, else the JSON error
// object.
type Failure struct {
	Code       int
	StatusText string
	Message    string

	AfterPieces int
	InWorkflow  bool
	HTTPStatus  int
	Body        string
}

// Fixed error objects FastGPT sends (ERROR_RESPONSE), by code.
var fixed = map[int]Failure{
	403:    {Code: 403, StatusText: "unAuthorization", Message: "凭证错误"},
	510:    {Code: 510, StatusText: "insufficientQuota", Message: "账号余额不足"},
	511:    {Code: 511, StatusText: "unAuthModel", Message: "无权使用该模型"},
	513:    {Code: 513, StatusText: "unAuthFile", Message: "无权阅读该文件"},
	514:    {Code: 514, StatusText: "unAuthApiKey", Message: "Api Key 不合法"},
	506000: {Code: 506000, StatusText: "openapiUnExist", Message: "common:code_error.openapi_error.api_key_not_exist"},
	506001: {Code: 506001, StatusText: "openapiUnAuth", Message: "common:code_error.openapi_error.un_auth"},
	506002: {Code: 506002, StatusText: "openapiExceedLimit", Message: "common:code_error.openapi_error.exceed_limit"},
}

// FixedError returns FastGPT's fixed error object for code (403, 510, 511, 513, 514, 506000,
// 506001, 506002); other codes give a generic object with that code.
func FixedError(code int) *Failure {
	if f, ok := fixed[code]; ok {
		return &f
	}
	return &Failure{Code: code, StatusText: "error", Message: "error"}
}

// MessageError returns a free-text failure, as FastGPT throws them ("messages is empty", ...).
func MessageError(msg string) *Failure {
	return &Failure{Code: 500, StatusText: "error", Message: msg}
}

// inWorkflow reports whether the failure is written into a running event stream.
func (f *Failure) inWorkflow(stream bool) bool {
	return stream && f.HTTPStatus == 0 && (f.InWorkflow || f.AfterPieces > 0)
}

// isFixed reports whether the failure is one of the fixed objects, which streams send whole.
func (f *Failure) isFixed() bool { return f.StatusText != "" && f.StatusText != "error" }

func (f *Failure) jsonBody() []byte {
	b, _ := json.Marshal(map[string]any{"code": f.Code, "statusText": f.StatusText, "message": f.Message, "data": nil})
	return b
}

// streamData is the error frame payload: the whole object for fixed errors, {"message"} otherwise.
func (f *Failure) streamData() []byte {
	if f.isFixed() {
		return f.jsonBody()
	}
	b, _ := json.Marshal(map[string]any{"message": f.Message})
	return b
}

// Request is what the mock received.
type Request struct {
	Method, Path  string
	Authorization string
	Header        http.Header
	Body          []byte
	// Canceled is set when the client went away before the answer was complete.
	Canceled bool
}

// Server is the running mock. Its URL is the FastGPT root to use as a channel's base_url.
type Server struct {
	*httptest.Server
	mu   sync.Mutex
	opts Options
	reqs []*Request
}

// NewServer starts a mock FastGPT. Close it when done.
func NewServer(opts Options) *Server {
	s := &Server{opts: opts}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// SetOptions changes the behaviour for later requests.
func (s *Server) SetOptions(opts Options) {
	s.mu.Lock()
	s.opts = opts
	s.mu.Unlock()
}

// Requests returns copies of the requests received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = *r
	}
	return out
}

// LastRequest returns the latest request (the zero Request when there was none).
func (s *Server) LastRequest() Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return Request{}
	}
	return *s.reqs[len(s.reqs)-1]
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := &Request{Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization"), Header: r.Header.Clone(), Body: body}
	s.mu.Lock()
	s.reqs = append(s.reqs, rec)
	opts := s.opts
	s.mu.Unlock()

	if r.URL.Path != Path {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "<!DOCTYPE html><html><body><h1>404</h1><p>This page could not be found.</p></body></html>")
		return
	}
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	x := &exchange{s: s, rec: rec, w: w, r: r, opts: &opts, body: body}
	if !x.sleep(opts.HeaderDelay) {
		return
	}
	x.run()
}

// exchange is one request being answered.
type exchange struct {
	s       *Server
	rec     *Request
	w       http.ResponseWriter
	r       *http.Request
	opts    *Options
	body    []byte
	stream  bool
	detail  bool
	headers bool // SSE headers written
	frames  int
}

func (x *exchange) run() {
	req := gjson.ParseBytes(x.body)
	x.stream = req.Get("stream").Bool()
	x.detail = req.Get("detail").Bool()

	// The handler's own checks, in FastGPT's order: messages type, auth, then emptiness.
	msgs := req.Get("messages")
	switch {
	case msgs.Exists() && !msgs.IsArray():
		x.fail(MessageError("messages is not array"))
	case x.opts.Key != "" && x.rec.Authorization != "Bearer "+x.opts.Key:
		x.fail(FixedError(514))
	case len(msgs.Array()) == 0:
		x.fail(MessageError("messages is empty"))
	case x.opts.Fail != nil && !x.opts.Fail.inWorkflow(x.stream):
		x.fail(x.opts.Fail)
	case x.stream:
		x.streamAnswer()
	default:
		x.jsonAnswer(req)
	}
}

// fail answers a failure before anything else was written.
func (x *exchange) fail(f *Failure) {
	h := x.w.Header()
	if f.HTTPStatus == 0 && x.stream {
		// FastGPT's catch: sseErrRes on a response whose headers were not set yet.
		x.w.WriteHeader(http.StatusOK)
		x.frame(EventError, f.streamData())
		return
	}
	status := f.HTTPStatus
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if f.Body != "" {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		x.w.WriteHeader(status)
		io.WriteString(x.w, f.Body)
		return
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	x.w.WriteHeader(status)
	x.w.Write(f.jsonBody())
}

func (x *exchange) answer() string {
	if x.opts.AnswerFunc != nil {
		return x.opts.AnswerFunc(x.body)
	}
	if len(x.opts.Pieces) > 0 {
		return strings.Join(x.opts.Pieces, "")
	}
	if x.opts.Answer != "" {
		return x.opts.Answer
	}
	return DefaultAnswer
}

func (x *exchange) pieces() []string {
	if len(x.opts.Pieces) > 0 && x.opts.AnswerFunc == nil {
		return x.opts.Pieces
	}
	return Words(x.answer())
}

// Words splits s into word-sized pieces, each space kept with the word after it.
func Words(s string) []string {
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if s[i] == ' ' {
			out = append(out, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func (x *exchange) responseData() json.RawMessage {
	if x.opts.ResponseData != nil {
		return x.opts.ResponseData
	}
	nodes := x.opts.Nodes
	if nodes == nil {
		nodes = DefaultNodes()
	}
	list := make([]map[string]any, 0, len(nodes))
	for i, n := range nodes {
		m := map[string]any{"id": "resp" + string(rune('A'+i%26)), "nodeId": n.NodeID, "moduleName": n.Name, "moduleType": n.Type, "runningTime": n.RunningTime}
		if n.Tokens != 0 {
			m["tokens"] = n.Tokens
		}
		if n.InputTokens != 0 {
			m["inputTokens"] = n.InputTokens
		}
		if n.OutputTokens != 0 {
			m["outputTokens"] = n.OutputTokens
		}
		for k, v := range n.Fields {
			m[k] = v
		}
		list = append(list, m)
	}
	b, _ := json.Marshal(list)
	return b
}

func (x *exchange) newVariables(req gjson.Result) json.RawMessage {
	if x.opts.NewVariables != nil {
		return x.opts.NewVariables
	}
	if v := req.Get("variables"); v.IsObject() {
		return json.RawMessage(v.Raw)
	}
	return json.RawMessage("{}")
}

// jsonAnswer is the non-stream body (FastGPT's res.json in completions.ts).
func (x *exchange) jsonAnswer(req gjson.Result) {
	text := x.answer()
	var content any = text
	if x.detail && (x.opts.Interactive != nil || x.opts.Reasoning != "") {
		var items []any
		if x.opts.Reasoning != "" {
			items = append(items, map[string]any{"type": "reasoning", "reasoning": map[string]any{"content": x.opts.Reasoning}})
		}
		items = append(items, map[string]any{"type": "text", "text": map[string]any{"content": text}})
		if x.opts.Interactive != nil {
			items = append(items, map[string]any{"type": "interactive", "interactive": x.opts.Interactive})
		}
		content = items
	}
	out := map[string]any{
		"id":      req.Get("chatId").Str,
		"model":   "",
		"usage":   map[string]int{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 1},
		"choices": []any{map[string]any{"message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop", "index": 0}},
	}
	if x.detail {
		out["responseData"] = x.responseData()
		out["newVariables"] = x.newVariables(req)
	}
	b, _ := json.Marshal(out)
	x.w.Header().Set("Content-Type", "application/json; charset=utf-8")
	x.w.WriteHeader(http.StatusOK)
	x.w.Write(b)
}

// chunk is FastGPT's answer chunk (textAdaptGptResponse).
func chunk(delta map[string]any, finish any) []byte {
	b, _ := json.Marshal(map[string]any{"id": "", "object": "", "created": 0, "model": "",
		"choices": []any{map[string]any{"delta": delta, "index": 0, "finish_reason": finish}}})
	return b
}

// streamAnswer writes the event stream in FastGPT's order.
func (x *exchange) streamAnswer() {
	o := x.opts
	ev := func(name string) string { // named only in detail mode
		if x.detail {
			return name
		}
		return ""
	}
	answerEvent := "answer"
	if o.FastAnswer {
		answerEvent = "fastAnswer"
	}
	if x.detail {
		names := o.NodeStatus
		if names == nil {
			names = []string{"AI chat"}
		}
		for _, n := range names {
			b, _ := json.Marshal(map[string]string{"status": "running", "name": n})
			if !x.send("flowNodeStatus", b) {
				return
			}
		}
		for _, f := range o.ExtraFrames {
			if !x.send(f.Event, []byte(f.Data)) {
				return
			}
		}
		if t := o.Tool; t != nil {
			tc, _ := json.Marshal(map[string]any{"tool": map[string]string{"id": t.ID, "toolName": t.Name, "toolAvatar": "", "functionName": t.FunctionName, "params": t.Params, "response": ""}})
			tp, _ := json.Marshal(map[string]any{"tool": map[string]string{"id": t.ID, "toolName": "", "toolAvatar": "", "params": t.Params}})
			tr, _ := json.Marshal(map[string]any{"tool": map[string]string{"id": t.ID, "toolName": "", "toolAvatar": "", "params": "", "response": t.Response}})
			if !x.send("toolCall", tc) || !x.send("toolParams", tp) || !x.send("toolResponse", tr) {
				return
			}
		}
	}
	if o.Reasoning != "" {
		if !x.send(ev(answerEvent), chunk(map[string]any{"role": "assistant", "content": "", "reasoning_content": o.Reasoning}, nil)) {
			return
		}
	}
	for i, p := range x.pieces() {
		if o.Fail != nil && i == o.Fail.AfterPieces {
			x.send(EventError, o.Fail.streamData())
			return
		}
		if !x.send(ev(answerEvent), chunk(map[string]any{"role": "assistant", "content": p}, nil)) {
			return
		}
	}
	if o.Fail != nil {
		x.send(EventError, o.Fail.streamData())
		return
	}
	if o.NoDone {
		return
	}
	if x.detail {
		if o.UpdateVariables != nil && !x.send("updateVariables", o.UpdateVariables) {
			return
		}
		if o.Interactive != nil {
			b, _ := json.Marshal(map[string]any{"interactive": o.Interactive})
			if !x.send("interactive", b) {
				return
			}
		}
		if o.WorkflowDuration > 0 {
			b, _ := json.Marshal(map[string]any{"durationSeconds": o.WorkflowDuration})
			if !x.send("workflowDuration", b) {
				return
			}
		}
	}
	final := map[string]any{"role": "assistant", "content": nil}
	if o.LegacyFinalDelta {
		final = map[string]any{}
	}
	if !x.send(ev("answer"), chunk(final, "stop")) || !x.send(ev("answer"), []byte("[DONE]")) {
		return
	}
	if x.detail && !o.OmitFlowResponses {
		x.send("flowResponses", x.responseData())
	}
	x.mark(false)
}

// send writes one frame after the configured delay; false when the client went away.
func (x *exchange) send(event string, data []byte) bool {
	if x.frames > 0 && !x.sleep(x.opts.Delay) {
		return false
	}
	x.frames++
	if !x.headers {
		h := x.w.Header()
		if event != EventError || x.frames > 1 {
			h.Set("Content-Type", "text/event-stream;charset=utf-8")
		}
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		x.w.WriteHeader(http.StatusOK)
		x.headers = true
	}
	return x.frame(event, data)
}

// frame writes one SSE frame, in WriteSize pieces when set, flushing after each write.
func (x *exchange) frame(event string, data []byte) bool {
	var b []byte
	if event != "" {
		b = append(b, "event: "+event+"\n"...)
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	b = append(b, "\n\n"...)
	step := len(b)
	if x.opts.WriteSize > 0 {
		step = x.opts.WriteSize
	}
	fl, _ := x.w.(http.Flusher)
	for len(b) > 0 {
		n := min(step, len(b))
		if _, err := x.w.Write(b[:n]); err != nil {
			x.mark(true)
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		b = b[n:]
		if len(b) > 0 && x.r.Context().Err() != nil {
			x.mark(true)
			return false
		}
	}
	return true
}

// sleep waits d unless the client goes away first.
func (x *exchange) sleep(d time.Duration) bool {
	if d <= 0 {
		if x.r.Context().Err() != nil {
			x.mark(true)
			return false
		}
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-x.r.Context().Done():
		x.mark(true)
		return false
	case <-t.C:
		return true
	}
}

func (x *exchange) mark(canceled bool) {
	x.s.mu.Lock()
	x.rec.Canceled = canceled
	x.s.mu.Unlock()
}
