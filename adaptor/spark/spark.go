// Package spark is the adaptor for iFlytek Spark's native WebSocket chat API: one signed WebSocket per
// request, one request frame out, incremental answer frames in until the frame with status 2.
//
// Channel settings (kind: spark):
//
//	credentials.app_id      APPID, sent in the request frame header (required)
//	credentials.api_key     APIKey, named in the signed URL (required)
//	credentials.api_secret  APISecret, keys the URL signature (required)
//	credentials.domain      optional parameter.chat.domain override
//	base_url                optional WebSocket URL override; a URL without a path gets the model's path
//
// Without overrides the URL and domain come from the model name (see Resolve).
package spark

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"relay/adaptor"
)

const defaultHost = "spark-api.xf-yun.com"

// endpoint is one Spark product: where its socket lives and the domain it must be asked with.
type endpoint struct {
	host, path, domain string
	// maxTokens is the product's output cap (0 when unknown: the value is passed on unclamped).
	maxTokens int
}

// Products by domain. The URL path and the domain must match or Spark refuses the request.
var products = map[string]endpoint{
	"lite":        {defaultHost, "/v1.1/chat", "lite", 4096},
	"generalv3":   {defaultHost, "/v3.1/chat", "generalv3", 8192},
	"pro-128k":    {defaultHost, "/chat/pro-128k", "pro-128k", 4096},
	"generalv3.5": {defaultHost, "/v3.5/chat", "generalv3.5", 8192},
	"max-32k":     {defaultHost, "/chat/max-32k", "max-32k", 8192},
	"4.0Ultra":    {defaultHost, "/v4.0/chat", "4.0Ultra", 8192},
	"generalv2":   {defaultHost, "/v2.1/chat", "generalv2", 0},
	"kjwx":        {"spark-openapi-n.cn-huabei-1.xf-yun.com", "/v1.1/chat_kjwx", "kjwx", 0},
}

// aliases maps lower-cased model names to domains: the domains themselves, the version names, one-api's
// Spark-* names and short product names.
var aliases = map[string]string{
	"lite": "lite", "general": "lite", "spark-lite": "lite", "v1.1": "lite",
	"generalv3": "generalv3", "pro": "generalv3", "spark-pro": "generalv3", "v3.1": "generalv3",
	"pro-128k": "pro-128k", "spark-pro-128k": "pro-128k", "v3.1-128k": "pro-128k",
	"generalv3.5": "generalv3.5", "max": "generalv3.5", "spark-max": "generalv3.5", "v3.5": "generalv3.5",
	"max-32k": "max-32k", "spark-max-32k": "max-32k", "v3.5-32k": "max-32k",
	"4.0ultra": "4.0Ultra", "ultra": "4.0Ultra", "spark-4.0-ultra": "4.0Ultra", "spark-ultra": "4.0Ultra", "v4.0": "4.0Ultra",
	"generalv2": "generalv2", "v2.1": "generalv2",
	"kjwx": "kjwx",
}

func lookup(model string) (endpoint, bool) {
	d, ok := aliases[strings.ToLower(model)]
	if !ok {
		return endpoint{}, false
	}
	return products[d], true
}

// Resolve returns the WebSocket URL and domain Spark serves a model name under (case-insensitive):
//
//	lite, general, spark-lite, v1.1                     wss://spark-api.xf-yun.com/v1.1/chat     lite
//	generalv3, pro, spark-pro, v3.1                     wss://spark-api.xf-yun.com/v3.1/chat     generalv3
//	pro-128k, spark-pro-128k, v3.1-128k                 wss://spark-api.xf-yun.com/chat/pro-128k pro-128k
//	generalv3.5, max, spark-max, v3.5                   wss://spark-api.xf-yun.com/v3.5/chat     generalv3.5
//	max-32k, spark-max-32k, v3.5-32k                    wss://spark-api.xf-yun.com/chat/max-32k  max-32k
//	4.0ultra, ultra, spark-4.0-ultra, spark-ultra, v4.0 wss://spark-api.xf-yun.com/v4.0/chat     4.0Ultra
//	generalv2, v2.1                                     wss://spark-api.xf-yun.com/v2.1/chat     generalv2
//	kjwx                 wss://spark-openapi-n.cn-huabei-1.xf-yun.com/v1.1/chat_kjwx           kjwx
func Resolve(model string) (wsURL, domain string, ok bool) {
	ep, ok := lookup(model)
	if !ok {
		return "", "", false
	}
	return "wss://" + ep.host + ep.path, ep.domain, true
}

