package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"relay/adaptor/h1"
)

// The bare floors answer "how much of a proxy hop is net/http?" for `relaybench pair -bare`. Both speak
// only as much HTTP/1.1 as the harness's own load generator and mock do for a non-stream request (a
// body needs Content-Length), so they are yardsticks, not proxies to deploy:
//   - floor-bare: no net/http at all. One goroutine per client connection reads a request, writes it to
//     an upstream connection of its own, reads the answer and writes it back.
//   - floor-bare-client: net/http's server (as the relay has, under Gin) calling the upstream through
//     adaptor/h1, the relay's own transport for plain HTTP: the exchange in the handler goroutine instead
//     of http.Transport's per-connection read and write goroutines. It is the relay minus the relay's work.

const (
	bareMaxHeader = 64 << 10
	bareMaxBody   = 16 << 20
)

var errBareNoLength = errors.New("bare floor: message without Content-Length (chunked or streamed answers are not supported)")

// readMessage appends one HTTP/1.1 message (start line, headers, Content-Length body) from br to buf and
// returns it with the length of its head (through the blank line).
func readMessage(br *bufio.Reader, buf []byte) (msg []byte, head int, err error) {
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return buf, 0, err
		}
		buf = append(buf, line...)
		if len(buf) > bareMaxHeader {
			return buf, 0, errors.New("bare floor: header too large")
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || n < 0 || n > bareMaxBody || length >= 0 {
				return buf, 0, fmt.Errorf("bare floor: bad Content-Length %q", bytes.TrimSpace(value))
			}
			length = n
		}
		if name, _, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Transfer-Encoding")) {
			return buf, 0, errBareNoLength
		}
	}
	head = len(buf)
	if length < 0 {
		if bytes.HasPrefix(buf, []byte("HTTP/")) { // an answer must say how long it is
			return buf, 0, errBareNoLength
		}
		length = 0 // a request without a body
	}
	buf = append(buf, make([]byte, length)...)
	if _, err := io.ReadFull(br, buf[head:]); err != nil {
		return buf, 0, err
	}
	return buf, head, nil
}

// runBareFloor is `relaybench floor-bare`.
func runBareFloor(args []string, stdout io.Writer) error {
	addr, upstream, err := bareFlags("floor-bare", args)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening http://%s\n", ln.Addr())
	stop := onSignal(func() { ln.Close() })
	defer stop()
	serveBare(ln, upstream)
	return nil
}

// serveBare serves floor-bare on ln until ln is closed.
func serveBare(ln net.Listener, upstream string) {
	dial := loopbackDialer(10 * time.Second)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := dial(context.Background(), "tcp", upstream)
			if err != nil {
				return
			}
			defer u.Close()
			cbr, ubr := bufio.NewReader(c), bufio.NewReader(u)
			var req, resp []byte
			for {
				if req, _, err = readMessage(cbr, req[:0]); err != nil {
					return
				}
				if _, err = u.Write(req); err != nil {
					return
				}
				if resp, _, err = readMessage(ubr, resp[:0]); err != nil {
					return
				}
				if _, err = c.Write(resp); err != nil {
					return
				}
			}
		}()
	}
}

// runBareClientFloor is `relaybench floor-bare-client`.
func runBareClientFloor(args []string, stdout io.Writer) error {
	addr, upstream, err := bareFlags("floor-bare-client", args)
	if err != nil {
		return err
	}
	return serveChild(addr, newBareClientHandler(upstream), stdout)
}

// newBareClientHandler forwards each request to upstream (host:port) through the relay's own upstream
// transport for plain HTTP (adaptor/h1), with nothing else around it.
func newBareClientHandler(upstream string) http.Handler {
	client := &http.Client{Transport: &h1.Transport{Fallback: upstreamTransport(), Dial: loopbackDialer(10 * time.Second)}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, bareMaxBody))
		if err != nil {
			http.Error(w, "cannot read request body", http.StatusBadRequest)
			return
		}
		out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+upstream+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		for _, name := range []string{"Authorization", "Content-Type", "Accept"} {
			if v := r.Header.Get(name); v != "" {
				out.Header.Set(name, v)
			}
		}
		resp, err := client.Do(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if resp.ContentLength < 0 {
			http.Error(w, errBareNoLength.Error(), http.StatusBadGateway)
			return
		}
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
}

// bareFlags parses a bare floor's -addr and -upstream (a base URL; its host:port is dialled).
func bareFlags(name string, args []string) (addr, upstream string, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	a := fs.String("addr", "127.0.0.1:0", "listen address")
	u := fs.String("upstream", "", "upstream base URL (the mock)")
	if err := fs.Parse(args); err != nil {
		return "", "", err
	}
	target, err := url.Parse(*u)
	if err != nil || target.Host == "" || target.Scheme != "http" {
		return "", "", fmt.Errorf("%s: bad -upstream %q (want http://host:port)", name, *u)
	}
	return *a, target.Host, nil
}
