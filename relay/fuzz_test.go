package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"relay/relay"
	"relay/store"
	"relay/store/sqlite"
)

var (
	fuzzOnce    sync.Once
	fuzzHandler http.Handler
	fuzzKey     = "sk-relay-fuzz-key"
)

// fuzzRelay builds one relay (demo channel, small body limit) shared by all fuzz inputs.
func fuzzRelay(f *testing.F) http.Handler {
	fuzzOnce.Do(func() {
		cfg, err := relay.LoadConfig("")
		if err != nil {
			f.Fatal(err)
		}
		cfg.Channels = []relay.ChannelConfig{demoChannel()}
		cfg.Server.MaxBodyBytes = 64 << 10
		chans, err := cfg.BuildChannels(testKinds())
		if err != nil {
			f.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		st, err := sqlite.Open(f.TempDir()+"/fuzz.db", sqlite.Options{Logger: log})
		if err != nil {
			f.Fatal(err)
		}
		if _, err := st.CreateKey(context.Background(), store.Key{Name: "fuzz", Prefix: "sk", Hash: relay.HashKey(fuzzKey)}); err != nil {
			f.Fatal(err)
		}
		fuzzHandler = relay.NewServer(cfg, st, chans, log).Handler()
	})
	return fuzzHandler
}

// FuzzChatCompletions: no input makes the request path panic or answer outside the expected statuses,
// and every error is an OpenAI error body.
func FuzzChatCompletions(f *testing.F) {
	for _, s := range []string{
		`{"model":"demo","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"demo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:,"}}]}]}`,
		`{"model":"demo","messages":[{"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","content":"x","tool_call_id":"1"}]}`,
		`{"model":"demo","messages":[{"role":"user","content":"\ud800"}],"n":1,"stop":["a"],"temperature":1e308}`,
		`{"model":"demo","messages":[{}]}`, `{"model":"demo","messages":[[]]}`, `{"model":"","messages":null}`,
		`{"model":"demo","messages":[{"role":"user","content":[{"type":"text"}]}]}`,
		`{"model":"x","stream":1}`, `[]`, `null`, `"str"`, `{`, ``, "\x00\xff", `{"model":"demo","messages":[{"role":"user","content":"` + "\u2028\u0000" + `"}]}`,
	} {
		f.Add([]byte(s))
	}
	h := fuzzRelay(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+fuzzKey)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("200 with invalid JSON body: %q", rec.Body.String())
			}
		case 400, 404, 413:
			var v struct {
				Error struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v.Error.Message == "" {
				t.Fatalf("status %d with body %q", rec.Code, rec.Body.String())
			}
		default:
			t.Fatalf("unexpected status %d for %q: %s", rec.Code, body, rec.Body.String())
		}
	})
}
