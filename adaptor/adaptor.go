// Package adaptor holds the small contract every upstream kind implements, and the pieces they share:
// the error type, SSE/NDJSON readers, the chunk builder, the stream accumulator and usage estimation.
// An adaptor knows one wire format and nothing about surfaces, keys or the store.
package adaptor

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"
)

// Adaptor talks to one kind of upstream.
type Adaptor interface {
	// Complete sends a non-streaming request and returns an OpenAI chat.completion.
	Complete(ctx context.Context, ch *Channel, req *Request) (*Completion, error)
	// Stream sends a streaming request. Each event is an OpenAI chunk (its choices and usage), or a named
	// pass-through event that a surface may forward or drop. Errors returned before the stream opens are
	// *Error values; so are errors returned by Events.Next.
	Stream(ctx context.Context, ch *Channel, req *Request) (Events, error)
}

// Validator is implemented by adaptors that need channel settings beyond base URL and keys; config
// loading calls it so a bad channel fails at start with a message naming the setting.
type Validator interface {
	Validate(ch *Channel) error
}

// Channel is one configured upstream, resolved from config (secrets already expanded).
type Channel struct {
	Name    string
	Kind    string
	BaseURL string
	// Keys are bearer-style secrets, used round-robin.
	Keys []string
	// Credentials are kind-specific secrets and settings (secret_id, secret_key, app_id, api_key, ...).
	Credentials map[string]string
	// Models the channel serves, as clients name them; ModelMap renames them for the upstream.
	Models   []string
	ModelMap map[string]string
	// Timeout bounds the whole upstream call; zero means none beyond the client's context.
	Timeout time.Duration
	// HTTP is the shared, tuned client for this channel.
	HTTP *http.Client

	next atomic.Uint32
}

// KeyFor returns the request's own key when it has one, else the channel's next key.
func (ch *Channel) KeyFor(req *Request) string {
	if req != nil && req.APIKey != "" {
		return req.APIKey
	}
	return ch.NextKey()
}

// NextKey returns the channel's keys round-robin ("" when it has none).
func (ch *Channel) NextKey() string {
	switch len(ch.Keys) {
	case 0:
		return ""
	case 1:
		return ch.Keys[0]
	}
	n := ch.next.Add(1)
	return ch.Keys[int(n-1)%len(ch.Keys)]
}

// UpstreamModel maps a client model name through the channel's alias map.
func (ch *Channel) UpstreamModel(model string) string {
	if m, ok := ch.ModelMap[model]; ok && m != "" {
		return m
	}
	return model
}

// Client returns the channel's HTTP client, or a shared default.
func (ch *Channel) Client() *http.Client {
	if ch.HTTP != nil {
		return ch.HTTP
	}
	return DefaultHTTPClient
}

// Request is one chat request on its way to an upstream.
type Request struct {
	// Body is the client's OpenAI JSON. Adaptors read it with gjson and rewrite it with sjson; they must
	// not modify it in place.
	Body []byte
	// Model is the model the client asked for; UpstreamModel is the name sent upstream.
	Model         string
	UpstreamModel string
	Stream        bool
	// IncludeUsage reports whether the client asked for stream_options.include_usage.
	IncludeUsage bool
	User         string
	// APIKey, when set, is used instead of the channel's keys (per-workflow app keys, say).
	APIKey string

	// FastGPT/workflow fields, when the surface has them.
	ChatID             string
	ResponseChatItemID string
	Variables          []byte // raw JSON object
	Detail             bool
}

// Completion is a finished non-streaming answer.
type Completion struct {
	// Body is an OpenAI chat.completion JSON object.
	Body  []byte
	Usage Usage
	// Extra holds upstream data some surfaces return beside the completion (FastGPT responseData,
	// newVariables), as raw JSON values by name.
	Extra map[string][]byte
}

// Usage is token accounting for one request.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
	// Estimated is true when the relay counted the tokens itself.
	Estimated bool
}

// Valid reports whether any count is set.
func (u Usage) Valid() bool { return u.PromptTokens > 0 || u.CompletionTokens > 0 || u.TotalTokens > 0 }

// Event is one step of a stream. Its byte slices are only valid until the next call to Next.
type Event struct {
	// Name is empty for an OpenAI chunk. Otherwise the event is a named pass-through event whose raw
	// payload is Data (FastGPT's flowResponses, say).
	Name string
	Data []byte
	// Choices is the raw JSON array of the chunk's choices (OpenAI chunk shape). Empty or "[]" for an
	// event that only carries usage.
	Choices []byte
	// Usage is set when HasUsage; upstreams that send cumulative usage may set it on every event.
	Usage    Usage
	HasUsage bool
}

// Events is an open upstream stream.
type Events interface {
	// Next returns the next event, io.EOF after the upstream's real end signal, or an *Error.
	Next() (*Event, error)
	// Close releases the upstream connection; safe to call more than once.
	Close() error
}
