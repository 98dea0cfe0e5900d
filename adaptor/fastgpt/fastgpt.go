// Package fastgpt is the adaptor for FastGPT apps (simple apps, workflows, plugins) served through
// FastGPT's OpenAI-shaped endpoint, POST {base}/api/v1/chat/completions.
//
// The client's OpenAI body passes through with FastGPT's extras (chatId, responseChatItemId,
// variables, detail) set from the Request. Answer text comes back as OpenAI chunks; in detail mode
// FastGPT's other named SSE events (flowNodeStatus, flowResponses, updateVariables, interactive, tool
// events, ...) become named pass-through events that surfaces forward or drop.
//
// Usage: FastGPT's own usage is a fixed 1/1/1 placeholder and is never used. Real counts exist only
// in detail mode, as per-node tokens in responseData / flowResponses; the adaptor sums them. Without
// them a stream carries no usage (HasUsage stays false, the core estimates) and Complete estimates
// with adaptor.EstimateUsage.
package fastgpt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"relay/adaptor"
)

// Named events FastGPT writes in detail mode. Answer text (answer, fastAnswer) never appears as a
// named event: it becomes OpenAI chunks. Event.Name carries these strings.
const (
	EventAnswer           = "answer"
	EventFastAnswer       = "fastAnswer"
	EventError            = "error"
	EventFlowNodeStatus   = "flowNodeStatus"
	EventFlowNodeResponse = "flowNodeResponse"
	EventFlowResponses    = "flowResponses"
	EventToolCall         = "toolCall"
	EventToolParams       = "toolParams"
	EventToolResponse     = "toolResponse"
	EventUpdateVariables  = "updateVariables"
	EventInteractive      = "interactive"
	EventWorkflowDuration = "workflowDuration"
)

// Keys of Completion.Extra.
const (
	ExtraResponseData = "responseData"
	ExtraNewVariables = "newVariables"
	ExtraInteractive  = "interactive"
)

// Adaptor implements adaptor.Adaptor for FastGPT.
type Adaptor struct {
	// Tests pin these to compare whole bodies.
	now   func() time.Time
	newID func() string
}

var (
	_ adaptor.Adaptor   = (*Adaptor)(nil)
	_ adaptor.Validator = (*Adaptor)(nil)
)

// New returns the adaptor.
func New() *Adaptor {
	return &Adaptor{now: time.Now, newID: func() string { return adaptor.NewID("chatcmpl-") }}
}

// Validate checks the channel has a usable base URL.
func (*Adaptor) Validate(ch *adaptor.Channel) error {
	if ch.BaseURL == "" {
		return errors.New("base_url is required for kind fastgpt (the FastGPT root, e.g. https://api.fastgpt.in)")
	}
	u, err := url.Parse(ch.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("base_url of kind fastgpt must be an http(s) URL, got " + ch.BaseURL)
	}
	return nil
}

// Endpoint is the chat URL for a channel base. The base is FastGPT's root (https://api.fastgpt.in);
// a base that already ends in /api, /v1 (as OpenAI SDK users configure {root}/api/v1) or
// /chat/completions is accepted as well, so either habit works.
func Endpoint(base string) string {
	b := strings.TrimRight(base, "/")
	switch {
	case strings.HasSuffix(b, "/chat/completions"):
		return b
	case strings.HasSuffix(b, "/v1"):
		return b + "/chat/completions"
	case strings.HasSuffix(b, "/api"):
		return b + "/v1/chat/completions"
	}
	return b + "/api/v1/chat/completions"
}

