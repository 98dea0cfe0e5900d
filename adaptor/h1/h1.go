// Package h1 is the relay's transport for plain-HTTP upstreams: HTTP/1.1 on pooled connections, with the
// whole exchange done in the calling goroutine.
//
// net/http's Transport gives every connection a read goroutine and a write goroutine, and hands each
// request and each answer between them and the caller. On a small machine those hand-offs (a wake-up of
// another thread each) are most of what a proxy hop costs: `relaybench pair -bare` measured a bare
// ReverseProxy hop at about +220 µs p50 over a direct call on two cores, and the same hop with the
// upstream exchange done in the handler at +140 µs. The two goroutines also hold stacks and buffers for
// every open stream.
//
// The HTTP itself is net/http's: requests are written by Request.Write and answers parsed by
// http.ReadResponse, which also frames the body (Content-Length, chunked, or until close). This package
// only owns connections: dialling, pooling, reuse, deadlines and cancellation. Whatever it does not
// handle goes to the fallback transport: TLS (where HTTP/2 is negotiated), proxied requests, protocol
// upgrades (WebSocket) and request bodies of unknown length.
package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Transport is an http.RoundTripper. Its zero value is not usable: Fallback is required.
type Transport struct {
	// Fallback serves every request this transport does not (see handles).
	Fallback http.RoundTripper
	// Proxy is the fallback's proxy choice (http.Transport.Proxy): a request it would send through a
	// proxy goes to the fallback. Nil means no proxy.
	Proxy func(*http.Request) (*url.URL, error)
	// Dial opens connections (default: a net.Dialer with a 10 s timeout).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdlePerHost bounds the idle connections kept per host (default 256).
	MaxIdlePerHost int
	// IdleTimeout closes a connection idle for longer, when it is next looked at (default 90 s).
	IdleTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the answer's head once the request is written (0: none).
	ResponseHeaderTimeout time.Duration

	mu       sync.Mutex
	idle     map[string][]*conn // per host:port, oldest first
	sweeping bool               // a sweep is scheduled
}

// conn is one upstream connection, used by one exchange at a time.
type conn struct {
	net.Conn
	br        *bufio.Reader
	key       string
	idleSince time.Time
	// mu orders cancellation against the end of an exchange: a cancelled exchange's connection has a
	// deadline in the past and must not have it cleared, or be pooled.
	mu        sync.Mutex
	cancelled bool
}

var (
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
	past    = time.Unix(1, 0)
)

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		return t.Fallback.RoundTrip(req)
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	key := hostPort(req.URL)
	for attempt := 0; ; attempt++ {
		c, reused, err := t.get(ctx, key)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, written, err := t.exchange(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		// Retried only where net/http would retry a POST: a reused connection failed before the
		// request was written (the server closed it while idle), and the body can be sent again.
		if written || !reused || attempt > 0 || req.GetBody == nil || ctx.Err() != nil {
			return nil, err
		}
		body, gerr := req.GetBody()
		if gerr != nil {
			return nil, err
		}
		req = req.Clone(ctx)
		req.Body = body
	}
}

// handles reports whether t serves req itself: plain HTTP, no proxy, no upgrade, a body of known length.
func (t *Transport) handles(req *http.Request) bool {
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && req.ContentLength <= 0 {
		return false // unknown length: net/http would send it chunked
	}
	if req.Header.Get("Upgrade") != "" {
		return false // a WebSocket (Spark): the connection leaves HTTP, net/http hands it over
	}
	if t.Proxy != nil {
		if u, err := t.Proxy(req); err != nil || u != nil {
			return false // the fallback proxies it, or reports the error
		}
	}
	return true
}

// exchange writes req on c and reads the answer's head. written tells whether the request left (an
// error after that is not retried).
func (t *Transport) exchange(ctx context.Context, c *conn, req *http.Request) (resp *http.Response, written bool, err error) {
	stop := context.AfterFunc(ctx, c.cancel)
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		c.Close()
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
		return nil, written, err
	}
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(c)
	err = req.Write(bw) // closes req.Body
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writers.Put(bw)
	if err != nil {
		return fail(err)
	}
	written = true
	if t.ResponseHeaderTimeout > 0 {
		c.setReadDeadline(time.Now().Add(t.ResponseHeaderTimeout))
	}
	for {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode < 100 {
			break
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			resp.Body.Close()
			return fail(errors.New("h1: upstream switched protocols"))
		}
		// 1xx informational answers (100 Continue, 103 Early Hints) precede the real one.
	}
	if t.ResponseHeaderTimeout > 0 && !c.setReadDeadline(time.Time{}) {
		resp.Body.Close()
		return fail(ctx.Err())
	}
	resp.Body = &body{rc: resp.Body, c: c, t: t, ctx: ctx, stop: stop,
		reuse: !resp.Close && !req.Close, empty: resp.ContentLength == 0}
	return resp, true, nil
}

