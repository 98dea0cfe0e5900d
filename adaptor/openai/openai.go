// Package openai is the adaptor for OpenAI-compatible upstreams: the body passes through, rewritten only
// where needed (model name, stream_options), and chunks are forwarded as they come.
package openai

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"relay/adaptor"
)

// Adaptor implements adaptor.Adaptor for OpenAI-compatible servers.
type Adaptor struct{}

// New returns the adaptor.
func New() *Adaptor { return &Adaptor{} }

// Validate checks the channel has a base URL.
func (Adaptor) Validate(ch *adaptor.Channel) error {
	if ch.BaseURL == "" {
		return errors.New("base_url is required for kind openai")
	}
	return nil
}

// rewrite sets the upstream model and the stream flags; everything else passes through untouched.
func rewrite(req *adaptor.Request, stream bool) ([]byte, error) {
	body := req.Body
	var err error
	if req.UpstreamModel != "" && req.UpstreamModel != req.Model {
		if body, err = sjson.SetBytes(body, "model", req.UpstreamModel); err != nil {
			return nil, adaptor.BadRequest("model", "cannot rewrite model: "+err.Error())
		}
	}
	if stream {
		// Always ask for usage so the relay can account; the pump drops the usage chunk for clients
		// that did not ask for it.
		if !gjson.GetBytes(body, "stream_options.include_usage").Bool() {
			if body, err = sjson.SetBytes(body, "stream_options.include_usage", true); err != nil {
				return nil, adaptor.BadRequest("stream_options", "cannot rewrite stream_options: "+err.Error())
			}
		}
	} else if gjson.GetBytes(body, "stream").Bool() {
		body, _ = sjson.SetBytes(body, "stream", false)
	}
	return body, nil
}

func (a *Adaptor) post(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request, body []byte) (*http.Response, error) {
	url := strings.TrimRight(ch.BaseURL, "/") + "/chat/completions"
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, adaptor.NewError(500, adaptor.TypeServer, "bad_channel", "channel "+ch.Name+" has a bad base_url")
	}
	hreq.Header.Set("Content-Type", "application/json")
	if k := ch.KeyFor(req); k != "" {
		hreq.Header.Set("Authorization", "Bearer "+k)
	}
	return adaptor.Send(ctx, ch, hreq, ParseError)
}

// ParseError reads an OpenAI error body ({"error":{"message","type","code"}}). The code is error.code
// alone: OpenAI's type is a field of its own, and the relay derives it from the status.
func ParseError(status int, body []byte) *adaptor.Error {
	msg, _ := adaptor.ErrorMessage(body)
	return adaptor.UpstreamError(status, gjson.GetBytes(body, "error.code").String(), msg)
}

// Complete sends a non-streaming request.
func (a *Adaptor) Complete(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (*adaptor.Completion, error) {
	body, err := rewrite(req, false)
	if err != nil {
		return nil, err
	}
	resp, err := a.post(ctx, ch, req, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := adaptor.ReadBody(ctx, resp)
	if err != nil {
		return nil, err
	}
	var f [3][]byte // choices, usage, error: one validating pass over the answer
	valid := adaptor.ObjectFields(out, chunkFields, f[:])
	if !valid || len(f[0]) == 0 || f[0][0] != '[' {
		if valid && f[2] != nil {
			return nil, ParseError(502, out)
		}
		return nil, adaptor.UpstreamError(502, "bad_response", "answer is not a chat.completion")
	}
	var usage adaptor.Usage
	if len(f[1]) > 0 && f[1][0] == '{' {
		usage = adaptor.ParseOpenAIUsage(gjson.ParseBytes(f[1]))
	}
	return &adaptor.Completion{Body: out, Usage: usage}, nil
}

// Stream sends a streaming request and returns its chunks.
func (a *Adaptor) Stream(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (adaptor.Events, error) {
	body, err := rewrite(req, true)
	if err != nil {
		return nil, err
	}
	resp, err := a.post(ctx, ch, req, body)
	if err != nil {
		return nil, err
	}
	if adaptor.IsJSONResponse(resp) {
		// Some servers answer a stream request with a JSON error and status 200.
		defer resp.Body.Close()
		b, _ := adaptor.ReadErrorBody(resp.Body)
		return nil, ParseError(502, b)
	}
	return NewEvents(ctx, resp.Body), nil
}

// Events decodes an OpenAI SSE stream.
type Events struct {
	ctx  context.Context
	body io.ReadCloser
	sse  *adaptor.SSEReader
	ev   adaptor.Event
	done bool
}

// NewEvents reads OpenAI chunks from body.
func NewEvents(ctx context.Context, body io.ReadCloser) *Events {
	return &Events{ctx: ctx, body: body, sse: adaptor.NewSSEReader(body)}
}

// Next returns the next chunk; io.EOF after [DONE].
func (e *Events) Next() (*adaptor.Event, error) {
	if e.done {
		return nil, io.EOF
	}
	for {
		_, data, err := e.sse.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, adaptor.StreamBroken("no [DONE]")
			}
			return nil, adaptor.TransportError(e.ctx, err)
		}
		if adaptor.IsDone(data) {
			e.done = true
			return nil, io.EOF
		}
		return e.decode(data)
	}
}

// chunkFields are the top-level fields the relay reads in a chunk or a completion.
var chunkFields = []string{"choices", "usage", "error"}

func (e *Events) decode(data []byte) (*adaptor.Event, error) {
	var f [3][]byte // choices, usage, error: one validating pass over the chunk
	if !adaptor.ObjectFields(data, chunkFields, f[:]) {
		return nil, adaptor.UpstreamError(502, "bad_chunk", "malformed stream chunk")
	}
	if f[2] != nil && string(f[2]) != "null" {
		return nil, ParseError(502, data)
	}
	e.ev = adaptor.Event{}
	if f[0] != nil && string(f[0]) != "null" {
		e.ev.Choices = f[0]
	}
	if len(f[1]) > 0 && f[1][0] == '{' {
		e.ev.Usage, e.ev.HasUsage = adaptor.ParseOpenAIUsage(gjson.ParseBytes(f[1])), true
	}
	return &e.ev, nil
}

// OnWait lets the pump flush only before a read that may wait for the upstream (adaptor.WaitNotifier).
func (e *Events) OnWait(fn func()) bool { return e.sse.OnWait(fn) }

// Close closes the upstream body.
func (e *Events) Close() error { return e.body.Close() }
