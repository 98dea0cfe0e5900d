package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an httptest server that counts the connections it accepted.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

// failing is a fallback that records what reached it.
type failing struct{ got []string }

func (f *failing) RoundTrip(req *http.Request) (*http.Response, error) {
	f.got = append(f.got, req.URL.String())
	return nil, errors.New("fallback")
}

func newTransport(fb http.RoundTripper) *Transport {
	if fb == nil {
		fb = &failing{}
	}
	return &Transport{Fallback: fb}
}

func post(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(b)
}

func TestReuseAndFraming(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked": // flushed in pieces: net/http sends it chunked
			for _, part := range []string{"data: a\n\n", "data: b\n\n", "data: [DONE]\n\n"} {
				io.WriteString(w, part)
				w.(http.Flusher).Flush()
			}
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write(b)
		default:
			w.Header().Set("X-Echo", r.Header.Get("X-Req"))
			w.Write(b)
		}
	})
	tr := newTransport(nil)
	c := &http.Client{Transport: tr}
	for i := 0; i < 3; i++ {
		if code, body := post(t, c, s.URL+"/echo", fmt.Sprintf(`{"n":%d}`, i)); code != 200 || body != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("echo %d: %d %q", i, code, body)
		}
	}
	if code, body := post(t, c, s.URL+"/chunked", "{}"); code != 200 || body != "data: a\n\ndata: b\n\ndata: [DONE]\n\n" {
		t.Fatalf("chunked: %d %q", code, body)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for four sequential exchanges, want 1 (kept alive)", n)
	}
	post(t, c, s.URL+"/close", "{}")
	post(t, c, s.URL+"/echo", "{}")
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: an answer with Connection: close is not reused", n)
	}
	// Request headers reach the upstream, answer headers come back.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/echo", strings.NewReader("x"))
	req.Header.Set("X-Req", "hello")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-Echo") != "hello" {
		t.Errorf("header round trip: %q", resp.Header.Get("X-Echo"))
	}
}

func TestEarlyCloseDropsConnection(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 64<<10))
	})
	c := &http.Client{Transport: newTransport(nil)}
	resp, err := c.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	io.ReadFull(resp.Body, buf)
	resp.Body.Close() // most of the answer unread: the connection cannot be reused
	if _, err := resp.Body.Read(buf); err == nil {
		t.Error("read after close: want an error")
	}
	code, body := post(t, c, s.URL, "")
	if code != 200 || len(body) != 64<<10 {
		t.Fatalf("second request: %d, %d bytes", code, len(body))
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// rawServer answers each connection with handle, which reads and writes the wire itself.
func rawServer(t *testing.T, handle func(c net.Conn, br *bufio.Reader)) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String(), accepted
}

func readRequest(t *testing.T, br *bufio.Reader) *http.Request {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil
	}
	io.Copy(io.Discard, req.Body)
	return req
}

func TestServerClosedIdleConnection(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the idle check peeks at the socket on Linux only")
	}
	// Keep-alive in the headers, but the server closes each connection after one answer, as one whose
	// idle timeout ran out would.
	url, accepted := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(t, br) != nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := &http.Client{Transport: newTransport(nil)}
	for i := 0; i < 3; i++ {
		time.Sleep(20 * time.Millisecond) // the server's close arrives
		if code, body := post(t, c, url, "{}"); code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestInformationalAndExtraBytes(t *testing.T) {
	url, accepted := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for readRequest(t, br) != nil {
			// 103 Early Hints first; then the answer, followed by bytes nobody asked for.
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"+
				"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhelloJUNK")
		}
	})
	c := &http.Client{Transport: newTransport(nil)}
	for i := 0; i < 2; i++ {
		if code, body := post(t, c, url, "{}"); code != 201 || body != "hello" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2: a connection with bytes beyond the answer is not reused", n)
	}
}

func TestCancelAndTimeouts(t *testing.T) {
	release := make(chan struct{})
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // so that net/http notices the client's close
		if r.URL.Path == "/midbody" {
			w.Write([]byte("first"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})

	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for its handlers

	// Cancelled while waiting for the head.
	tr := newTransport(nil)
	c := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/head", strings.NewReader("{}"))
	start := time.Now()
	if _, err := c.Do(req); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel before the head: err %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %v", d)
	}

	// Cancelled in the middle of the body.
	ctx, cancel = context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/midbody", strings.NewReader("{}"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first bytes: %q %v", buf, err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := resp.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel mid-body: err %v, want context.Canceled", err)
	}
	if _, err := resp.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Errorf("a read after the failed one: err %v, want the same error (not a clean EOF)", err)
	}
	resp.Body.Close()
	tr.mu.Lock()
	idle := len(tr.idle[hostPort(req.URL)])
	tr.mu.Unlock()
	if idle != 0 {
		t.Errorf("%d idle connections after two cancelled exchanges, want 0", idle)
	}

	// No head within ResponseHeaderTimeout: a timeout error, as net/http gives.
	tr.ResponseHeaderTimeout = 50 * time.Millisecond
	_, err = c.Post(s.URL+"/head", "application/json", strings.NewReader("{}"))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("response header timeout: err %v, want a timeout", err)
	}
}

