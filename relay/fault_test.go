package relay_test

// Fault injection (issue #7): upstreams that refuse, reset, fail, stall, send junk or stop early, one at a
// time and under load. Every test is bounded in time and runs on loopback only.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/openai/openaitest"
	"relay/relay"
	"relay/store"
)

// Timeouts of the faulty channel: small, so a stall costs the test well under a second. Only the case
// under test gets the small one; the others get a roomy one, so that a loaded machine cannot turn, say,
// a reset into an idle timeout.
const (
	faultIdle    = 300 * time.Millisecond
	faultTimeout = 1 * time.Second
	roomyTimeout = 5 * time.Second
	// faultBound is the most any faulty request may take end to end: a stall is cut by the timeouts
	// above, everything else fails at once.
	faultBound = 3 * time.Second
	// faultAnswer is what the healthy channel answers.
	faultAnswer = "the healthy channel answers in full"
)

// A chunk an OpenAI upstream would send, and the same chunk cut off in the middle of its JSON.
const (
	goodChunk      = `data: {"id":"chatcmpl-f","object":"chat.completion.chunk","created":1731000000,"model":"m1","choices":[{"index":0,"delta":{"role":"assistant","content":"partial "},"finish_reason":null}]}` + "\n\n"
	truncatedChunk = `data: {"id":"chatcmpl-f","object":"chat.completion.chunk","created":1731000000,"model":"m1","choices":[{"index":0,"delta":{"content":"hel`
	junk           = "\x00\x01\x02 this is not SSE\r\n<html><body>502 Bad Gateway</body></html>\n{\"choices\":[]}\n\xff\xfe\xfd\n"
)

// faultUpstream starts a raw upstream whose every answer is fn's; it returns the base URL (…/v1).
func faultUpstream(t *testing.T, fn http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(fn)
	t.Cleanup(s.Close)
	return s.URL + "/v1"
}

// refusedURL is a loopback address where nothing listens (a port just released).
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/v1"
}

// sseStart sends the headers of a 200 event stream and flushes them.
func sseStart(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	http.NewResponseController(w).Flush()
}

// writeFlush writes s and flushes it; false when the client is gone.
func writeFlush(w http.ResponseWriter, s string) bool {
	if _, err := io.WriteString(w, s); err != nil {
		return false
	}
	return http.NewResponseController(w).Flush() == nil
}

