package relay_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"relay/adaptor/openai/openaitest"
	"relay/relay"
	"relay/store"
)

func getJSON(t *testing.T, url, key string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %s", url, b)
	}
	return resp.StatusCode, v
}

// A channel that keeps failing is tripped and skipped (no more requests reach it); the admin endpoint
// shows it open; readiness holds while another channel serves the model, and fails when none can.
func TestBreakerTripsSkipsAndReports(t *testing.T) {
	bad := openaitest.New(openaitest.Options{Status: 503})
	defer bad.Close()
	good := openaitest.New(openaitest.Options{Answer: "ok"})
	defer good.Close()
	first := openaiChannel("bad", bad.BaseURL(), "m1")
	first.Priority, first.BreakerThreshold, first.BreakerCooldown = 10, 2, time.Hour
	tr := newTestRelay(t, nil, first, openaiChannel("good", good.BaseURL(), "m1"))
	for i := 0; i < 6; i++ {
		resp := tr.post(tr.Key, `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if n := bad.Requests.Load(); n != 2 {
		t.Fatalf("tripped channel got %d requests, want 2", n)
	}
	admin := "sk-relay-admin-test"
	if _, err := tr.Store.CreateKey(context.Background(), store.Key{Name: "ops", Prefix: "sk-relay-adm", Hash: relay.HashKey(admin), Admin: true}); err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSuffix(tr.URL, "/v1")
	if code, _ := getJSON(t, tr.URL+"/relay/channels", tr.Key); code != 403 {
		t.Fatalf("non-admin got %d", code)
	}
	code, v := getJSON(t, tr.URL+"/relay/channels", admin)
	if code != 200 {
		t.Fatalf("admin got %d %v", code, v)
	}
	chans := v["data"].([]any)
	byName := map[string]map[string]any{}
	for _, c := range chans {
		m := c.(map[string]any)
		byName[m["name"].(string)] = m
	}
	if b := byName["bad"]; b["state"] != "open" || b["failures"].(float64) != 2 || b["open_until"] == nil || b["error_rate"].(float64) <= 0 {
		t.Fatalf("bad channel %v", b)
	}
	if g := byName["good"]; g["state"] != "closed" || g["requests"].(float64) != 6 || g["in_flight"].(float64) != 0 {
		t.Fatalf("good channel %v", g)
	}
	if strings.Contains(toJSON(v), "sk-upstream-secret") {
		t.Fatal("channel listing leaks a key")
	}
	if code, v := getJSON(t, base+"/readyz", ""); code != 200 || v["status"] != "ready" {
		t.Fatalf("readyz %d %v", code, v)
	}

	// Only the failing channel serves m2: once it trips, readiness says so.
	only := openaiChannel("bad2", bad.BaseURL(), "m2")
	only.BreakerThreshold, only.BreakerCooldown = 1, time.Hour
	tr2 := newTestRelay(t, nil, only)
	resp := tr2.post(tr2.Key, `{"model":"m2","messages":[{"role":"user","content":"hi"}]}`)
	resp.Body.Close()
	code, v = getJSON(t, strings.TrimSuffix(tr2.URL, "/v1")+"/readyz", "")
	if code != 503 || !strings.Contains(toJSON(v), "m2") {
		t.Fatalf("readyz with a tripped model: %d %v", code, v)
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// A channel at its max_concurrency is skipped for the next candidate; with none left the answer is 503
// with Retry-After, and the slot is free again once the stream ends.
func TestChannelMaxConcurrency(t *testing.T) {
	slow := openaitest.New(openaitest.Options{Chunks: 5, ChunkDelay: 100 * time.Millisecond})
	defer slow.Close()
	spare := openaitest.New(openaitest.Options{Answer: "spare"})
	defer spare.Close()
	one := openaiChannel("one", slow.BaseURL(), "m1")
	one.MaxConcurrency, one.Priority = 1, 10
	tr := newTestRelay(t, nil, one, openaiChannel("spare", spare.BaseURL(), "m1"))
	stream := tr.post(tr.Key, `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	r := tr.post(tr.Key, `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(b), "spare") {
		t.Fatalf("busy channel not skipped: %d %s", r.StatusCode, b)
	}
	io.Copy(io.Discard, stream.Body)
	stream.Body.Close()

	tr2 := newTestRelay(t, nil, one)
	stream = tr2.post(tr2.Key, `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	r = tr2.post(tr2.Key, `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
	if r.StatusCode != 503 || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("full channel: %d %v", r.StatusCode, r.Header)
	}
	if e := errorBody(t, r); e["code"] != "channels_busy" {
		t.Fatalf("error %v", e)
	}
	io.Copy(io.Discard, stream.Body)
	stream.Body.Close()
	r = tr2.post(tr2.Key, `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("slot not released after the stream: %d", r.StatusCode)
	}
}

// A key the upstream refuses is set aside and the same channel is tried with its next key; later
// requests skip the refused key (round-robin over the good ones), and the listing counts it.
func TestRefusedKeySetAside(t *testing.T) {
	up := openaitest.New(openaitest.Options{Key: "good-key", Answer: "ok"})
	defer up.Close()
	ch := openaiChannel("two-keys", up.BaseURL(), "m1")
	ch.Keys = []string{"bad-key", "good-key"}
	tr := newTestRelay(t, nil, ch)
	for i := 0; i < 4; i++ {
		r := tr.post(tr.Key, `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, r.StatusCode)
		}
	}
	bad := 0
	for _, h := range up.Headers() {
		if h.Get("Authorization") == "Bearer bad-key" {
			bad++
		}
	}
	if bad != 1 || len(up.Headers()) != 5 {
		t.Fatalf("bad key used %d times over %d upstream calls; want once over 5", bad, len(up.Headers()))
	}
	admin := "sk-relay-admin-keys"
	tr.Store.CreateKey(context.Background(), store.Key{Name: "ops", Prefix: "sk-relay-adm", Hash: relay.HashKey(admin), Admin: true})
	_, v := getJSON(t, tr.URL+"/relay/channels", admin)
	c := v["data"].([]any)[0].(map[string]any)
	if c["keys"].(float64) != 2 || c["keys_set_aside"].(float64) != 1 || c["state"] != "closed" {
		t.Fatalf("channel %v", c)
	}
}

// A key the upstream rate-limits sits out its Retry-After while the channel's other key answers; the
// channel's breaker is not charged for it. When every key of the channel is limited, the request moves
// on to the next channel and the limited channel's breaker counts the failure.
func TestRateLimitedKeySetAside(t *testing.T) {
	ok := openaitest.New(openaitest.Options{Answer: "ok"})
	defer ok.Close()
	var limitedCalls atomic.Int64
	limiting := func(limited ...string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for _, k := range limited {
				if r.Header.Get("Authorization") == "Bearer "+k {
					limitedCalls.Add(1)
					io.Copy(io.Discard, r.Body)
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Retry-After", "20")
					w.WriteHeader(429)
					io.WriteString(w, `{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
					return
				}
			}
			ok.Config.Handler.ServeHTTP(w, r)
		}))
	}
	up := limiting("key-a")
	defer up.Close()
	ch := openaiChannel("two-keys", up.URL+"/v1", "m1")
	ch.Keys = []string{"key-a", "key-b"}
	ch.BreakerThreshold = 1
	tr := newTestRelay(t, nil, ch)
	for i := 0; i < 4; i++ {
		r := tr.post(tr.Key, `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, r.StatusCode)
		}
	}
	if n := limitedCalls.Load(); n != 1 {
		t.Fatalf("the rate-limited key was used %d times; want once, then set aside", n)
	}
	admin := "sk-relay-admin-429"
	tr.Store.CreateKey(context.Background(), store.Key{Name: "ops", Prefix: "sk-relay-adm", Hash: relay.HashKey(admin), Admin: true})
	_, v := getJSON(t, tr.URL+"/relay/channels", admin)
	c := v["data"].([]any)[0].(map[string]any)
	if c["keys_set_aside"].(float64) != 1 || c["state"] != "closed" {
		t.Fatalf("channel %v", c)
	}

	// Every key limited: failover to the next channel, and the limited channel's breaker opens
	// (threshold 1).
	limitedCalls.Store(0)
	all := limiting("key-a", "key-b")
	defer all.Close()
	busy := openaiChannel("all-limited", all.URL+"/v1", "m1")
	busy.Keys, busy.Priority, busy.BreakerThreshold = []string{"key-a", "key-b"}, 10, 1
	tr2 := newTestRelay(t, nil, busy, openaiChannel("spare", ok.BaseURL(), "m1"))
	r := tr2.post(tr2.Key, `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
	r.Body.Close()
	if r.StatusCode != 200 || limitedCalls.Load() != 2 {
		t.Fatalf("status %d after %d limited calls; want 200 from the spare after both keys", r.StatusCode, limitedCalls.Load())
	}
	tr2.Store.CreateKey(context.Background(), store.Key{Name: "ops", Prefix: "sk-relay-adm", Hash: relay.HashKey(admin), Admin: true})
	_, v = getJSON(t, tr2.URL+"/relay/channels", admin)
	for _, x := range v["data"].([]any) {
		if c := x.(map[string]any); c["name"] == "all-limited" && c["state"] != "open" {
			t.Fatalf("every key limited but the channel's breaker is %v", c["state"])
		}
	}
}