// flakyConn fails its writes once fail is set.
type flakyConn struct {
	net.Conn
	fail *atomic.Bool
}

func (f flakyConn) Write(p []byte) (int, error) {
	if f.fail.Load() {
		return 0, errors.New("broken pipe (test)")
	}
	return f.Conn.Write(p)
}

func TestRetryOnlyBeforeTheRequestLeft(t *testing.T) {
	var bodies []string
	var mu sync.Mutex
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.Write([]byte("ok"))
	})
	var dials atomic.Int64
	var conns []*atomic.Bool
	tr := newTransport(nil)
	tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		f := new(atomic.Bool)
		conns = append(conns, f)
		return flakyConn{c, f}, nil
	}
	c := &http.Client{Transport: tr}
	post(t, c, s.URL, "one")
	conns[0].Store(true) // the pooled connection breaks
	if code, body := post(t, c, s.URL, "two"); code != 200 || body != "ok" {
		t.Fatalf("retry: %d %q", code, body)
	}
	if dials.Load() != 2 || strings.Join(bodies, ",") != "one,two" {
		t.Fatalf("dials %d, bodies %q: want a second dial and the body sent again", dials.Load(), bodies)
	}
	// A fresh connection that fails is not retried.
	conns[1].Store(true)
	tr.CloseIdleConnections()
	tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		f := new(atomic.Bool)
		f.Store(true)
		return flakyConn{c, f}, err
	}
	if _, err := c.Post(s.URL, "text/plain", strings.NewReader("three")); err == nil {
		t.Fatal("a write failure on a new connection: want an error")
	}
}

func TestFallback(t *testing.T) {
	fb := &failing{}
	tr := newTransport(fb)
	proxy, _ := url.Parse("http://proxy.example:3128")
	tr.Proxy = func(r *http.Request) (*url.URL, error) {
		if r.URL.Hostname() == "proxied.example" {
			return proxy, nil
		}
		return nil, nil
	}
	c := &http.Client{Transport: tr}
	c.Get("https://tls.example/v1")
	c.Get("http://proxied.example/v1")
	req, _ := http.NewRequest(http.MethodGet, "http://ws.example/v1", nil)
	req.Header.Set("Upgrade", "websocket")
	c.Do(req)
	c.Post("http://unknown-length.example/v1", "text/plain", io.MultiReader(strings.NewReader("x")))
	want := "https://tls.example/v1 http://proxied.example/v1 http://ws.example/v1 http://unknown-length.example/v1"
	if got := strings.Join(fb.got, " "); got != want {
		t.Errorf("fallback got %q, want %q", got, want)
	}
}

func TestPoolBounds(t *testing.T) {
	s, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		w.Write([]byte("ok"))
	})
	tr := newTransport(nil)
	tr.MaxIdlePerHost = 2
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				resp, err := c.Get(s.URL)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	u, _ := url.Parse(s.URL)
	tr.mu.Lock()
	idle := len(tr.idle[hostPort(u)])
	tr.mu.Unlock()
	if idle > 2 {
		t.Errorf("%d idle connections, want at most MaxIdlePerHost 2", idle)
	}
	if n := conns.Load(); n > 8+200/2 {
		t.Errorf("%d connections for 200 requests over 8 workers: the pool is not reused", n)
	}

	tr.CloseIdleConnections()

	// An idle connection older than IdleTimeout is not used.
	tr = newTransport(nil)
	tr.IdleTimeout = 10 * time.Millisecond
	c = &http.Client{Transport: tr}
	post(t, c, s.URL, "")
	before := conns.Load()
	time.Sleep(30 * time.Millisecond)
	post(t, c, s.URL, "")
	if conns.Load() != before+1 {
		t.Errorf("an expired idle connection was reused")
	}
	// A host no longer called: its idle connections are closed by the sweep all the same.
	time.Sleep(50 * time.Millisecond)
	tr.mu.Lock()
	swept := len(tr.idle)
	tr.mu.Unlock()
	if swept != 0 {
		t.Errorf("%d hosts with idle connections %v after their idle timeout", swept, tr.IdleTimeout)
	}
	post(t, c, s.URL, "")
	tr.CloseIdleConnections()
	tr.mu.Lock()
	left := len(tr.idle)
	tr.mu.Unlock()
	if left != 0 {
		t.Errorf("CloseIdleConnections left %d hosts", left)
	}
}
