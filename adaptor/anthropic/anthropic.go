// Package anthropic is the adaptor for Anthropic's Messages API (../shared/wire/anthropic.md): OpenAI chat
// requests become POST /v1/messages bodies, and Anthropic's answers and named SSE events become OpenAI
// completions and chunks.
//
// Channel settings (kind "anthropic"):
//
//	base_url                 default https://api.anthropic.com (".../v1" is accepted too)
//	keys                     API keys, sent as x-api-key
//	credentials.version      anthropic-version header, default 2023-06-01
//	credentials.max_tokens   max_tokens when the client sends none, default 4096
//	credentials.beta         optional anthropic-beta header value
//	credentials.fetch_images "true": the relay downloads http(s) image URLs and sends them inline
//	                         (default: sent as {"type":"url"} image sources)
package anthropic

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// Defaults for channel settings.
const (
	DefaultBaseURL   = "https://api.anthropic.com"
	DefaultVersion   = "2023-06-01"
	DefaultMaxTokens = 4096
)

// Adaptor implements adaptor.Adaptor for the Anthropic Messages API.
type Adaptor struct{}

// New returns the adaptor.
func New() *Adaptor { return &Adaptor{} }

// Validate checks the channel's keys and settings.
func (Adaptor) Validate(ch *adaptor.Channel) error {
	if ch.BaseURL != "" {
		u, err := url.Parse(ch.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("base_url must be an http(s) URL for kind anthropic")
		}
	}
	if len(ch.Keys) == 0 {
		return errors.New("keys: at least one Anthropic API key is required for kind anthropic")
	}
	if v, ok := ch.Credentials["max_tokens"]; ok && v != "" {
		if n, err := strconv.Atoi(v); err != nil || n <= 0 {
			return errors.New("credentials.max_tokens must be a positive integer")
		}
	}
	if v, ok := ch.Credentials["fetch_images"]; ok && v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return errors.New("credentials.fetch_images must be true or false")
		}
	}
	if v := ch.Credentials["version"]; strings.ContainsAny(v, "\r\n") {
		return errors.New("credentials.version must be a single-line header value")
	}
	if v := ch.Credentials["beta"]; strings.ContainsAny(v, "\r\n") {
		return errors.New("credentials.beta must be a single-line header value")
	}
	return nil
}

// endpoint is the channel's messages URL.
func endpoint(ch *adaptor.Channel) string {
	base := strings.TrimRight(ch.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	if strings.HasSuffix(base, "/v1") {
		return base + "/messages"
	}
	return base + "/v1/messages"
}

// settings are the per-channel knobs the request builder reads.
type settings struct {
	maxTokens   int
	fetchImages bool
}

func channelSettings(ch *adaptor.Channel) settings {
	s := settings{maxTokens: DefaultMaxTokens}
	if v := ch.Credentials["max_tokens"]; v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			s.maxTokens = n
		}
	}
	s.fetchImages, _ = strconv.ParseBool(ch.Credentials["fetch_images"])
	return s
}

func (a *Adaptor) post(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request, body []byte, stream bool) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint(ch), bytes.NewReader(body))
	if err != nil {
		return nil, adaptor.NewError(500, adaptor.TypeServer, "bad_channel", "channel "+ch.Name+" has a bad base_url")
	}
	h := hreq.Header
	h.Set("Content-Type", "application/json")
	if stream {
		h.Set("Accept", "text/event-stream")
	} else {
		h.Set("Accept", "application/json")
	}
	if k := ch.KeyFor(req); k != "" {
		h.Set("X-Api-Key", k)
	}
	v := ch.Credentials["version"]
	if v == "" {
		v = DefaultVersion
	}
	h.Set("Anthropic-Version", v)
	if b := ch.Credentials["beta"]; b != "" {
		h.Set("Anthropic-Beta", b)
	}
	return adaptor.Send(ctx, ch, hreq, ParseError)
}

// Complete sends a non-streaming request.
func (a *Adaptor) Complete(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (*adaptor.Completion, error) {
	body, err := buildRequest(ctx, channelSettings(ch), req, false)
	if err != nil {
		return nil, err
	}
	resp, err := a.post(ctx, ch, req, body, false)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := adaptor.ReadBody(ctx, resp)
	if err != nil {
		return nil, err
	}
	return convertResponse(out, req)
}

// Stream sends a streaming request and returns its events translated to OpenAI chunks.
func (a *Adaptor) Stream(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (adaptor.Events, error) {
	body, err := buildRequest(ctx, channelSettings(ch), req, true)
	if err != nil {
		return nil, err
	}
	resp, err := a.post(ctx, ch, req, body, true)
	if err != nil {
		return nil, err
	}
	if adaptor.IsJSONResponse(resp) {
		// A JSON answer to a stream request is an error (or a proxy that ignored stream:true).
		defer resp.Body.Close()
		b, _ := adaptor.ReadErrorBody(resp.Body)
		if gjson.GetBytes(b, "error").Exists() {
			return nil, ParseError(resp.StatusCode, b)
		}
		return nil, adaptor.UpstreamError(502, "bad_response", "expected an event stream, got JSON")
	}
	return NewEvents(ctx, resp.Body), nil
}
