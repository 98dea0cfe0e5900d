// Package gemini is the adaptor for Google's Gemini API (Generative Language API, generateContent and
// streamGenerateContent?alt=sse), following ../shared/wire/gemini.md. OpenAI chat requests are
// translated with gjson reads and byte appends; answers come back as OpenAI completions and chunks.
//
// Channel settings (kind "gemini"):
//
//	base_url                 default https://generativelanguage.googleapis.com/v1beta
//	keys                     Gemini API keys, sent as the x-goog-api-key header (never in the URL)
//	credentials.max_tokens   optional maxOutputTokens when the client sets no output cap
package gemini

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// DefaultBaseURL is used when the channel has no base_url.
const DefaultBaseURL = "https://generativelanguage.googleapis.com/v1beta"

// Adaptor implements adaptor.Adaptor and adaptor.Validator for Gemini.
type Adaptor struct{}

// New returns the adaptor.
func New() *Adaptor { return &Adaptor{} }

// Validate checks the channel's key, base URL and max_tokens setting.
func (Adaptor) Validate(ch *adaptor.Channel) error {
	if len(ch.Keys) == 0 {
		return errors.New("keys: kind gemini needs at least one Gemini API key")
	}
	if ch.BaseURL != "" {
		u, err := url.Parse(ch.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("base_url must be an http(s) URL such as " + DefaultBaseURL)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return errors.New("base_url must not carry a query or fragment (the key goes in the x-goog-api-key header)")
		}
	}
	if v, ok := ch.Credentials["max_tokens"]; ok {
		if n, err := strconv.Atoi(v); err != nil || n <= 0 {
			return errors.New("credentials.max_tokens must be a positive integer, not " + strconv.Quote(v))
		}
	}
	return nil
}

// endpoint is {base}/models/{model}:{method}. Model names may carry their "models/" prefix; tuned
// models ("tunedModels/...") keep theirs.
func endpoint(ch *adaptor.Channel, model, method string) string {
	base := ch.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	base = strings.TrimRight(base, "/")
	model = strings.TrimPrefix(model, "models/")
	if rest, ok := strings.CutPrefix(model, "tunedModels/"); ok {
		return base + "/tunedModels/" + url.PathEscape(rest) + ":" + method
	}
	return base + "/models/" + url.PathEscape(model) + ":" + method
}

func (a *Adaptor) post(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request, stream bool) (*http.Response, error) {
	model := req.UpstreamModel
	if model == "" {
		model = req.Model
	}
	body, err := buildRequest(ctx, req.Body, ch.Credentials["max_tokens"])
	if err != nil {
		return nil, err
	}
	u := endpoint(ch, model, "generateContent")
	if stream {
		u = endpoint(ch, model, "streamGenerateContent") + "?alt=sse"
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, adaptor.NewError(500, adaptor.TypeServer, "bad_channel", "channel "+ch.Name+" has a bad base_url")
	}
	hreq.Header.Set("Content-Type", "application/json")
	if stream {
		hreq.Header.Set("Accept", "text/event-stream")
	}
	// The key goes in a header, never in the URL, so it cannot leak into error messages or logs.
	if k := ch.KeyFor(req); k != "" {
		hreq.Header.Set("x-goog-api-key", k)
	}
	return adaptor.Send(ctx, ch, hreq, ParseError)
}

