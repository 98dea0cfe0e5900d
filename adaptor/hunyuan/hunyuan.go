// Package hunyuan is the adaptor for Tencent Hunyuan's native API (Tencent Cloud API 3.0, action
// ChatCompletions, version 2023-09-01): PascalCase bodies signed with TC3-HMAC-SHA256, answers wrapped
// in {"Response":...}, and an SSE stream without [DONE] whose last frame carries FinishReason.
// (Hunyuan's OpenAI-compatible endpoint needs no adaptor of its own: use kind openai.)
package hunyuan

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

const (
	// DefaultBaseURL is used when the channel has no base_url.
	DefaultBaseURL = "https://hunyuan.tencentcloudapi.com/"
	service        = "hunyuan"
	action         = "ChatCompletions"
	version        = "2023-09-01"
	// contentType is signed, so it must be exactly what is sent (no "; charset=utf-8" added).
	contentType = "application/json"
)

// Channel credential keys.
const (
	CredSecretID  = "secret_id"
	CredSecretKey = "secret_key"
	CredRegion    = "region" // optional, sent as X-TC-Region
	CredToken     = "token"  // optional STS session token for temporary keys, sent as X-TC-Token
)

// Adaptor implements adaptor.Adaptor for Hunyuan.
type Adaptor struct {
	now func() time.Time // the signing clock; tests pin it
}

// New returns the adaptor.
func New() *Adaptor { return &Adaptor{now: time.Now} }

// Validate checks the channel has a key pair and a usable base URL.
func (a *Adaptor) Validate(ch *adaptor.Channel) error {
	for _, k := range []string{CredSecretID, CredSecretKey} {
		if strings.TrimSpace(ch.Credentials[k]) == "" {
			return fmt.Errorf("channel %q (kind hunyuan): credentials.%s is required", ch.Name, k)
		}
	}
	if ch.BaseURL != "" {
		if _, err := endpoint(ch); err != nil {
			return fmt.Errorf("channel %q (kind hunyuan): %v", ch.Name, err)
		}
	}
	return nil
}

// endpoint returns the URL to post to; its host is what gets signed.
func endpoint(ch *adaptor.Channel) (*url.URL, error) {
	base := ch.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("base_url %q is not an http(s) URL", base)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

func badChannel(ch *adaptor.Channel, msg string) *adaptor.Error {
	return adaptor.NewError(500, adaptor.TypeServer, "bad_channel", "channel "+ch.Name+": "+msg)
}

// post signs body and sends it.
func (a *Adaptor) post(ctx context.Context, ch *adaptor.Channel, body []byte) (*http.Response, error) {
	id, key := ch.Credentials[CredSecretID], ch.Credentials[CredSecretKey]
	if id == "" || key == "" {
		return nil, badChannel(ch, "credentials.secret_id and credentials.secret_key are required")
	}
	u, err := endpoint(ch)
	if err != nil {
		return nil, badChannel(ch, err.Error())
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, badChannel(ch, "bad base_url")
	}
	ts := a.now().Unix()
	h := hreq.Header
	h.Set("Content-Type", contentType)
	h.Set("X-TC-Action", action)
	h.Set("X-TC-Version", version)
	h.Set("X-TC-Timestamp", strconv.FormatInt(ts, 10))
	if r := ch.Credentials[CredRegion]; r != "" {
		h.Set("X-TC-Region", r)
	}
	if t := ch.Credentials[CredToken]; t != "" {
		h.Set("X-TC-Token", t)
	}
	h.Set("Authorization", Authorization(SignInput{
		SecretID: id, SecretKey: key, Service: service, Host: hreq.URL.Host,
		ContentType: contentType, Timestamp: ts, Payload: body,
	}))
	return adaptor.Send(ctx, ch, hreq, parseHTTPError)
}

// Complete sends a non-streaming request.
func (a *Adaptor) Complete(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (*adaptor.Completion, error) {
	body, err := buildBody(req, false)
	if err != nil {
		return nil, err
	}
	resp, err := a.post(ctx, ch, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := adaptor.ReadBody(ctx, resp)
	if err != nil {
		return nil, err
	}
	return translateResponse(out, req, a.now())
}

// Stream sends a streaming request. Errors found before streaming starts come back as a JSON body
// (HTTP 200), so the Content-Type decides how the answer is read, as in Tencent's SDK.
func (a *Adaptor) Stream(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (adaptor.Events, error) {
	body, err := buildBody(req, true)
	if err != nil {
		return nil, err
	}
	resp, err := a.post(ctx, ch, body)
	if err != nil {
		return nil, err
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		defer resp.Body.Close()
		b, err := adaptor.ReadErrorBody(resp.Body)
		if err != nil {
			return nil, adaptor.TransportError(ctx, err)
		}
		if gjson.ValidBytes(b) {
			if e := responseError(gjson.ParseBytes(b)); e != nil {
				return nil, e
			}
		}
		return nil, adaptor.UpstreamError(502, "bad_response", "hunyuan answered a stream request with "+strconv.Quote(ct))
	}
	return newEvents(ctx, resp.Body, resp.Header.Get("X-TC-RequestId")), nil
}
