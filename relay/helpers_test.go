package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"relay/adaptor"
	"relay/adaptor/demo"
	openaiadaptor "relay/adaptor/openai"
	"relay/relay"
	"relay/store"
	"relay/store/sqlite"
)

// testKinds are the adaptors the relay tests use (the others have their own end-to-end tests).
func testKinds() map[string]adaptor.Adaptor {
	return map[string]adaptor.Adaptor{"demo": demo.New(), "openai": openaiadaptor.New()}
}

// testRelay is a relay serving on a loopback port with a fresh SQLite store and one key.
type testRelay struct {
	t      *testing.T
	URL    string // base URL ending in /v1
	Key    string
	Server *relay.Server
	Store  *sqlite.Store
	Path   string
	done   chan error
	closed bool
}

func demoChannel() relay.ChannelConfig {
	return relay.ChannelConfig{Name: "demo", Kind: "demo", Enabled: "true", Models: []string{"demo"}}
}

func openaiChannel(name, baseURL string, models ...string) relay.ChannelConfig {
	return relay.ChannelConfig{Name: name, Kind: "openai", Enabled: "true", BaseURL: baseURL, Keys: []string{"sk-upstream-secret-" + name}, Models: models}
}

// newTestRelay starts a relay with the given channels; mutate may adjust the config first.
func newTestRelay(t *testing.T, mutate func(*relay.Config), channels ...relay.ChannelConfig) *testRelay {
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
	chans, err := cfg.BuildChannels(testKinds())
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
	tr := &testRelay{t: t, URL: "http://" + ln.Addr().String() + "/v1", Server: srv, Store: st, Path: cfg.Store.Path, done: make(chan error, 1)}
	go func() { tr.done <- srv.Serve(ln) }()
	tr.Key = tr.newKey("test", nil)
	t.Cleanup(tr.Close)
	return tr
}

// newKey creates a relay key the way `relay keys create` does and returns its secret.
func (tr *testRelay) newKey(name string, models []string) string {
	secret := "sk-relay-test-" + adaptor.NewID("")
	if _, err := tr.Store.CreateKey(context.Background(), store.Key{Name: name, Prefix: secret[:12], Hash: relay.HashKey(secret), Models: models}); err != nil {
		tr.t.Fatal(err)
	}
	return secret
}

// Close shuts the relay down and drains the store.
func (tr *testRelay) Close() {
	if tr.closed {
		return
	}
	tr.closed = true
	if err := tr.Server.Shutdown(context.Background()); err != nil {
		tr.t.Errorf("shutdown: %v", err)
	}
	if err := <-tr.done; err != nil {
		tr.t.Errorf("serve: %v", err)
	}
	if err := tr.Store.Close(); err != nil {
		tr.t.Errorf("store close: %v", err)
	}
}

// logs closes the relay and returns its log rows, newest first, read from a fresh handle on the file.
func (tr *testRelay) logs() []store.LogRow {
	tr.t.Helper()
	tr.Close()
	st, err := sqlite.Open(tr.Path, sqlite.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tr.t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.RecentLogs(context.Background(), 1000)
	if err != nil {
		tr.t.Fatal(err)
	}
	return rows
}

func (tr *testRelay) sdk(opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{option.WithBaseURL(tr.URL), option.WithAPIKey(tr.Key), option.WithMaxRetries(0)}, opts...)...)
}

// post sends a raw chat request the way the SDKs do (Accept: application/json even for streams).
func (tr *testRelay) post(key, body string) *http.Response {
	tr.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tr.URL+"/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tr.t.Fatal(err)
	}
	return resp
}

// sseFrames reads every data: payload of an SSE body.
func sseFrames(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
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

// errorBody decodes an OpenAI error body and checks its shape (all four keys present).
func errorBody(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Error == nil {
		t.Fatalf("not an OpenAI error body: %s", b)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := v.Error[k]; !ok {
			t.Fatalf("error body lacks %q: %s", k, b)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type %q", ct)
	}
	return v.Error
}