// stallUntilGone blocks until the relay drops the request (or 10s, far past every timeout under test).
func stallUntilGone(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// resetConn hijacks the connection, writes partial (already-buffered response bytes are flushed
// first), then resets it (RST, not FIN).
func resetConn(w http.ResponseWriter, partial string) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	buf.WriteString(partial)
	buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

type faultCase struct {
	name   string
	stream bool
	// upstream starts the broken upstream and returns its base URL.
	upstream func(t *testing.T) string
	// midStream: the failure comes after the first byte reached the client, so it ends the stream with
	// an error event and no channel can take over. Otherwise the client gets status with an OpenAI error
	// body, and a second channel answers in full.
	midStream bool
	status    int    // the HTTP status (before the first byte) or the status logged (mid-stream)
	code      string // the error code in the body or the error event
}

func faultCases() []faultCase {
	mock := func(o openaitest.Options) func(t *testing.T) string {
		return func(t *testing.T) string {
			s := openaitest.New(o)
			t.Cleanup(s.Close)
			return s.BaseURL()
		}
	}
	raw := func(fn http.HandlerFunc) func(t *testing.T) string {
		return func(t *testing.T) string { return faultUpstream(t, fn) }
	}
	resetMidHeaders := raw(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		resetConn(w, "HTTP/1.1 20")
	})
	var cases []faultCase
	for _, stream := range []bool{false, true} {
		kind := map[bool]string{false: "non-stream", true: "stream"}[stream]
		cases = append(cases,
			faultCase{name: kind + "/refused", stream: stream, upstream: func(t *testing.T) string { return refusedURL(t) }, status: 502, code: "upstream_unreachable"},
			faultCase{name: kind + "/reset mid-headers", stream: stream, upstream: resetMidHeaders, status: 502, code: "upstream_unreachable"},
			faultCase{name: kind + "/500", stream: stream, upstream: mock(openaitest.Options{Status: 500, ErrorMessage: "boom"}), status: 500, code: "mock_error"},
			faultCase{name: kind + "/429", stream: stream, upstream: mock(openaitest.Options{Status: 429, ErrorMessage: "slow down", RetryAfter: "3"}), status: 429, code: "mock_error"},
		)
	}
	cases = append(cases,
		// Non-stream: a stall is cut by the channel's timeout; a body that is not a completion is a 502.
		faultCase{name: "non-stream/stall before first byte", upstream: mock(openaitest.Options{Delay: 10 * time.Second}), status: 504, code: "upstream_timeout"},
		faultCase{name: "non-stream/stall mid-body", upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			writeFlush(w, `{"id":"chatcmpl-f","object":"chat.completion","choices":[`)
			stallUntilGone(r)
		}), status: 504, code: "upstream_timeout"},
		faultCase{name: "non-stream/garbage", upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			sseStart(w, r)
			writeFlush(w, junk)
		}), status: 502, code: "bad_response"},
		faultCase{name: "non-stream/truncated json", upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			writeFlush(w, `{"id":"chatcmpl-f","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hel`)
		}), status: 502, code: "bad_response"},

		// Streams failing before their first event: a clean HTTP error, or the next channel.
		faultCase{name: "stream/stall before headers", stream: true, upstream: mock(openaitest.Options{Delay: 10 * time.Second}), status: 504, code: "upstream_idle_timeout"},
		faultCase{name: "stream/stall after headers", stream: true, upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			sseStart(w, r)
			stallUntilGone(r)
		}), status: 504, code: "upstream_idle_timeout"},
		faultCase{name: "stream/garbage then close", stream: true, upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			sseStart(w, r)
			writeFlush(w, junk)
		}), status: 502, code: "upstream_stream_broken"},
		// Junk that never stops must not keep the idle timer from firing.
		faultCase{name: "stream/garbage forever", stream: true, upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			sseStart(w, r)
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) && writeFlush(w, junk) {
				time.Sleep(5 * time.Millisecond)
			}
		}), status: 504, code: "upstream_idle_timeout"},
		faultCase{name: "stream/junk data frame", stream: true, upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			sseStart(w, r)
			writeFlush(w, "data: \x00\xffnot json{{\n\n")
			stallUntilGone(r)
		}), status: 502, code: "bad_chunk"},
		faultCase{name: "stream/truncated first chunk", stream: true, upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			sseStart(w, r)
			writeFlush(w, truncatedChunk)
		}), status: 502, code: "bad_chunk"},
		faultCase{name: "stream/close before any chunk", stream: true, upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			sseStart(w, r)
		}), status: 502, code: "upstream_stream_broken"},
		faultCase{name: "stream/first frame error", stream: true, upstream: mock(openaitest.Options{FirstFrameError: true}), status: 502, code: "mock_overloaded"},

		// Streams failing after their first event: an error event, never a silent end.
		faultCase{name: "stream/stall mid-stream", stream: true, midStream: true, upstream: mock(openaitest.Options{Chunks: 4, ChunkDelay: 10 * time.Second}), status: 504, code: "upstream_idle_timeout"},
		faultCase{name: "stream/truncated chunk mid-stream", stream: true, midStream: true, upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			sseStart(w, r)
			writeFlush(w, goodChunk)
			time.Sleep(20 * time.Millisecond)
			writeFlush(w, truncatedChunk)
		}), status: 502, code: "bad_chunk"},
		faultCase{name: "stream/garbage mid-stream", stream: true, midStream: true, upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			sseStart(w, r)
			writeFlush(w, goodChunk)
			time.Sleep(20 * time.Millisecond)
			writeFlush(w, junk)
		}), status: 502, code: "upstream_stream_broken"},
		faultCase{name: "stream/close without DONE", stream: true, midStream: true, upstream: mock(openaitest.Options{Chunks: 6, CloseAfter: 2}), status: 502, code: "upstream_stream_broken"},
		faultCase{name: "stream/reset mid-body", stream: true, midStream: true, upstream: raw(func(w http.ResponseWriter, r *http.Request) {
			sseStart(w, r)
			writeFlush(w, goodChunk)
			time.Sleep(20 * time.Millisecond)
			resetConn(w, "")
		}), status: 502, code: "upstream_unreachable"},
	)
	return cases
}