// target is where one request goes.
type target struct {
	url, domain string
	maxTokens   int
}

// resolve picks URL and domain for a model on a channel: the channel's overrides win, the model table
// fills the rest. An unknown model is served only when the channel names the URL (its base_url path)
// and then the model name is the domain unless credentials.domain says otherwise.
func resolve(ch *adaptor.Channel, model string) (target, error) {
	ep, known := lookup(model)
	t := target{domain: ch.Credentials["domain"]}
	if t.domain == "" {
		if known {
			t.domain = ep.domain
		} else {
			t.domain = model
		}
	}
	if p, ok := products[t.domain]; ok {
		t.maxTokens = p.maxTokens
		if !known {
			ep, known = p, true // a known domain override also tells the path
		}
	}
	if ch.BaseURL == "" {
		if !known {
			return t, unknownModel(ch, model)
		}
		t.url = "wss://" + ep.host + ep.path
		return t, nil
	}
	u, err := url.Parse(ch.BaseURL)
	if err != nil || u.Host == "" {
		return t, adaptor.NewError(500, adaptor.TypeServer, "bad_channel", "channel "+ch.Name+" has a bad base_url")
	}
	if u.Path == "" || u.Path == "/" {
		if !known {
			return t, unknownModel(ch, model)
		}
		u.Path = ep.path
	}
	t.url = u.String()
	return t, nil
}

func unknownModel(ch *adaptor.Channel, model string) *adaptor.Error {
	e := adaptor.NewError(404, adaptor.TypeNotFound, "model_not_found",
		"spark channel "+ch.Name+" cannot map model "+model+" to a Spark URL; set base_url (with path) or use a known model name")
	e.Param = "model"
	return e
}

// Adaptor implements adaptor.Adaptor for Spark's WebSocket API.
type Adaptor struct {
	// now is the signing clock (tests fix it).
	now func() time.Time
}

// New returns the adaptor.
func New() *Adaptor { return &Adaptor{now: time.Now} }

var credentialKeys = []string{"app_id", "api_key", "api_secret"}

// Validate names every missing credential, a bad base_url and configured models that cannot be routed.
func (a *Adaptor) Validate(ch *adaptor.Channel) error {
	var missing []string
	for _, k := range credentialKeys {
		if ch.Credentials[k] == "" {
			missing = append(missing, "credentials."+k)
		}
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, ", ") + " required for kind spark")
	}
	if ch.BaseURL != "" {
		u, err := url.Parse(ch.BaseURL)
		if err != nil || u.Host == "" {
			return errors.New("base_url is not a URL: want wss://host/path")
		}
		switch u.Scheme {
		case "ws", "wss", "http", "https":
		default:
			return errors.New("base_url must be a ws:// or wss:// URL for kind spark")
		}
	}
	for _, m := range ch.Models {
		if _, err := resolve(ch, ch.UpstreamModel(m)); err != nil {
			return errors.New("model " + m + " has no Spark URL: set base_url with the product's path, or use a known model name (lite, generalv3, pro-128k, generalv3.5, max-32k, 4.0Ultra)")
		}
	}
	return nil
}

// Complete collects the stream into one chat.completion: Spark has no non-stream mode.
func (a *Adaptor) Complete(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (*adaptor.Completion, error) {
	events, err := a.Stream(ctx, ch, req)
	if err != nil {
		return nil, err
	}
	// The idle timeout bounds each wait for a frame, as it does for a stream.
	return adaptor.Collect(adaptor.GuardEvents(ctx, events), req, adaptor.NewID("chatcmpl-"), time.Now().Unix())
}

// Stream opens the signed socket, sends the request frame and returns the answer frames as chunks.
func (a *Adaptor) Stream(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (adaptor.Events, error) {
	model := req.UpstreamModel
	if model == "" {
		model = req.Model
	}
	t, err := resolve(ch, model)
	if err != nil {
		return nil, err
	}
	frame, err := requestFrame(ch.Credentials["app_id"], t, req)
	if err != nil {
		return nil, err
	}
	now := a.now
	if now == nil {
		now = time.Now
	}
	signed, err := AuthURL(t.url, ch.Credentials["api_key"], ch.Credentials["api_secret"], now())
	if err != nil {
		return nil, adaptor.NewError(500, adaptor.TypeServer, "bad_channel", "channel "+ch.Name+" has a bad base_url")
	}
	e, err := open(ctx, ch, signed, frame)
	if err != nil {
		return nil, err // not a typed nil *events inside the interface
	}
	return e, nil
}
