// Package ollama is the adaptor for Ollama's native chat API (POST {base}/api/chat, NDJSON streams),
// following ../shared/wire/ollama.md. OpenAI requests are rewritten into Ollama's shape with gjson reads
// and byte appends; NDJSON objects are translated into OpenAI chunks. The stream ends only at the object
// with done:true; a close before it is a broken stream.
//
// For Ollama's OpenAI-compatible endpoint ({base}/v1/chat/completions) use kind openai instead.
package ollama

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

	"relay/adaptor"
)

// DefaultBaseURL is used when the channel has no base_url.
const DefaultBaseURL = "http://127.0.0.1:11434"

// Channel credentials (all optional) the adaptor reads.
const (
	// CredMaxTokens is the default options.num_predict when the request sets no output cap.
	CredMaxTokens = "max_tokens"
	// CredNumCtx sets options.num_ctx (Ollama's context window; its default is small and truncates
	// long prompts silently).
	CredNumCtx = "num_ctx"
	// CredKeepAlive sets keep_alive ("5m", "1h", "-1", or seconds) unless the request carries one.
	CredKeepAlive = "keep_alive"
)

// Adaptor implements adaptor.Adaptor and adaptor.Validator for Ollama.
type Adaptor struct {
	// images resolves image_url parts (adaptor.Images when nil).
	images *adaptor.ImageFetcher
	// newID makes completion ids (adaptor.NewID when nil); tool-call ids come from adaptor.NewToolCallID.
	newID func(prefix string) string
}

// New returns the adaptor.
func New() *Adaptor { return &Adaptor{} }

// Validate checks the channel's optional settings: base_url must be an http(s) URL of the server root
// (not .../v1 or .../api/chat); max_tokens and
// num_ctx positive integers; keep_alive a Go duration or a number of seconds.
func (*Adaptor) Validate(ch *adaptor.Channel) error {
	if ch.BaseURL != "" {
		u, err := url.Parse(ch.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("base_url for kind ollama must be an http(s) URL such as " + DefaultBaseURL)
		}
		if p := strings.TrimRight(u.Path, "/"); strings.HasSuffix(p, "/v1") || strings.HasSuffix(p, "/api") || strings.HasSuffix(p, "/api/chat") {
			return errors.New("base_url for kind ollama must be the server root (the adaptor adds /api/chat); for Ollama's /v1 OpenAI endpoint use kind openai")
		}
	}
	for _, name := range [...]string{CredMaxTokens, CredNumCtx} {
		if v, ok := ch.Credentials[name]; ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err != nil || n <= 0 {
				return errors.New("credentials." + name + " for kind ollama must be a positive integer")
			}
		}
	}
	if v, ok := ch.Credentials[CredKeepAlive]; ok {
		v = strings.TrimSpace(v)
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			if _, err := time.ParseDuration(v); err != nil {
				return errors.New("credentials.keep_alive for kind ollama must be a duration (5m, 1h, -1s) or a number of seconds")
			}
		}
	}
	return nil
}

func (a *Adaptor) id(prefix string) string {
	if a.newID != nil {
		return a.newID(prefix)
	}
	return adaptor.NewID(prefix)
}

func (a *Adaptor) fetcher() *adaptor.ImageFetcher {
	if a.images != nil {
		return a.images
	}
	return adaptor.Images
}

// Endpoint returns the channel's chat URL.
func Endpoint(ch *adaptor.Channel) string {
	base := ch.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	return strings.TrimRight(base, "/") + "/api/chat"
}

func (a *Adaptor) post(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request, body []byte) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, Endpoint(ch), bytes.NewReader(body))
	if err != nil {
		return nil, adaptor.NewError(500, adaptor.TypeServer, "bad_channel", "channel "+ch.Name+" has a bad base_url")
	}
	hreq.Header.Set("Content-Type", "application/json")
	if k := ch.KeyFor(req); k != "" {
		hreq.Header.Set("Authorization", "Bearer "+k)
	}
	return adaptor.Send(ctx, ch, hreq, ParseError)
}

// Complete sends a request with "stream": false and translates the answer. The answer goes through the
// same decoder as a stream (a server that streams anyway still gives a correct completion).
func (a *Adaptor) Complete(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (*adaptor.Completion, error) {
	body, err := a.buildBody(ctx, ch, req, false)
	if err != nil {
		return nil, err
	}
	resp, err := a.post(ctx, ch, req, body)
	if err != nil {
		return nil, err
	}
	ev := a.newEvents(ctx, resp.Body)
	defer ev.Close()
	var acc adaptor.Accumulator
	for {
		e, err := ev.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var ae *adaptor.Error
			if errors.As(err, &ae) && ae.Code == codeStreamBroken {
				return nil, adaptor.UpstreamError(502, "bad_response", "ollama answer ended without an object with done:true")
			}
			return nil, err
		}
		acc.Add(e)
	}
	if !acc.HasUsage || !acc.Usage.Valid() {
		acc.Usage = adaptor.EstimateUsage(req.Body, acc.Text())
	}
	created := ev.created
	if created == 0 {
		created = time.Now().Unix()
	}
	return acc.Completion(a.id("chatcmpl-"), created, req.Model), nil
}

// Stream sends a streaming request. It reads up to the first translated chunk before returning, so an
// error Ollama reports in its first line (with status 200) is returned here, before any byte reached the
// client, and the relay may still try another channel.
func (a *Adaptor) Stream(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (adaptor.Events, error) {
	body, err := a.buildBody(ctx, ch, req, true)
	if err != nil {
		return nil, err
	}
	resp, err := a.post(ctx, ch, req, body)
	if err != nil {
		return nil, err
	}
	ev := a.newEvents(ctx, resp.Body)
	if err := ev.prime(); err != nil {
		ev.Close()
		return nil, err
	}
	return ev, nil
}