// cancel ends the connection's current exchange: blocked reads and writes return at once.
func (c *conn) cancel() {
	c.mu.Lock()
	c.cancelled = true
	c.SetDeadline(past)
	c.mu.Unlock()
}

// setReadDeadline sets the read deadline unless the exchange was cancelled (false then).
func (c *conn) setReadDeadline(d time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled {
		return false
	}
	c.SetReadDeadline(d)
	return true
}

// body is an answer's body. Read to its end, it gives its connection back to the pool; closed before
// that, it closes the connection, as net/http does (draining an unknown rest could take long).
type body struct {
	rc    io.ReadCloser
	c     *conn
	t     *Transport
	ctx   context.Context
	stop  func() bool
	reuse bool
	empty bool

	mu     sync.Mutex
	done   bool  // the connection was given back or closed
	closed bool  // Close was called
	err    error // the read error that ended the body (io.EOF when read to its end)
}

var errClosed = errors.New("h1: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	closed, ended := b.closed, b.err
	b.mu.Unlock()
	switch {
	case closed:
		return 0, errClosed
	case ended != nil: // the connection is no longer this body's: repeat how it ended
		return 0, ended
	}
	n, err := b.rc.Read(p)
	if err == nil {
		return n, nil
	}
	if err != io.EOF {
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr // cancelled: report why, as net/http does, not the deadline that did it
		}
	}
	b.mu.Lock()
	b.err = err
	b.mu.Unlock()
	b.finish(err == io.EOF)
	return n, err
}

func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.finish(b.empty)
	return nil
}

// finish ends the exchange once: the connection goes back to the pool when the body was read to its
// end, the answer allows it and the exchange was not cancelled; otherwise it is closed.
func (b *body) finish(complete bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	stopped := b.stop() // false: the cancel ran (or is running) and the deadline is in the past
	if complete && b.reuse && stopped {
		b.t.put(b.c)
		return
	}
	b.c.Close()
}

// get returns an idle connection to key that is still open, or dials a new one.
func (t *Transport) get(ctx context.Context, key string) (c *conn, reused bool, err error) {
	for {
		t.mu.Lock()
		list := t.idle[key]
		if len(list) == 0 {
			t.mu.Unlock()
			break
		}
		c = list[len(list)-1] // the most recently used: least likely to have been closed by the server
		list[len(list)-1] = nil
		t.idle[key] = list[:len(list)-1]
		t.mu.Unlock()
		if time.Since(c.idleSince) <= t.idleTimeout() && alive(c.Conn) {
			c.cancelled = false
			return c, true, nil
		}
		c.Close()
	}
	dial := t.Dial
	if dial == nil {
		dial = defaultDialer.DialContext
	}
	nc, err := dial(ctx, "tcp", key)
	if err != nil {
		return nil, false, err
	}
	return &conn{Conn: nc, br: bufio.NewReaderSize(nc, 4<<10), key: key}, false, nil
}

var defaultDialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}

// put pools c, after closing connections to its host that have been idle too long.
func (t *Transport) put(c *conn) {
	if c.br.Buffered() > 0 { // bytes beyond the answer: the connection is out of step
		c.Close()
		return
	}
	now := time.Now()
	c.idleSince = now
	t.mu.Lock()
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	list := t.idle[c.key]
	expired := 0
	for expired < len(list) && now.Sub(list[expired].idleSince) > t.idleTimeout() {
		list[expired].Close()
		expired++
	}
	list = append(list[:0], list[expired:]...)
	if len(list) >= t.maxIdle() {
		t.idle[c.key] = list
		t.mu.Unlock()
		c.Close()
		return
	}
	t.idle[c.key] = append(list, c)
	if !t.sweeping {
		t.sweeping = true
		time.AfterFunc(t.idleTimeout(), t.sweep)
	}
	t.mu.Unlock()
}

// sweep closes the connections idle for longer than IdleTimeout, so that a host no longer called does
// not keep them (net/http gives each idle connection a timer; one per transport is enough here).
func (t *Transport) sweep() {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, list := range t.idle {
		expired := 0
		for expired < len(list) && now.Sub(list[expired].idleSince) > t.idleTimeout() {
			list[expired].Close()
			list[expired] = nil
			expired++
		}
		if expired == len(list) {
			delete(t.idle, key)
		} else {
			t.idle[key] = list[expired:]
		}
	}
	t.sweeping = len(t.idle) > 0
	if t.sweeping {
		time.AfterFunc(t.idleTimeout()/2, t.sweep)
	}
}

// CloseIdleConnections closes the pooled connections, and the fallback's.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.Close()
		}
	}
	if ci, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout > 0 {
		return t.IdleTimeout
	}
	return 90 * time.Second
}

func (t *Transport) maxIdle() int {
	if t.MaxIdlePerHost > 0 {
		return t.MaxIdlePerHost
	}
	return 256
}

// hostPort is the address to dial for u (port 80 when none is given).
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
