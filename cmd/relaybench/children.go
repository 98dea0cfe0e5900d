package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// The mock and the floor run as child processes of the harness (hidden subcommands of this binary), so
// each has its own pid and its CPU and memory can be read from /proc apart from the relay's.

// runMock is `relaybench mock`: the fast OpenAI-compatible upstream.
func runMock(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mock", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	var opt mockOptions
	opt.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return serveChild(*addr, newMock(opt), stdout)
}

// runHunyuanMock is `relaybench mock-hunyuan`: the fast Hunyuan-shaped upstream of the translation lane,
// with the same knobs as the OpenAI mock.
func runHunyuanMock(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mock-hunyuan", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	var opt mockOptions
	opt.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return serveChild(*addr, newHunyuanMock(opt), stdout)
}

// runFloor is `relaybench floor`: the least any proxy must do, a bare ReverseProxy with no auth,
// rewriting or logging. The relay's overhead is judged against it as well as against direct calls.
func runFloor(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	upstream := fs.String("upstream", "", "upstream base URL (the mock)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		return fmt.Errorf("floor: bad -upstream %q", *upstream)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     upstreamTransport(),
		FlushInterval: -1,            // flush every write, as a streaming relay must
		BufferPool:    &bufferPool{}, // without it every request allocates 32 KiB, and GC would weigh on the floor
	}
	// The body is read before proxying, as the relay does. Streamed through, it races with the answer:
	// once the response headers are written net/http closes the inbound body, the transport's final
	// read of it fails and the upstream connection is torn down mid-stream (golang/go#40747).
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "cannot read request body", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	})
	return serveChild(*addr, h, stdout)
}

// bufferPool recycles the ReverseProxy's copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// upstreamTransport gives the floor the pool sizes of the relay's upstream transport, so the floor is not
// handicapped by Go's default of two idle connections per host. It stays net/http's Transport: the floor
// is a bare ReverseProxy by definition (the relay's plain-HTTP calls go through adaptor/h1 instead).
func upstreamTransport() *http.Transport {
	return &http.Transport{
		DialContext:         loopbackDialer(10 * time.Second),
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
}

// serveChild serves h, tells the parent its URL on the first stdout line, and exits on SIGTERM/SIGINT.
func serveChild(addr string, h http.Handler, stdout io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, IdleTimeout: 2 * time.Minute, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "listening http://%s\n", ln.Addr())
	stop := onSignal(func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// onSignal calls f on SIGTERM or SIGINT, the way the harness stops its children; the returned stop ends
// the watch.
func onSignal(f func()) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case <-sig:
			f()
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}

// loopbackDialer refuses any address that is not loopback: the benchmark must never send traffic
// anywhere else, whatever a flag or a config says.
func loopbackDialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("relaybench: refusing to dial non-loopback address %s", addr)
		}
		return d.DialContext(ctx, network, addr)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "relaybench:", err)
	os.Exit(1)
}
