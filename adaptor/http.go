package adaptor

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"relay/adaptor/h1"
)

// DefaultHTTPClient is the shared client for upstream calls: one tuned transport, connections kept warm
// per host. No overall timeout: streams may run long; per-channel deadlines come from the context.
var DefaultHTTPClient = &http.Client{Transport: NewTransport(0)}

// NewTransport returns the transport used for upstreams; connect bounds dialling (default 10s). Plain-HTTP
// upstreams are served by h1, which does each exchange in the caller's goroutine; TLS upstreams (HTTP/2
// where offered), proxied requests and bodies of unknown length by a tuned http.Transport.
func NewTransport(connect time.Duration) http.RoundTripper {
	if connect <= 0 {
		connect = 10 * time.Second
	}
	std := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 5 * time.Minute,
	}
	return &h1.Transport{
		Fallback:              std,
		Proxy:                 std.Proxy,
		Dial:                  std.DialContext,
		MaxIdlePerHost:        std.MaxIdleConnsPerHost,
		IdleTimeout:           std.IdleConnTimeout,
		ResponseHeaderTimeout: std.ResponseHeaderTimeout,
	}
}

// maxErrorBody bounds how much of an upstream error answer is read.
const maxErrorBody = 64 << 10

// ReadErrorBody reads an upstream's error answer, at most 64 KiB of it.
func ReadErrorBody(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, maxErrorBody))
}

// IsJSONResponse reports whether an answer is a JSON document (Content-Type application/json). To a
// stream request that is an error, which some servers send with status 200, or a server that ignored
// the stream flag.
func IsJSONResponse(resp *http.Response) bool {
	return strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
}

// ErrorParser extracts an upstream's error from a non-2xx answer body. It returns nil when it cannot,
// and the caller falls back to a generic error of the same status.
type ErrorParser func(status int, body []byte) *Error

// Send performs req on the channel's client. A transport failure becomes a TransportError; a non-2xx
// answer is read (bounded), closed and turned into an *Error through parse.
func Send(ctx context.Context, ch *Channel, req *http.Request, parse ErrorParser) (*http.Response, error) {
	resp, err := ch.Client().Do(req)
	if err != nil {
		return nil, TransportError(ctx, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		resp.Body = guardAnswer(ctx, resp.Body)
		return resp, nil
	}
	body, _ := ReadErrorBody(resp.Body)
	resp.Body.Close()
	var e *Error
	if parse != nil {
		e = parse(resp.StatusCode, body)
	}
	if e == nil {
		e = UpstreamError(resp.StatusCode, "", "")
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" && e.RetryAfter == "" {
		e.RetryAfter = ra
	}
	return nil, e
}

// WithTimeout applies the channel's total timeout to ctx.
func WithTimeout(ctx context.Context, ch *Channel) (context.Context, context.CancelFunc) {
	if ch.Timeout > 0 {
		return context.WithTimeout(ctx, ch.Timeout)
	}
	return context.WithCancel(ctx)
}

// MaxAnswerBody bounds a non-stream upstream answer, so a broken upstream cannot exhaust memory.
const MaxAnswerBody = 64 << 20

// ReadBody reads a whole (non-stream) answer body, mapping read failures like transport failures. A
// declared Content-Length sizes the buffer at once (io.ReadAll would grow it from 512 bytes, copying and
// leaving garbage at every step).
func ReadBody(ctx context.Context, resp *http.Response) ([]byte, error) {
	size := 512
	if n := resp.ContentLength; n > 0 && n <= MaxAnswerBody {
		size = int(n) + 1 // room for the read that sees EOF, so it does not grow the buffer
	}
	b := make([]byte, 0, size)
	r := io.LimitReader(resp.Body, MaxAnswerBody+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, TransportError(ctx, err)
		}
	}
	if len(b) > MaxAnswerBody {
		return nil, UpstreamError(502, "upstream_answer_too_large", "answer larger than 64 MiB")
	}
	return b, nil
}