// faultResult is what a client saw of one request.
type faultResult struct {
	status  int
	header  http.Header
	body    []byte   // non-stream answers and errors before the first byte
	frames  []string // stream answers (data: payloads)
	elapsed time.Duration
}

// faultPost sends one chat request with a hard client-side deadline, so a relay that hangs fails the
// test instead of blocking it.
func faultPost(t *testing.T, client *http.Client, url, key string, stream bool) faultResult {
	t.Helper()
	res, err := faultDo(client, url, key, stream)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// faultDo is faultPost for goroutines other than the test's.
func faultDo(client *http.Client, url, key string, stream bool) (faultResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := fmt.Sprintf(`{"model":"m1","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return faultResult{}, fmt.Errorf("the relay hung: no answer within 10s (%v)", err)
		}
		return faultResult{}, fmt.Errorf("request failed at the transport after %v: %v", time.Since(start), err)
	}
	defer resp.Body.Close()
	res := faultResult{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode == 200 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		res.frames = readFrames(resp.Body)
	} else {
		res.body, err = io.ReadAll(resp.Body)
	}
	res.elapsed = time.Since(start)
	if ctx.Err() != nil || err != nil {
		return res, fmt.Errorf("the relay hung: no complete answer within 10s (%v)", err)
	}
	return res, nil
}

// readFrames reads every data: payload of an SSE body (junk lines are kept, prefixed, so that a check
// on the frames sees them).
func readFrames(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "data: "):
			out = append(out, strings.TrimPrefix(line, "data: "))
		case line == "" || strings.HasPrefix(line, ":"):
		default:
			out = append(out, "NOT SSE: "+line)
		}
	}
	return out
}

// streamText concatenates the content of well-formed chunk frames and reports whether the stream ended
// with [DONE] and carried no error.
func streamText(frames []string) (text string, done bool, errFrame string) {
	var b strings.Builder
	for i, f := range frames {
		if f == "[DONE]" {
			return b.String(), i == len(frames)-1, errFrame
		}
		g := gjson.Parse(f)
		if g.Get("error").Exists() {
			errFrame = f
			continue
		}
		b.WriteString(g.Get("choices.0.delta.content").Str)
	}
	return b.String(), false, errFrame
}

// checkOpenAIError checks an error answer's shape: JSON, {"error":{message,type,param,code}}.
func checkOpenAIError(t *testing.T, res faultResult, wantCode string) {
	t.Helper()
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error answer Content-Type %q, body %q", ct, res.body)
	}
	var v struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(res.body, &v); err != nil || v.Error == nil {
		t.Fatalf("not an OpenAI error body: %q", res.body)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := v.Error[k]; !ok {
			t.Fatalf("error body lacks %q: %s", k, res.body)
		}
	}
	if msg, _ := v.Error["message"].(string); msg == "" || strings.Contains(msg, "sk-upstream-secret") {
		t.Fatalf("error message %q", msg)
	}
	if v.Error["code"] != wantCode {
		t.Fatalf("error code %v, want %q: %s", v.Error["code"], wantCode, res.body)
	}
}

// faultChannel is the broken channel, tried first (higher priority): its idle timeout is small when
// the case expects the idle timer to end the stream, its total timeout when the case expects that.
func faultChannel(fc faultCase, baseURL string) relay.ChannelConfig {
	ch := openaiChannel("bad", baseURL, "m1")
	ch.Priority = 10
	ch.IdleTimeout, ch.Timeout = roomyTimeout, 2*roomyTimeout
	switch fc.code {
	case "upstream_idle_timeout":
		ch.IdleTimeout = faultIdle
	case "upstream_timeout":
		ch.Timeout = faultTimeout
	}
	return ch
}

// TestFaultUpstreams runs every broken upstream alone (the client gets a clear error, in time, and the
// log row says failed) and in front of a healthy channel (failures before the first byte end in a full
// answer from it; failures after the first byte still end in an error event).
func TestFaultUpstreams(t *testing.T) {
	for _, fc := range faultCases() {
		t.Run(fc.name, func(t *testing.T) {
			t.Parallel()
			t.Run("alone", func(t *testing.T) {
				tr := newTestRelay(t, nil, faultChannel(fc, fc.upstream(t)))
				// A key that belongs to a user, so the conversation is logged into the user's sessions too.
				user, key := userKey(t, tr)
				res := faultPost(t, http.DefaultClient, tr.URL, key, fc.stream)
				if res.elapsed > faultBound {
					t.Fatalf("took %v (bound %v)", res.elapsed, faultBound)
				}
				if fc.midStream {
					checkMidStreamError(t, res, fc.code)
				} else {
					if res.status != fc.status {
						t.Fatalf("status %d, want %d: %s %q", res.status, fc.status, res.body, res.frames)
					}
					checkOpenAIError(t, res, fc.code)
					if fc.status == 429 && res.header.Get("Retry-After") != "3" {
						t.Fatalf("Retry-After %q, want the upstream's", res.header.Get("Retry-After"))
					}
				}
				// Before tr.logs(), which closes the store.
				rec := sessionRecord(t, tr, user)
				want := store.StatusFail
				if fc.status == 504 {
					want = store.StatusTimeout
				}
				if rec.Status != want || rec.ProblemText != "hi" || !strings.Contains(rec.Error, fc.code) {
					t.Fatalf("session record does not record the failure (want %s with %q): %+v", want, fc.code, rec)
				}
				rows := tr.logs()
				if len(rows) != 1 {
					t.Fatalf("%d log rows, want 1: %+v", len(rows), rows)
				}
				row := rows[0]
				if row.Status != fc.status || !strings.Contains(row.Error, fc.code) || row.Channel != "bad" || row.Stream != fc.stream {
					t.Fatalf("log row does not record the failure (want status %d, error with %q): %+v", fc.status, fc.code, row)
				}
				if fc.midStream && row.TTFB <= 0 {
					t.Fatalf("mid-stream failure logged without TTFB: %+v", row)
				}
			})
			t.Run("failover", func(t *testing.T) {
				good := openaitest.New(openaitest.Options{Answer: faultAnswer, Chunks: 5})
				defer good.Close()
				tr := newTestRelay(t, nil, faultChannel(fc, fc.upstream(t)), openaiChannel("good", good.BaseURL(), "m1"))
				res := faultPost(t, http.DefaultClient, tr.URL, tr.Key, fc.stream)
				if res.elapsed > faultBound {
					t.Fatalf("took %v (bound %v)", res.elapsed, faultBound)
				}
				if fc.midStream {
					// Bytes already reached the client: no failover, an error event.
					checkMidStreamError(t, res, fc.code)
					if n := good.Requests.Load(); n != 0 {
						t.Fatalf("the healthy channel was called %d times after the first byte", n)
					}
					if rows := tr.logs(); len(rows) != 1 || rows[0].Status != fc.status || rows[0].Channel != "bad" {
						t.Fatalf("log: %+v", rows)
					}
					return
				}
				if res.status != 200 {
					t.Fatalf("no failover: status %d %s", res.status, res.body)
				}
				if fc.stream {
					text, done, errFrame := streamText(res.frames)
					if text != faultAnswer || !done || errFrame != "" {
						t.Fatalf("stream after failover: %q done=%v err=%s frames=%q", text, done, errFrame, res.frames)
					}
				} else if got := gjson.GetBytes(res.body, "choices.0.message.content").Str; got != faultAnswer {
					t.Fatalf("answer after failover: %s", res.body)
				}
				if n := good.Requests.Load(); n != 1 {
					t.Fatalf("healthy channel called %d times", n)
				}
				rows := tr.logs()
				if len(rows) != 1 || rows[0].Status != 200 || rows[0].Channel != "good" || rows[0].Error != "" {
					t.Fatalf("log: %+v", rows)
				}
			})
		})
	}
}

// userKey makes a user and a relay key of theirs.
func userKey(t *testing.T, tr *testRelay) (store.User, string) {
	t.Helper()
	ctx := context.Background()
	u, err := tr.Store.CreateUser(ctx, store.User{Name: "fault-user", Role: store.RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	secret := "sk-relay-fault-user-" + adaptor.NewID("")
	if _, err := tr.Store.CreateKey(ctx, store.Key{Name: "fault-user", Prefix: secret[:12], Hash: relay.HashKey(secret), UserID: u.ID}); err != nil {
		t.Fatal(err)
	}
	return u, secret
}

// sessionRecord waits for the one record the user's conversation left (the writer is asynchronous).
func sessionRecord(t *testing.T, tr *testRelay, u store.User) store.Record {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ss, _, err := tr.Store.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Page: 1, Size: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(ss) == 1 {
			recs, _, err := tr.Store.ListRecords(ctx, u.ID, ss[0].ID, 1, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 1 && recs[0].Status != store.StatusProcessing {
				return recs[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished session record for the user after 5s (%d sessions)", len(ss))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkMidStreamError checks a stream that broke after its first byte: 200, at least one chunk, then an
// OpenAI error event with the code, and no [DONE] (a client must not mistake it for a full answer).
func checkMidStreamError(t *testing.T, res faultResult, code string) {
	t.Helper()
	if res.status != 200 {
		t.Fatalf("status %d, want 200 then an error event: %s", res.status, res.body)
	}
	if len(res.frames) < 2 {
		t.Fatalf("frames %q", res.frames)
	}
	text, done, _ := streamText(res.frames)
	last := gjson.Parse(res.frames[len(res.frames)-1])
	if done || !strings.Contains(text, "partial") && !strings.Contains(text, "Hello") {
		t.Fatalf("want some content and no [DONE]: %q", res.frames)
	}
	if !last.Get("error").IsObject() || last.Get("error.code").Str != code || last.Get("error.message").Str == "" {
		t.Fatalf("last frame is not an error event with code %q: %q", code, res.frames)
	}
	for _, f := range res.frames {
		if strings.HasPrefix(f, "NOT SSE") {
			t.Fatalf("upstream junk leaked to the client: %q", res.frames)
		}
	}
}

// channelStates reads GET /v1/relay/channels with an admin key.
func channelStates(client *http.Client, url, admin string) (map[string]map[string]any, error) {
	req, _ := http.NewRequest(http.MethodGet, url+"/relay/channels", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v struct {
		Data []map[string]any `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		return nil, fmt.Errorf("channels: status %d: %v", resp.StatusCode, err)
	}
	out := map[string]map[string]any{}
	for _, c := range v.Data {
		name, _ := c["name"].(string)
		out[name] = c
	}
	return out, nil
}

// TestFaultConcurrentStreamsBreaker sends 1,000 concurrent streams to three channels, the preferred one
// failing every other request with 503: every request ends (an answer or a clear error), failover makes
// them succeed, the failing channel's breaker trips and, once the upstream is healthy, closes again after
// its cool-down; no goroutine outlives the load.
func TestFaultConcurrentStreamsBreaker(t *testing.T) {
	const n = 1000
	const cooldown = 300 * time.Millisecond
	deadline := time.Now().Add(60 * time.Second)

	opts := openaitest.Options{Answer: "one two three four", Chunks: 4, ChunkDelay: 20 * time.Millisecond}
	// The flaky upstream fails fast and answers slowly (an overloaded upstream), so that failures come
	// in runs and the breaker sees them.
	slow := opts
	slow.Delay = 100 * time.Millisecond
	inner := openaitest.New(slow)
	defer inner.Close()
	var failing atomic.Bool
	failing.Store(true)
	var alwaysFail atomic.Bool
	var flakyReqs, flaky503 atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := flakyReqs.Add(1)
		if alwaysFail.Load() || (failing.Load() && k%2 == 1) {
			flaky503.Add(1)
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"message":"overloaded","type":"server_error","param":null,"code":"overloaded"}}`)
			return
		}
		inner.Config.Handler.ServeHTTP(w, r)
	}))
	defer flaky.Close()
	b := openaitest.New(opts)
	defer b.Close()
	c := openaitest.New(opts)
	defer c.Close()

	chA := openaiChannel("flaky", flaky.URL+"/v1", "m1")
	chA.Priority, chA.BreakerThreshold, chA.BreakerCooldown = 10, 3, cooldown
	chA.IdleTimeout, chA.Timeout = 5*time.Second, 20*time.Second
	tr := newTestRelay(t, nil, chA, openaiChannel("b", b.BaseURL(), "m1"), openaiChannel("c", c.BaseURL(), "m1"))
	admin := "sk-relay-admin-fault-" + adaptor.NewID("")
	if _, err := tr.Store.CreateKey(context.Background(), store.Key{Name: "ops", Prefix: admin[:12], Hash: relay.HashKey(admin), Admin: true}); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: n + 16, MaxIdleConnsPerHost: n + 16, IdleConnTimeout: time.Minute}}
	defer client.CloseIdleConnections()
	pollClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	defer pollClient.CloseIdleConnections()

	settle := func() int {
		runtime.GC()
		time.Sleep(100 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	before := settle()

	// Watch the failing channel's state while the load runs.
	stopPoll := make(chan struct{})
	pollDone := make(chan struct{})
	var sawTrip atomic.Bool
	var sawState sync.Map
	go func() {
		defer close(pollDone)
		for {
			select {
			case <-stopPoll:
				return
			case <-time.After(5 * time.Millisecond):
			}
			st, err := channelStates(pollClient, tr.URL, admin)
			if err != nil {
				continue
			}
			s, _ := st["flaky"]["state"].(string)
			sawState.Store(s, true)
			if s == "open" || s == "half_open" {
				sawTrip.Store(true)
			}
		}
	}()

	type outcome int
	const (
		ok outcome = iota
		clearError
		unclear
	)
	var counts [3]atomic.Int64
	var slowest atomic.Int64
	var firstUnclear sync.Once
	var unclearDetail string
	start := make(chan struct{})
	var wg sync.WaitGroup
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	loadStart := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			o, detail := func() (outcome, string) {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tr.URL+"/chat/completions",
					strings.NewReader(`{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
				req.Header.Set("Authorization", "Bearer "+tr.Key)
				resp, err := client.Do(req)
				if err != nil {
					return unclear, "transport: " + err.Error()
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					body, _ := io.ReadAll(resp.Body)
					if resp.StatusCode >= 400 && gjson.GetBytes(body, "error.message").Str != "" {
						return clearError, ""
					}
					return unclear, fmt.Sprintf("status %d %s", resp.StatusCode, body)
				}
				frames := readFrames(resp.Body)
				if ctx.Err() != nil {
					return unclear, "hung past the deadline"
				}
				text, done, errFrame := streamText(frames)
				switch {
				case done && errFrame == "" && text == opts.Answer:
					return ok, ""
				case errFrame != "" && !done:
					return clearError, ""
				}
				return unclear, fmt.Sprintf("frames %q", frames)
			}()
			counts[o].Add(1)
			if o == unclear {
				firstUnclear.Do(func() { unclearDetail = detail })
			}
			for d := int64(time.Since(t0)); ; {
				if old := slowest.Load(); d <= old || slowest.CompareAndSwap(old, d) {
					break
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	loadTime := time.Since(loadStart)
	close(stopPoll)
	<-pollDone
	okN, errN, badN := counts[ok].Load(), counts[clearError].Load(), counts[unclear].Load()
	var states []string
	sawState.Range(func(k, _ any) bool { states = append(states, k.(string)); return true })
	t.Logf("%d streams in %v (slowest %v): %d answered, %d clear errors, %d unclear; flaky upstream got %d requests, %d of them 503; states seen %v",
		n, loadTime, time.Duration(slowest.Load()), okN, errN, badN, flakyReqs.Load(), flaky503.Load(), states)
	if okN+errN != n || badN != 0 {
		t.Fatalf("%d requests ended without a clear answer or error (first: %s)", badN, unclearDetail)
	}
	if okN < n*99/100 {
		t.Fatalf("only %d of %d succeeded despite two healthy channels", okN, n)
	}
	// A tripped breaker shows in the listing, and in requests that skipped the preferred channel.
	if !sawTrip.Load() && flakyReqs.Load() >= n {
		t.Fatalf("the breaker never tripped: states seen %v, flaky upstream got all %d requests", states, flakyReqs.Load())
	}
	if !sawTrip.Load() {
		t.Logf("the listing never caught the open state, but %d requests skipped the tripped channel", n-flakyReqs.Load())
	}

	// Trip it for sure (the upstream now fails every request), check the listing says open, then heal
	// the upstream: after the cool-down a probe closes the circuit.
	alwaysFail.Store(true)
	quickSent := 0
	quick := func() int {
		quickSent++
		req, _ := http.NewRequest(http.MethodPost, tr.URL+"/chat/completions",
			strings.NewReader(`{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+tr.Key)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var st map[string]map[string]any
	for i := 0; ; i++ {
		if code := quick(); code != 200 {
			t.Fatalf("request while tripping: status %d", code)
		}
		var err error
		if st, err = channelStates(pollClient, tr.URL, admin); err != nil {
			t.Fatal(err)
		}
		if st["flaky"]["state"] == "open" {
			break
		}
		if i > 20 || time.Now().After(deadline) {
			t.Fatalf("breaker not open after %d failing requests: %v", i+1, st["flaky"])
		}
	}
	if st["flaky"]["open_until"] == nil || st["flaky"]["failures"].(float64) < 3 {
		t.Fatalf("open channel listing: %v", st["flaky"])
	}
	alwaysFail.Store(false)
	failing.Store(false)
	healed := time.Now()
	servedBefore := inner.Requests.Load()
	for {
		if code := quick(); code != 200 {
			t.Fatalf("request while recovering: status %d", code)
		}
		var err error
		if st, err = channelStates(pollClient, tr.URL, admin); err != nil {
			t.Fatal(err)
		}
		if st["flaky"]["state"] == "closed" {
			break
		}
		if time.Now().After(deadline) || time.Since(healed) > 10*cooldown+5*time.Second {
			t.Fatalf("breaker did not close %v after the upstream healed: %v", time.Since(healed), st["flaky"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if since := time.Since(healed); since < cooldown/2 {
		t.Fatalf("breaker closed after %v, before its cool-down of %v", since, cooldown)
	}
	if inner.Requests.Load() == servedBefore {
		t.Fatal("the breaker closed without a successful probe")
	}
	t.Logf("breaker closed %v after the upstream healed (cool-down %v)", time.Since(healed).Round(time.Millisecond), cooldown)
	if st["flaky"]["in_flight"].(float64) != 0 || st["b"]["in_flight"].(float64) != 0 || st["c"]["in_flight"].(float64) != 0 {
		t.Fatalf("in_flight not back to 0: %v", st)
	}

	// Every request has its log row.
	if err := waitLogs(tr, n+quickSent, deadline); err != nil {
		t.Fatal(err)
	}

	// No goroutine outlives the requests: drop every idle connection and compare.
	client.CloseIdleConnections()
	pollClient.CloseIdleConnections()
	adaptor.DefaultHTTPClient.CloseIdleConnections()
	var after int
	for {
		after = settle()
		if after <= before+5 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("goroutines: %d before, %d after", before, after)
	if after > before+5 {
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		t.Fatalf("goroutine leak: %d before the load, %d after", before, after)
	}
	if time.Now().After(deadline) {
		t.Fatal("took longer than 60s")
	}
}

// waitLogs waits until the relay's store holds one log row per request sent (the writer is
// asynchronous).
func waitLogs(tr *testRelay, want int, deadline time.Time) error {
	for {
		got, err := tr.Store.CountLogs(context.Background())
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
		if got > want || time.Now().After(deadline) {
			return fmt.Errorf("%d log rows for %d requests (writer stats %+v)", got, want, tr.Store.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A non-stream call whose upstream stalls must end within the channel's idle timeout too (or move to
// the next channel), as a stream's first event does: with the default config (timeout: none) nothing
// else bounds it.
func TestFaultNonStreamStallBoundedByIdleTimeout(t *testing.T) {
	stall := func(t *testing.T) string {
		return faultUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			writeFlush(w, `{"id":"chatcmpl-f","object":"chat.completion","choices":[`)
			stallUntilGone(r)
		})
	}
	idleOnly := func(url string) relay.ChannelConfig {
		ch := openaiChannel("bad", url, "m1")
		ch.Priority, ch.IdleTimeout = 10, faultIdle // and no Timeout, as in config.yaml
		return ch
	}
	t.Run("alone", func(t *testing.T) {
		tr := newTestRelay(t, nil, idleOnly(stall(t)))
		res := faultPost(t, http.DefaultClient, tr.URL, tr.Key, false)
		if res.status != 504 || res.elapsed > faultBound {
			t.Fatalf("status %d after %v: %s", res.status, res.elapsed, res.body)
		}
		checkOpenAIError(t, res, "upstream_idle_timeout")
	})
	t.Run("failover", func(t *testing.T) {
		good := openaitest.New(openaitest.Options{Answer: faultAnswer})
		defer good.Close()
		tr := newTestRelay(t, nil, idleOnly(stall(t)), openaiChannel("good", good.BaseURL(), "m1"))
		res := faultPost(t, http.DefaultClient, tr.URL, tr.Key, false)
		if res.status != 200 || res.elapsed > faultBound || gjson.GetBytes(res.body, "choices.0.message.content").Str != faultAnswer {
			t.Fatalf("status %d after %v: %s", res.status, res.elapsed, res.body)
		}
	})
}

// An upstream that streams one endless SSE line (no newline) must be cut off at a bounded size, not
// buffered whole until the idle timeout.
func TestFaultEndlessSSELineIsBounded(t *testing.T) {
	const mib = 1 << 20
	url := faultUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		sseStart(w, r)
		blk := strings.Repeat("x", mib)
		io.WriteString(w, "data: ")
		for i := 0; i < 128; i++ {
			if _, err := io.WriteString(w, blk); err != nil {
				return
			}
		}
		stallUntilGone(r)
	})
	ch := openaiChannel("bad", url, "m1")
	ch.IdleTimeout = 5 * time.Second
	tr := newTestRelay(t, nil, ch)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	res := faultPost(t, http.DefaultClient, tr.URL, tr.Key, true)
	runtime.ReadMemStats(&ms1)
	t.Logf("status %d after %v; total allocated during the request: %d MiB", res.status, res.elapsed, (ms1.TotalAlloc-ms0.TotalAlloc)/mib)
	if res.status != 502 || res.elapsed > 4*time.Second {
		t.Fatalf("status %d after %v (the idle timeout is 5s): %.300s", res.status, res.elapsed, res.body)
	}
	if alloc := (ms1.TotalAlloc - ms0.TotalAlloc) / mib; alloc > 256 {
		t.Fatalf("the relay allocated %d MiB for one line", alloc)
	}
}

// Once open, a channel stays open for its cool-down: a success reported afterwards by a request that was
// admitted before the breaker opened is stale and must not close it.
func TestFaultBreakerStaysOpenDespiteLateSuccess(t *testing.T) {
	var reqs atomic.Int64
	slowOK := openaitest.New(openaitest.Options{Delay: 500 * time.Millisecond})
	defer slowOK.Close()
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reqs.Add(1) == 1 {
			slowOK.Config.Handler.ServeHTTP(w, r) // the first request succeeds, slowly
			return
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(503)
		io.WriteString(w, `{"error":{"message":"overloaded","type":"server_error","param":null,"code":"overloaded"}}`)
	}))
	defer flaky.Close()
	good := openaitest.New(openaitest.Options{})
	defer good.Close()
	a := openaiChannel("flaky", flaky.URL+"/v1", "m1")
	a.Priority, a.BreakerThreshold, a.BreakerCooldown = 10, 2, time.Hour
	tr := newTestRelay(t, nil, a, openaiChannel("good", good.BaseURL(), "m1"))
	admin := "sk-relay-admin-fault-" + adaptor.NewID("")
	if _, err := tr.Store.CreateKey(context.Background(), store.Key{Name: "ops", Prefix: admin[:12], Hash: relay.HashKey(admin), Admin: true}); err != nil {
		t.Fatal(err)
	}
	type result struct {
		res faultResult
		err error
	}
	straggler := make(chan result, 1)
	go func() {
		res, err := faultDo(http.DefaultClient, tr.URL, tr.Key, true)
		straggler <- result{res, err}
	}()
	for reqs.Load() < 1 {
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 2; i++ { // two failures: open, with an hour's cool-down
		if res := faultPost(t, http.DefaultClient, tr.URL, tr.Key, true); res.status != 200 {
			t.Fatalf("failover: %d %s", res.status, res.body)
		}
	}
	st, err := channelStates(http.DefaultClient, tr.URL, admin)
	if err != nil || st["flaky"]["state"] != "open" {
		t.Fatalf("after two failures: %v %v", st["flaky"], err)
	}
	if r := <-straggler; r.err != nil || r.res.status != 200 {
		t.Fatalf("straggler: %d %v", r.res.status, r.err)
	}
	st, err = channelStates(http.DefaultClient, tr.URL, admin)
	if err != nil || st["flaky"]["state"] != "open" {
		t.Fatalf("a success admitted before the trip closed the circuit during its cool-down: %v %v", st["flaky"], err)
	}
	before := reqs.Load()
	faultPost(t, http.DefaultClient, tr.URL, tr.Key, true)
	if reqs.Load() != before {
		t.Fatal("a request went to the channel during its cool-down")
	}
}