// Complete sends generateContent and returns an OpenAI chat.completion.
func (a *Adaptor) Complete(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (*adaptor.Completion, error) {
	resp, err := a.post(ctx, ch, req, false)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := adaptor.ReadBody(ctx, resp)
	if err != nil {
		return nil, err
	}
	return completion(out, req)
}

// completion translates a whole GenerateContentResponse.
func completion(out []byte, req *adaptor.Request) (*adaptor.Completion, error) {
	s := adaptor.BytesString(out)
	if !gjson.Valid(s) {
		return nil, adaptor.UpstreamError(502, "bad_response", "answer is not JSON")
	}
	var d decoder
	fr := d.decode(s, 502)
	if fr.err != nil {
		return nil, fr.err
	}
	if !fr.hasCandidate && fr.delta.FinishReason == "" {
		return nil, adaptor.UpstreamError(502, "bad_response", "answer has no candidates")
	}
	if fr.delta.FinishReason == "" {
		fr.delta.FinishReason = mapFinish("STOP", d.ncalls > 0)
	}
	var cb adaptor.ChunkBuilder
	var acc adaptor.Accumulator
	acc.Add(&adaptor.Event{Choices: cb.Choices(fr.delta)})
	if fr.hasUsage && fr.usage.Valid() {
		acc.Usage, acc.HasUsage = fr.usage, true
	} else {
		acc.Usage = adaptor.EstimateUsage(req.Body, acc.Text())
	}
	id := "chatcmpl-" + fr.responseID
	if fr.responseID == "" {
		id = adaptor.NewID("chatcmpl-")
	}
	return acc.Completion(id, time.Now().Unix(), req.Model), nil
}

// Stream sends streamGenerateContent?alt=sse and returns OpenAI chunks.
func (a *Adaptor) Stream(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (adaptor.Events, error) {
	resp, err := a.post(ctx, ch, req, true)
	if err != nil {
		return nil, err
	}
	if adaptor.IsJSONResponse(resp) {
		// Not a stream: an error answered with 200, or a server that ignored alt=sse.
		defer resp.Body.Close()
		b, _ := adaptor.ReadErrorBody(resp.Body)
		if e := ParseError(502, b); e != nil {
			return nil, e
		}
		return nil, adaptor.UpstreamError(502, "bad_response", "upstream answered a stream request with JSON, not SSE")
	}
	return NewEvents(ctx, resp.Body), nil
}

// Events decodes a Gemini SSE stream into OpenAI chunks. The stream has no end marker: it is complete
// when the body ends after a chunk with a finishReason (or a blocked prompt).
type Events struct {
	ctx      context.Context
	body     io.ReadCloser
	sse      *adaptor.SSEReader
	dec      decoder
	cb       adaptor.ChunkBuilder
	ev       adaptor.Event
	finished bool
	done     bool
}

// NewEvents reads Gemini SSE chunks from body.
func NewEvents(ctx context.Context, body io.ReadCloser) *Events {
	return &Events{ctx: ctx, body: body, sse: adaptor.NewSSEReader(body)}
}

// Next returns the next chunk; io.EOF when the body ended after the finish.
func (e *Events) Next() (*adaptor.Event, error) {
	if e.done {
		return nil, io.EOF
	}
	for {
		_, data, err := e.sse.Next()
		if err != nil {
			if e.finished && (errors.Is(err, io.EOF) || e.ctx.Err() == nil) {
				// The answer was complete; a connection torn down after it loses nothing.
				e.done = true
				return nil, io.EOF
			}
			if errors.Is(err, io.EOF) {
				return nil, adaptor.StreamBroken("the body ended before a chunk with finishReason")
			}
			return nil, adaptor.TransportError(e.ctx, err)
		}
		data = bytes.TrimSpace(data)
		if len(data) == 0 {
			continue
		}
		s := adaptor.BytesString(data)
		if !gjson.Valid(s) {
			return nil, adaptor.UpstreamError(502, "bad_chunk", "malformed stream chunk")
		}
		fr := e.dec.decode(s, 502)
		if fr.err != nil {
			return nil, fr.err
		}
		e.ev = adaptor.Event{Usage: fr.usage, HasUsage: fr.hasUsage}
		d := fr.delta
		if d.Content != "" || d.ReasoningContent != "" || d.ToolCalls != nil || d.FinishReason != "" {
			if d.FinishReason != "" {
				e.finished = true
			}
			e.ev.Choices = e.cb.Choices(d)
		} else if !fr.hasUsage {
			continue // nothing to say (an empty keep-alive chunk)
		}
		return &e.ev, nil
	}
}

// OnWait lets the pump flush only before a read that may wait for the upstream (adaptor.WaitNotifier).
func (e *Events) OnWait(fn func()) bool { return e.sse.OnWait(fn) }

// Close closes the upstream body.
func (e *Events) Close() error { return e.body.Close() }