// BuildBody rewrites the client's OpenAI body for FastGPT: stream and detail set explicitly, the
// FastGPT extras set from req when it has them, model renamed; every other field passes through.
func BuildBody(req *adaptor.Request, stream bool) ([]byte, error) {
	body := req.Body
	var err error
	set := func(path string, v any) {
		if err == nil {
			body, err = sjson.SetBytes(body, path, v)
		}
	}
	if req.UpstreamModel != "" && req.UpstreamModel != gjson.GetBytes(body, "model").Str {
		set("model", req.UpstreamModel) // FastGPT ignores it; kept honest for its logs
	}
	set("stream", stream)
	set("detail", req.Detail)
	if req.ChatID != "" {
		set("chatId", req.ChatID)
	}
	if req.ResponseChatItemID != "" {
		set("responseChatItemId", req.ResponseChatItemID)
	}
	if v := bytes.TrimSpace(req.Variables); len(v) > 0 && !bytes.Equal(v, []byte("null")) {
		if !gjson.ValidBytes(v) || !gjson.ParseBytes(v).IsObject() {
			return nil, adaptor.BadRequest("variables", "variables must be a JSON object")
		}
		if err == nil {
			body, err = sjson.SetRawBytes(body, "variables", v)
		}
	}
	if req.User != "" && !gjson.GetBytes(body, "customUid").Exists() {
		set("customUid", req.User) // FastGPT logs the chat under this user
	}
	if err != nil {
		return nil, adaptor.BadRequest("", "cannot rewrite the request for FastGPT: "+err.Error())
	}
	return body, nil
}

func (a *Adaptor) post(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request, body []byte, stream bool) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, Endpoint(ch.BaseURL), bytes.NewReader(body))
	if err != nil {
		return nil, adaptor.NewError(500, adaptor.TypeServer, "bad_channel", "channel "+ch.Name+" has a bad base_url")
	}
	hreq.Header.Set("Content-Type", "application/json")
	if stream {
		hreq.Header.Set("Accept", "text/event-stream")
	} else {
		hreq.Header.Set("Accept", "application/json")
	}
	if k := ch.KeyFor(req); k != "" {
		hreq.Header.Set("Authorization", "Bearer "+k)
	}
	return adaptor.Send(ctx, ch, hreq, ParseError)
}

