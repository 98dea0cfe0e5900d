// Package relaytest starts a real relay on a loopback port for end-to-end tests: a fresh SQLite store, the
// given channels and adaptor kinds, and one relay key. Adaptor packages use it to drive their mocks with
// the official OpenAI SDK through the relay.
package relaytest

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"relay/adaptor"
	"relay/relay"
	"relay/store"
	"relay/store/sqlite"
)

// Relay is a running relay.
type Relay struct {
	t      testing.TB
	URL    string // base URL ending in /v1
	Key    string
	Server *relay.Server
	Store  *sqlite.Store
	Path   string
	done   chan error
	closed bool
}

// Start runs a relay with channels served by kinds; mutate may adjust the config first. It is shut down
// when the test ends.
func Start(t testing.TB, kinds map[string]adaptor.Adaptor, mutate func(*relay.Config), channels ...relay.ChannelConfig) *Relay {
	t.Helper()
	cfg, err := relay.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Channels = channels
	cfg.Store.Path = t.TempDir() + "/relay.db"
	cfg.Auth.KeyCacheTTL = 0
	cfg.Server.ShutdownGrace = 5 * time.Second
	if mutate != nil {
		mutate(cfg)
	}
	chans, err := cfg.BuildChannels(kinds)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(cfg.Store.Path, sqlite.Options{Logger: log, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := relay.NewServer(cfg, st, chans, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{t: t, URL: "http://" + ln.Addr().String() + "/v1", Server: srv, Store: st, Path: cfg.Store.Path, done: make(chan error, 1)}
	go func() { r.done <- srv.Serve(ln) }()
	r.Key = r.NewKey("test", nil)
	t.Cleanup(r.Close)
	return r
}

// NewKey creates a relay key the way `relay keys create` does and returns its secret.
func (r *Relay) NewKey(name string, models []string) string {
	secret := "sk-relay-test-" + adaptor.NewID("")
	if _, err := r.Store.CreateKey(context.Background(), store.Key{Name: name, Prefix: secret[:12], Hash: relay.HashKey(secret), Models: models}); err != nil {
		r.t.Fatal(err)
	}
	return secret
}

// Close shuts the relay down and drains the store (idempotent).
func (r *Relay) Close() {
	if r.closed {
		return
	}
	r.closed = true
	if err := r.Server.Shutdown(context.Background()); err != nil {
		r.t.Errorf("shutdown: %v", err)
	}
	if err := <-r.done; err != nil {
		r.t.Errorf("serve: %v", err)
	}
	if err := r.Store.Close(); err != nil {
		r.t.Errorf("store close: %v", err)
	}
}

// Logs closes the relay and returns its request log rows, newest first.
func (r *Relay) Logs() []store.LogRow {
	r.t.Helper()
	r.Close()
	st, err := sqlite.Open(r.Path, sqlite.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		r.t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.RecentLogs(context.Background(), 1000)
	if err != nil {
		r.t.Fatal(err)
	}
	return rows
}

// Post sends a raw chat request the way the SDKs do (Accept: application/json even for streams).
func (r *Relay) Post(key, body string) *http.Response {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.URL+"/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}

// SSEFrames reads every data: payload of an SSE body; any other non-comment line fails the test.
func SSEFrames(t testing.TB, rd io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "data: ") {
			out = append(out, strings.TrimPrefix(line, "data: "))
		} else if line != "" && !strings.HasPrefix(line, ":") {
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	return out
}