// Complete sends a non-streaming request and renders FastGPT's answer as an OpenAI chat.completion.
func (a *Adaptor) Complete(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (*adaptor.Completion, error) {
	body, err := BuildBody(req, false)
	if err != nil {
		return nil, err
	}
	ctx, cancel := adaptor.WithTimeout(ctx, ch)
	defer cancel()
	resp, err := a.post(ctx, ch, req, body, false)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := adaptor.ReadBody(ctx, resp)
	if err != nil {
		return nil, err
	}
	return a.completion(req, out)
}

// completion turns FastGPT's non-stream answer into an OpenAI chat.completion.
func (a *Adaptor) completion(req *adaptor.Request, out []byte) (*adaptor.Completion, error) {
	if !gjson.ValidBytes(out) {
		return nil, adaptor.UpstreamError(502, "bad_response", "answer is not JSON")
	}
	root := gjson.ParseBytes(out)
	choices := root.Get("choices")
	if !choices.IsArray() {
		// Older releases answer errors with HTTP 200 and the {code, statusText, message} object.
		return nil, ParseError(200, out)
	}
	msg := choices.Get("0.message")
	text, reasoning, interactive := messageContent(msg.Get("content"))
	if r := msg.Get("reasoning_content"); r.Type == gjson.String && reasoning == "" {
		reasoning = r.Str
	}
	if e := root.Get("error"); text == "" && interactive == "" && failed(e) {
		// A node failed and nothing was answered: an empty success would hide the failure.
		return nil, adaptor.UpstreamError(502, "workflow_error", errorText(e))
	}
	finish := choices.Get("0.finish_reason").Str
	if finish == "" {
		finish = "stop"
	}
	responseData := root.Get("responseData")
	usage, ok := NodeUsage(responseData)
	if !ok {
		usage = adaptor.EstimateUsage(req.Body, text)
	}

	// Render through the shared accumulator so non-stream bodies match what streams collect to.
	var b adaptor.ChunkBuilder
	acc := adaptor.Accumulator{Usage: usage, HasUsage: true}
	acc.Add(&adaptor.Event{Choices: b.Choices(adaptor.Delta{Content: text, ReasoningContent: reasoning, FinishReason: finish})})
	c := acc.Completion(a.newID(), a.now().Unix(), req.Model)
	if responseData.Exists() {
		c.Extra = addExtra(c.Extra, ExtraResponseData, responseData.Raw)
	}
	if nv := root.Get("newVariables"); nv.Exists() {
		c.Extra = addExtra(c.Extra, ExtraNewVariables, nv.Raw)
	}
	if interactive != "" {
		c.Extra = addExtra(c.Extra, ExtraInteractive, interactive)
	}
	return c, nil
}

func addExtra(m map[string][]byte, k, raw string) map[string][]byte {
	if m == nil {
		m = map[string][]byte{}
	}
	m[k] = []byte(raw)
	return m
}

// messageContent reads a non-stream message content: a string, or (detail mode, several assistant
// outputs) an array of items {"type":"text","text":{"content"}}, {"type":"reasoning",...},
// {"type":"interactive","interactive":{...}}. Text items join with "\n" as FastGPT itself joins them
// when detail is off; the last interactive item is returned raw.
func messageContent(c gjson.Result) (text, reasoning, interactive string) {
	if c.Type == gjson.String {
		return c.Str, "", ""
	}
	if !c.IsArray() {
		return "", "", ""
	}
	var t, r []string
	c.ForEach(func(_, it gjson.Result) bool {
		switch it.Get("type").Str {
		case "text":
			if s := it.Get("text.content").Str; s != "" {
				t = append(t, s)
			}
		case "reasoning":
			if s := it.Get("reasoning.content").Str; s != "" {
				r = append(r, s)
			}
		case "interactive":
			interactive = it.Get("interactive").Raw
		}
		return true
	})
	return strings.Join(t, "\n"), strings.Join(r, "\n"), interactive
}

// failed reports whether a non-stream `error` value says a node failed.
func failed(e gjson.Result) bool {
	switch e.Type {
	case gjson.Null, gjson.False:
		return false
	case gjson.String:
		return e.Str != ""
	case gjson.JSON:
		return e.Raw != "{}" && e.Raw != "[]"
	}
	return e.Exists()
}

func errorText(e gjson.Result) string {
	if e.Type == gjson.String {
		return e.Str
	}
	if m := e.Get("message").Str; m != "" {
		return m
	}
	return "workflow node failed: " + e.Raw
}

// Stream sends a streaming request. It reads ahead to the first frame so that an error FastGPT
// reports as its first SSE frame (with HTTP 200: validation, auth, balance) is returned from Stream,
// before anything reached the client, where failover and the right status are still possible.
func (a *Adaptor) Stream(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (adaptor.Events, error) {
	body, err := BuildBody(req, true)
	if err != nil {
		return nil, err
	}
	ctx, cancel := adaptor.WithTimeout(ctx, ch)
	resp, err := a.post(ctx, ch, req, body, true)
	if err != nil {
		cancel()
		return nil, err
	}
	// Just enough buffer to peek at the first bytes: once they are consumed, the SSE reader's larger
	// reads pass through it straight to the body.
	br := bufio.NewReaderSize(resp.Body, 64)
	if jsonAnswer(resp, br) {
		// A JSON body to a stream request is an error object (older releases use HTTP 200).
		defer cancel()
		defer resp.Body.Close()
		b, _ := adaptor.ReadErrorBody(br)
		if gjson.GetBytes(b, "choices").Exists() {
			return nil, adaptor.UpstreamError(502, "bad_response", "expected an event stream, got a JSON answer")
		}
		return nil, ParseError(resp.StatusCode, b)
	}
	ev := newEvents(ctx, cancel, resp.Body, br)
	if _, err := ev.Next(); err != nil {
		if errors.Is(err, io.EOF) {
			return ev, nil // complete but empty; Next keeps answering io.EOF
		}
		ev.Close()
		return nil, err
	}
	ev.held = true
	return ev, nil
}

// jsonAnswer reports whether a stream answer is a JSON document instead of SSE. FastGPT does not
// always set a content type on early errors, so the first byte decides as well.
func jsonAnswer(resp *http.Response, br *bufio.Reader) bool {
	if adaptor.IsJSONResponse(resp) {
		return true
	}
	for i := 1; i <= 64; i++ {
		p, err := br.Peek(i)
		if len(p) < i {
			return false
		}
		switch c := p[i-1]; c {
		case ' ', '\t', '\r', '\n':
			if err != nil {
				return false
			}
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}
