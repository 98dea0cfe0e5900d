package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"relay/adaptor"
	"relay/relay"
	"relay/relay/relaytest"
	"relay/store"
	"relay/store/sqlite"
)

// sessionRelay is a relay with JWT auth on, a demo channel (slow: chunk_delay) and two users and an
// admin with tokens.
type sessionRelay struct {
	*relaytest.Relay
	t                  *testing.T
	base               string // http://host:port
	alice, bob, admin  store.User
	aliceT, bobT, admT string
}

func newSessionRelay(t *testing.T, mutate func(*relay.Config), channels ...relay.ChannelConfig) *sessionRelay {
	t.Helper()
	if len(channels) == 0 {
		channels = []relay.ChannelConfig{demoChannel()}
	}
	r := relaytest.Start(t, testKinds(), func(c *relay.Config) {
		c.Auth.JWT.Secret = testJWTSecret
		c.Sessions.Models = []relay.SessionModel{{ID: 1, Name: "Demo", Code: "demo", Logo: "/demo.png"},
			{ID: 2, Name: "Slow", Code: "slow"}, {ID: 3, Name: "Broken", Code: "broken"}, {ID: 4, Name: "Unrouted", Code: "nothing"}}
		if mutate != nil {
			mutate(c)
		}
	}, channels...)
	sr := &sessionRelay{Relay: r, t: t, base: strings.TrimSuffix(r.URL, "/v1")}
	ctx := context.Background()
	key := []byte(testJWTSecret)
	for _, p := range []struct {
		u    *store.User
		tok  *string
		name string
		role string
	}{{&sr.alice, &sr.aliceT, "alice", store.RoleUser}, {&sr.bob, &sr.bobT, "bob", store.RoleUser}, {&sr.admin, &sr.admT, "root", store.RoleAdmin}} {
		u, err := r.Store.CreateUser(ctx, store.User{Name: p.name, Role: p.role})
		if err != nil {
			t.Fatal(err)
		}
		*p.u = u
		if *p.tok, err = relay.IssueToken(key, u, time.Hour, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return sr
}

func slowDemo(name string, delay string) relay.ChannelConfig {
	return relay.ChannelConfig{Name: name, Kind: "demo", Enabled: "true", Models: []string{name},
		Credentials: map[string]string{"chunk_delay": delay}}
}

// call sends a request with a token and decodes the JSON answer.
func (sr *sessionRelay) call(method, path, token string, body any) (int, map[string]any) {
	sr.t.Helper()
	var rd io.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	} else if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, sr.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		sr.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		sr.t.Fatalf("%s %s: %d, body not JSON: %q", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// want fails unless status is want and, for errors, the body is {code: status, msg}.
func (sr *sessionRelay) want(what string, status int, body map[string]any, want int) {
	sr.t.Helper()
	if status != want {
		sr.t.Fatalf("%s: status %d, want %d (%v)", what, status, want, body)
	}
	if want >= 400 {
		if code, _ := body["code"].(float64); int(code) != want || body["msg"] == "" || body["msg"] == nil {
			sr.t.Fatalf("%s: error body %v, want {code:%d,msg}", what, body, want)
		}
	}
}

func (sr *sessionRelay) newSession(token, title string) int64 {
	sr.t.Helper()
	st, b := sr.call("POST", "/v1/chat/session", token, map[string]any{"session": map[string]any{"title": title}})
	sr.want("create session", st, b, 200)
	return int64(b["session"].(map[string]any)["id"].(float64))
}

func TestSessionAuthFailures(t *testing.T) {
	sr := newSessionRelay(t, nil)
	key := []byte(testJWTSecret)
	expired, _ := relay.IssueToken(key, sr.alice, time.Minute, time.Now().Add(-time.Hour))
	otherKey, _ := relay.IssueToken([]byte("some-other-secret-0123456789abcdefghij"), sr.alice, time.Hour, time.Now())
	ghost, _ := relay.IssueToken(key, store.User{ID: 9999, Name: "ghost"}, time.Hour, time.Now())
	for name, tok := range map[string]string{"no token": "", "bad signature": otherKey, "expired": expired, "garbage": "abc",
		"unknown user": ghost, "relay key": sr.Key} {
		st, b := sr.call("POST", "/v1/chat/session/search", tok, map[string]any{})
		sr.want(name, st, b, 401)
		if strings.Contains(fmt.Sprint(b), testJWTSecret) || (tok != "" && strings.Contains(fmt.Sprint(b), tok)) {
			t.Fatalf("%s: error echoes a secret: %v", name, b)
		}
	}
	// Every route of the surface wants a token.
	for _, r := range [][2]string{{"GET", "/v1/chat/models"}, {"POST", "/v1/chat/session"}, {"POST", "/v1/chat/spark_session"},
		{"GET", "/v1/chat/session/1"}, {"PUT", "/v1/chat/session/1"}, {"DELETE", "/v1/chat/session/1"},
		{"POST", "/v1/chat/session/rename"}, {"POST", "/v1/chat/session/my_spark_sessions"}, {"POST", "/v1/chat/session/records"},
		{"POST", "/v1/chat/session/add_files"}, {"POST", "/v1/chat/session/remove_files"}, {"POST", "/v1/chat/session/conversation"},
		{"GET", "/v1/chat/session/conversation"}, {"POST", "/v1/chat/data/session/search"}, {"GET", "/v1/chat/data/session/1"}} {
		st, b := sr.call(r[0], r[1], expired, map[string]any{})
		sr.want("expired token on "+r[0]+" "+r[1], st, b, 401)
	}
	// The WebSocket route without an upgrade: 426 in the surface's shape.
	st, b := sr.call("GET", "/v1/chat/session/conversation?sessionId=1", sr.aliceT, nil)
	sr.want("no upgrade", st, b, 426)
	// Admin-only routes: 403 for users, 200 for admins.
	st, b = sr.call("POST", "/v1/chat/data/session/search", sr.aliceT, map[string]any{})
	sr.want("user on data search", st, b, 403)
	st, b = sr.call("GET", "/v1/chat/data/session/1", sr.bobT, nil)
	sr.want("user on data get", st, b, 403)
	st, b = sr.call("POST", "/v1/chat/data/session/search", sr.admT, map[string]any{})
	sr.want("admin on data search", st, b, 200)
	// The OpenAI surface still takes relay keys, not JWTs.
	resp := sr.Post(sr.aliceT, `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`)
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("JWT on the OpenAI surface: %d", resp.StatusCode)
	}
}

func TestSessionNoSecretConfigured(t *testing.T) {
	t.Setenv("RELAY_JWT_SECRET", "")
	t.Setenv("RELAY_AUTH_JWT_SECRET", "")
	r := relaytest.Start(t, testKinds(), nil, demoChannel())
	sr := &sessionRelay{Relay: r, t: t, base: strings.TrimSuffix(r.URL, "/v1")}
	tok, _ := relay.IssueToken([]byte(testJWTSecret), store.User{ID: 1}, time.Hour, time.Now())
	st, b := sr.call("GET", "/v1/chat/models", tok, nil)
	sr.want("no secret", st, b, 503)
}

func TestSessionCRUDAndIsolation(t *testing.T) {
	sr := newSessionRelay(t, nil)
	// Models from config.
	st, b := sr.call("GET", "/v1/chat/models", sr.aliceT, nil)
	sr.want("models", st, b, 200)
	list := b["list"].([]any)
	if len(list) != 4 || list[0].(map[string]any)["code"] != "demo" || list[0].(map[string]any)["logo"] != "/demo.png" {
		t.Fatalf("models: %v", b)
	}
	// Create with a model, module and documents; read it back.
	st, b = sr.call("POST", "/v1/chat/session", sr.aliceT, map[string]any{"session": map[string]any{
		"title": "Trip", "model": map[string]any{"id": 1}, "documentIds": []int{7, 8}}})
	sr.want("save", st, b, 200)
	s := b["session"].(map[string]any)
	id := int64(s["id"].(float64))
	if s["module"].(float64) != 1 || s["type"] != "chat" || s["title"] != "Trip" || s["createdAt"].(float64) < 1e9 ||
		s["author"].(map[string]any)["name"] != "alice" || s["model"].(map[string]any)["code"] != "demo" {
		t.Fatalf("saved: %v", s)
	}
	path := fmt.Sprint("/v1/chat/session/", id)
	st, b = sr.call("GET", path, sr.aliceT, nil)
	sr.want("get", st, b, 200)
	if b["session"].(map[string]any)["title"] != "Trip" || len(b["records"].([]any)) != 0 || len(b["documents"].([]any)) != 2 || b["dataset"] != nil {
		t.Fatalf("get: %v", b)
	}
	// Bob sees none of it: 404 on every route naming Alice's session.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", path, nil}, {"PUT", path, map[string]any{"session": map[string]any{"title": "x"}}}, {"DELETE", path, nil},
		{"POST", "/v1/chat/session/rename", map[string]any{"id": id, "name": "pwned"}},
		{"POST", "/v1/chat/session/records", map[string]any{"sessionId": id}},
		{"POST", "/v1/chat/session/add_files", map[string]any{"id": id, "documentIds": []int{1}}},
		{"POST", "/v1/chat/session/conversation", map[string]any{"sessionId": id, "text": "hi"}},
	} {
		st, b := sr.call(c.method, c.path, sr.bobT, c.body)
		sr.want("bob "+c.method+" "+c.path, st, b, 404)
	}
	st, b = sr.call("POST", "/v1/chat/session/search", sr.bobT, map[string]any{})
	sr.want("bob search", st, b, 200)
	if b["total"].(float64) != 0 {
		t.Fatalf("bob's search: %v", b)
	}
	// Alice updates, renames, changes files.
	st, b = sr.call("PUT", path, sr.aliceT, map[string]any{"session": map[string]any{"abstract": "about a trip", "type": "spark_documents_chat"}})
	sr.want("update", st, b, 200)
	st, b = sr.call("POST", "/v1/chat/session/rename", sr.aliceT, map[string]any{"id": id, "name": "  Holiday  "})
	sr.want("rename", st, b, 200)
	st, b = sr.call("POST", "/v1/chat/session/remove_files", sr.aliceT, map[string]any{"id": id, "documentIds": []int{7}})
	sr.want("remove files", st, b, 200)
	st, b = sr.call("POST", "/v1/chat/session/add_files", sr.aliceT, map[string]any{"id": id, "documentIds": []int{9}})
	sr.want("add files", st, b, 200)
	_, b = sr.call("GET", path, sr.aliceT, nil)
	s = b["session"].(map[string]any)
	if s["title"] != "Holiday" || s["abstract"] != "about a trip" || s["type"] != "spark_documents_chat" || fmt.Sprint(s["documentIds"]) != "[8 9]" {
		t.Fatalf("after edits: %v", s)
	}
	// The admin reads Alice's session through data management, and finds it by user name.
	st, b = sr.call("GET", fmt.Sprint("/v1/chat/data/session/", id), sr.admT, nil)
	sr.want("admin get", st, b, 200)
	st, b = sr.call("POST", "/v1/chat/data/session/search", sr.admT, map[string]any{"userName": "ali", "beginTime": time.Now().Add(-time.Hour).Unix(), "endTime": time.Now().Unix()})
	sr.want("admin search", st, b, 200)
	if b["total"].(float64) != 1 || b["list"].([]any)[0].(map[string]any)["author"].(map[string]any)["name"] != "alice" {
		t.Fatalf("admin search: %v", b)
	}
	st, b = sr.call("GET", "/v1/chat/data/session/99999", sr.admT, nil)
	sr.want("admin get missing", st, b, 404)
	// 400s.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/chat/session/abc", nil},
		{"POST", "/v1/chat/session", `{"session":`},
		{"POST", "/v1/chat/session", map[string]any{"session": map[string]any{"module": 9}}},
		{"POST", "/v1/chat/session", map[string]any{"session": map[string]any{"type": "other"}}},
		{"POST", "/v1/chat/session", map[string]any{"session": map[string]any{"model": map[string]any{"id": 99}}}},
		{"POST", "/v1/chat/session", `{"session":{"title":5}}`},
		{"PUT", path, map[string]any{}},
		{"POST", "/v1/chat/session/rename", map[string]any{"id": id, "name": " "}},
		{"POST", "/v1/chat/session/rename", map[string]any{"name": "x"}},
		{"POST", "/v1/chat/session/records", map[string]any{}},
		{"POST", "/v1/chat/session/search", map[string]any{"page": -1}},
		{"POST", "/v1/chat/session/add_files", map[string]any{"id": id}},
		{"POST", "/v1/chat/data/session/search", map[string]any{"beginTime": 10, "endTime": 5}},
		{"POST", "/v1/chat/session/conversation", map[string]any{"text": "no session"}},
		{"POST", "/v1/chat/session/conversation", map[string]any{"sessionId": id}},
		{"POST", "/v1/chat/session/conversation", map[string]any{"sessionId": id, "text": "hi", "modelId": 99}},
		{"POST", "/v1/chat/session/conversation", map[string]any{"sessionId": id, "text": "hi", "contentType": "image"}},
	} {
		tok := sr.aliceT
		if strings.Contains(c.path, "/data/") {
			tok = sr.admT
		}
		st, b := sr.call(c.method, c.path, tok, c.body)
		sr.want(fmt.Sprint(c.method, " ", c.path, " ", c.body), st, b, 400)
	}
	// Spark routes work on module 2.
	st, b = sr.call("POST", "/v1/chat/spark_session", sr.aliceT, map[string]any{"session": map[string]any{"title": "docs", "datasetId": 5}})
	sr.want("spark save", st, b, 200)
	if s := b["session"].(map[string]any); s["module"].(float64) != 2 || s["type"] != "spark_dataset_chat" {
		t.Fatalf("spark session: %v", s)
	}
	st, b = sr.call("POST", "/v1/chat/session/my_spark_sessions", sr.aliceT, map[string]any{"module": 1})
	sr.want("my spark", st, b, 200)
	if b["total"].(float64) != 1 || b["list"].([]any)[0].(map[string]any)["title"] != "docs" {
		t.Fatalf("my spark: %v", b)
	}
	// Delete, then 404.
	st, b = sr.call("DELETE", path, sr.aliceT, nil)
	sr.want("delete", st, b, 200)
	st, b = sr.call("GET", path, sr.aliceT, nil)
	sr.want("get deleted", st, b, 404)
}

func TestSessionSearchPaging(t *testing.T) {
	sr := newSessionRelay(t, nil)
	for i := 0; i < 23; i++ {
		title := fmt.Sprint("chat ", i)
		if i == 3 {
			title = "50% off_sale"
		}
		sr.newSession(sr.aliceT, title)
	}
	var ids []float64
	for page := 1; page <= 3; page++ {
		st, b := sr.call("POST", "/v1/chat/session/search", sr.aliceT, map[string]any{"page": page, "size": 10})
		sr.want("search", st, b, 200)
		if b["total"].(float64) != 23 {
			t.Fatalf("total %v", b["total"])
		}
		for _, it := range b["list"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(float64))
		}
	}
	if len(ids) != 23 {
		t.Fatalf("paged %d", len(ids))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Fatalf("not newest first: %v", ids)
		}
	}
	_, b := sr.call("POST", "/v1/chat/session/search", sr.aliceT, map[string]any{"size": 1000})
	if len(b["list"].([]any)) != 23 {
		t.Fatalf("size 1000: %d", len(b["list"].([]any)))
	}
	for q, want := range map[string]float64{"%": 1, "_": 1, "' OR 1=1 --": 0, "chat": 22} {
		_, b := sr.call("POST", "/v1/chat/session/search", sr.aliceT, map[string]any{"title": q})
		if b["total"].(float64) != want {
			t.Errorf("title %q: %v, want %v", q, b["total"], want)
		}
	}
}

func TestSessionConversationTurns(t *testing.T) {
	sr := newSessionRelay(t, nil, demoChannel(), openaiChannel("broken", "http://127.0.0.1:1/v1", "broken"))
	id := sr.newSession(sr.aliceT, "")
	st, b := sr.call("POST", "/v1/chat/session/conversation", sr.aliceT, map[string]any{"sessionId": id, "modelId": 1, "contentType": "text", "text": "hello there"})
	sr.want("turn 1", st, b, 200)
	rec := b["record"].(map[string]any)
	if b["finished"] != true || fmt.Sprint(b["parts"]) != "[You said: hello there]" || rec["status"] != store.StatusSuccess ||
		rec["problemText"] != "hello there" || rec["answerText"] != "You said: hello there" || rec["sessionId"].(float64) != float64(id) ||
		rec["createAt"].(float64) < 1e9 || rec["model"].(map[string]any)["code"] != "demo" || rec["author"].(map[string]any)["name"] != "alice" {
		t.Fatalf("turn 1: %v", b)
	}
	// The second turn carries the first as context: the demo echoes the last user message, and the
	// request log shows a longer prompt.
	st, b = sr.call("POST", "/v1/chat/session/conversation", sr.aliceT, map[string]any{"sessionId": id, "text": "again"})
	sr.want("turn 2", st, b, 200)
	// A failing upstream: the record is stored as finished_fail and the answer is a 502-class error.
	st, b = sr.call("POST", "/v1/chat/session/conversation", sr.aliceT, map[string]any{"sessionId": id, "text": "break", "modelId": 3})
	if st < 500 || b["msg"] == nil {
		t.Fatalf("broken upstream: %d %v", st, b)
	}
	st, b = sr.call("POST", "/v1/chat/session/conversation", sr.aliceT, map[string]any{"sessionId": id, "text": "x", "modelId": 4})
	sr.want("unrouted model", st, b, 503)
	// Session: title from the first question, abstract from the first answer, three records.
	_, b = sr.call("GET", fmt.Sprint("/v1/chat/session/", id), sr.aliceT, nil)
	s := b["session"].(map[string]any)
	recs := b["records"].([]any)
	if s["title"] != "hello there" || s["abstract"] != "You said: hello there" || s["totalRecords"].(float64) != 3 || len(recs) != 3 {
		t.Fatalf("session after turns: %v", b)
	}
	if r := recs[0].(map[string]any); r["problemText"] != "break" || r["status"] != store.StatusFail {
		t.Fatalf("failed record: %v", r)
	}
	// Records paging.
	st, b = sr.call("POST", "/v1/chat/session/records", sr.aliceT, map[string]any{"sessionId": id, "page": 2, "size": 2})
	sr.want("records", st, b, 200)
	if b["total"].(float64) != 3 || len(b["list"].([]any)) != 1 || b["list"].([]any)[0].(map[string]any)["problemText"] != "hello there" {
		t.Fatalf("records page 2: %v", b)
	}
	// The session turns went through the core and are logged as surface "session"; the second turn's
	// prompt included the first turn.
	var prompts []int
	for _, row := range sr.Logs() {
		if row.Surface == "session" && row.Model == "demo" {
			prompts = append(prompts, row.Usage.PromptTokens)
		}
	}
	if len(prompts) != 2 || prompts[0] <= prompts[1] { // newest first
		t.Fatalf("session log rows (prompt tokens, newest first): %v", prompts)
	}
}

func TestSessionConversationSSEAndTimeout(t *testing.T) {
	sr := newSessionRelay(t, func(c *relay.Config) { c.Sessions.TurnTimeout = 300 * time.Millisecond },
		demoChannel(), slowDemo("slow", "100ms"))
	id := sr.newSession(sr.aliceT, "sse")
	req, _ := http.NewRequest("POST", sr.base+"/v1/chat/session/conversation", strings.NewReader(fmt.Sprintf(`{"sessionId":%d,"modelId":1,"text":"one two three"}`, id)))
	req.Header.Set("Authorization", "Bearer "+sr.aliceT)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("SSE: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	frames := sseFrames(t, resp.Body)
	resp.Body.Close()
	if len(frames) < 3 {
		t.Fatalf("frames: %v", frames)
	}
	var joined string
	for _, f := range frames[:len(frames)-1] {
		var fr struct {
			Parts    []string        `json:"parts"`
			Finished bool            `json:"finished"`
			Record   json.RawMessage `json:"record"`
		}
		if err := json.Unmarshal([]byte(f), &fr); err != nil || fr.Finished || fr.Record != nil || len(fr.Parts) != 1 {
			t.Fatalf("part frame %q", f)
		}
		joined += fr.Parts[0]
	}
	var last struct {
		Parts    []string       `json:"parts"`
		Finished bool           `json:"finished"`
		Record   map[string]any `json:"record"`
	}
	_ = json.Unmarshal([]byte(frames[len(frames)-1]), &last)
	if !last.Finished || last.Record["status"] != store.StatusSuccess || joined != "You said: one two three" || last.Parts[0] != joined {
		t.Fatalf("last frame %q (joined %q)", frames[len(frames)-1], joined)
	}
	// The slow model outlives the turn timeout: finished_timeout with the partial answer kept.
	st, b := sr.call("POST", "/v1/chat/session/conversation", sr.aliceT, map[string]any{"sessionId": id, "modelId": 2,
		"text": "a b c d e f g h i j k l m n o p"})
	if st != 504 {
		t.Fatalf("timeout turn: %d %v", st, b)
	}
	_, b = sr.call("POST", "/v1/chat/session/records", sr.aliceT, map[string]any{"sessionId": id, "size": 1})
	r := b["list"].([]any)[0].(map[string]any)
	if r["status"] != store.StatusTimeout || !strings.HasPrefix(r["answerText"].(string), "You said") {
		t.Fatalf("timed out record: %v", r)
	}
}

func wsURL(sr *sessionRelay, q string) string {
	return "ws" + strings.TrimPrefix(sr.base, "http") + "/v1/chat/session/conversation?" + q
}

type wsFrame struct {
	Parts    []string       `json:"parts"`
	Finished bool           `json:"finished"`
	Record   map[string]any `json:"record"`
	Code     int            `json:"code"`
	Msg      string         `json:"msg"`
}

func readFrame(t *testing.T, ctx context.Context, c *websocket.Conn) wsFrame {
	t.Helper()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("ws read: %v", err)
	}
	var f wsFrame
	if typ != websocket.MessageText || json.Unmarshal(data, &f) != nil {
		t.Fatalf("ws frame %v %q", typ, data)
	}
	return f
}

// readTurn reads part frames up to the final one and returns the joined parts and the final frame.
func readTurn(t *testing.T, ctx context.Context, c *websocket.Conn) (string, wsFrame) {
	t.Helper()
	var joined string
	for {
		f := readFrame(t, ctx, c)
		if f.Finished || f.Code != 0 {
			return joined, f
		}
		joined += strings.Join(f.Parts, "")
	}
}

func TestSessionConversationWebSocket(t *testing.T) {
	sr := newSessionRelay(t, nil, demoChannel(), slowDemo("slow", "50ms"))
	id := sr.newSession(sr.aliceT, "ws")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hdr := http.Header{"Authorization": {"Bearer " + sr.aliceT}}
	// Wrong session or no token: plain HTTP errors before the upgrade.
	if _, resp, err := websocket.Dial(ctx, wsURL(sr, fmt.Sprint("sessionId=", id)), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + sr.bobT}}}); err == nil || resp.StatusCode != 404 {
		t.Fatalf("bob's dial: %v %v", err, resp)
	}
	if _, resp, err := websocket.Dial(ctx, wsURL(sr, fmt.Sprint("sessionId=", id)), nil); err == nil || resp.StatusCode != 401 {
		t.Fatalf("no token: %v %v", err, resp)
	}
	c, _, err := websocket.Dial(ctx, wsURL(sr, fmt.Sprintf("sessionId=%d&modelId=1&contentType=text&text=first+turn", id)), &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	joined, final := readTurn(t, ctx, c)
	if joined != "You said: first turn" || final.Record["status"] != store.StatusSuccess || final.Parts[0] != joined {
		t.Fatalf("turn 1: %q %+v", joined, final)
	}
	// A text frame starts the next turn: plain text, then a JSON object.
	if err := c.Write(ctx, websocket.MessageText, []byte("second")); err != nil {
		t.Fatal(err)
	}
	if joined, final = readTurn(t, ctx, c); joined != "You said: second" || final.Record["problemText"] != "second" {
		t.Fatalf("turn 2: %q %+v", joined, final)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"text":"third","modelId":99}`)); err != nil {
		t.Fatal(err)
	}
	if _, final = readTurn(t, ctx, c); final.Code != 400 {
		t.Fatalf("bad model frame: %+v", final)
	}
	// A browser page of another origin is refused unless listed in sessions.ws_origins.
	evil := http.Header{"Authorization": {"Bearer " + sr.aliceT}, "Origin": {"http://evil.example"}}
	if _, resp, err := websocket.Dial(ctx, wsURL(sr, fmt.Sprint("sessionId=", id)), &websocket.DialOptions{HTTPHeader: evil}); err == nil || resp.StatusCode != 403 {
		t.Fatalf("cross-origin dial: %v %v", err, resp)
	}
	// The token may also come as ?token= (browsers cannot set headers on a WebSocket).
	c2, _, err := websocket.Dial(ctx, wsURL(sr, fmt.Sprintf("sessionId=%d&token=%s", id, sr.aliceT)), nil)
	if err != nil {
		t.Fatal(err)
	}
	c2.Close(websocket.StatusNormalClosure, "")
	// A slow turn: close the socket after the first part; the record ends finished_fail with the part kept.
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"text":"one two three four five six seven eight nine ten","modelId":2}`)); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, ctx, c); f.Finished || len(f.Parts) != 1 {
		t.Fatalf("first part: %+v", f)
	}
	c.Close(websocket.StatusNormalClosure, "bye")
	var r map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, b := sr.call("POST", "/v1/chat/session/records", sr.aliceT, map[string]any{"sessionId": id, "size": 1})
		r = b["list"].([]any)[0].(map[string]any)
		if r["status"] != store.StatusProcessing {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r["status"] != store.StatusFail || r["problemText"] != "one two three four five six seven eight nine ten" ||
		!strings.HasPrefix(r["answerText"].(string), "You") || strings.Contains(r["answerText"].(string), "ten") {
		t.Fatalf("closed turn record: %v", r)
	}
	// The upstream call was cancelled: its log row is a failure, not a completed answer.
	var found bool
	for _, row := range sr.Logs() {
		if row.Model == "slow" {
			found = true
			if row.Error == "" {
				t.Fatalf("cancelled turn logged without error: %+v", row)
			}
		}
	}
	if !found {
		t.Fatal("no log row for the cancelled turn")
	}
}

// Concurrent conversations in one session each get their own record.
func TestSessionConcurrentTurns(t *testing.T) {
	sr := newSessionRelay(t, nil)
	id := sr.newSession(sr.aliceT, "busy")
	var wg sync.WaitGroup
	errs := make(chan string, 20)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			b, _ := json.Marshal(map[string]any{"sessionId": id, "text": fmt.Sprint("q", i)})
			req, _ := http.NewRequest("POST", sr.base+"/v1/chat/session/conversation", strings.NewReader(string(b)))
			req.Header.Set("Authorization", "Bearer "+sr.aliceT)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			raw, _ := io.ReadAll(bufio.NewReader(resp.Body))
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(raw), fmt.Sprintf(`"You said: q%d"`, i)) {
				errs <- fmt.Sprint(resp.StatusCode, string(raw))
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	_, b := sr.call("POST", "/v1/chat/session/records", sr.aliceT, map[string]any{"sessionId": id, "size": 100})
	if b["total"].(float64) != 10 {
		t.Fatalf("records: %v", b["total"])
	}
	for _, r := range b["list"].([]any) {
		if r.(map[string]any)["status"] != store.StatusSuccess {
			t.Fatalf("record %v", r)
		}
	}
}

// OpenAI-surface calls with a key that belongs to a user land in that user's sessions (through the
// async writer): by X-Relay-Session, chat_id or user, else one-turn sessions. Keys without a user log
// nothing.
func TestSessionLoggingFromOpenAISurface(t *testing.T) {
	sr := newSessionRelay(t, nil)
	ctx := context.Background()
	secret := "sk-relay-test-" + adaptor.NewID("")
	if _, err := sr.Store.CreateKey(ctx, store.Key{Name: "alice-key", Prefix: secret[:12], Hash: relay.HashKey(secret), UserID: sr.alice.ID}); err != nil {
		t.Fatal(err)
	}
	post := func(body string, hdr map[string]string) {
		req, _ := http.NewRequest("POST", sr.URL+"/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("chat: %d", resp.StatusCode)
		}
	}
	post(`{"model":"demo","user":"u1","messages":[{"role":"user","content":"first question"}]}`, nil)
	post(`{"model":"demo","user":"u1","stream":true,"messages":[{"role":"user","content":"second"}]}`, nil)
	post(`{"model":"demo","messages":[{"role":"user","content":"by header"}]}`, map[string]string{"X-Relay-Session": "s-9"})
	post(`{"model":"demo","messages":[{"role":"user","content":"one off"}]}`, nil)
	post(`{"model":"demo","user":"u1","messages":[{"role":"user","content":"not logged"}]}`, nil)
	// the last one used alice's key too; the unowned test key logs nothing:
	resp := sr.Post(sr.Key, `{"model":"demo","messages":[{"role":"user","content":"anonymous"}]}`)
	resp.Body.Close()
	// The writer is asynchronous: wait until all three sessions and the three turns of the first are in.
	var b, u1 map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, b = sr.call("POST", "/v1/chat/session/search", sr.aliceT, map[string]any{})
		u1 = nil
		for _, it := range b["list"].([]any) {
			if m := it.(map[string]any); m["title"] == "first question" {
				u1 = m
			}
		}
		if b["total"].(float64) >= 3 && u1 != nil && u1["totalRecords"].(float64) >= 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b["total"].(float64) != 3 {
		t.Fatalf("alice's sessions: %v", b)
	}
	if u1 == nil || u1["totalRecords"].(float64) != 3 || u1["abstract"] != "You said: first question" {
		t.Fatalf("u1 session: %v", b)
	}
	_, b = sr.call("POST", "/v1/chat/session/records", sr.aliceT, map[string]any{"sessionId": u1["id"]})
	recs := b["list"].([]any)
	if r := recs[1].(map[string]any); r["problemText"] != "second" || r["answerText"] != "You said: second" || r["status"] != store.StatusSuccess || r["modelId"].(float64) != 1 {
		t.Fatalf("streamed record: %v", r)
	}
	_, b = sr.call("POST", "/v1/chat/session/search", sr.bobT, map[string]any{})
	if b["total"].(float64) != 0 {
		t.Fatalf("bob sees %v", b)
	}
	_, b = sr.call("POST", "/v1/chat/data/session/search", sr.admT, map[string]any{})
	if b["total"].(float64) != 3 {
		t.Fatalf("all sessions: %v (the unowned key must log none)", b["total"])
	}
}

// A relay that stops mid-answer leaves no record processing: the session turn and the OpenAI-surface
// turn of a user-owned key both end finished_fail with the partial answer, and the async writer's queue
// is drained before the store closes.
func TestSessionShutdownMidAnswer(t *testing.T) {
	sr := newSessionRelay(t, func(c *relay.Config) { c.Server.ShutdownGrace = 200 * time.Millisecond }, demoChannel(), slowDemo("slow", "100ms"))
	ctx := context.Background()
	id := sr.newSession(sr.aliceT, "stopping")
	secret := "sk-relay-test-" + adaptor.NewID("")
	if _, err := sr.Store.CreateKey(ctx, store.Key{Name: "alice-key", Prefix: secret[:12], Hash: relay.HashKey(secret), UserID: sr.alice.ID}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("word ", 60)
	// A streaming session turn and a streaming OpenAI-surface call, both slow.
	req, _ := http.NewRequest("POST", sr.base+"/v1/chat/session/conversation", strings.NewReader(fmt.Sprintf(`{"sessionId":%d,"modelId":2,"text":%q}`, id, long)))
	req.Header.Set("Authorization", "Bearer "+sr.aliceT)
	req.Header.Set("Accept", "text/event-stream")
	resp1, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp1.Body.Close()
	req, _ = http.NewRequest("POST", sr.URL+"/chat/completions", strings.NewReader(fmt.Sprintf(`{"model":"slow","stream":true,"user":"u7","messages":[{"role":"user","content":%q}]}`, long)))
	req.Header.Set("Authorization", "Bearer "+secret)
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	// Wait until both have sent text.
	for _, r := range []io.Reader{resp1.Body, resp2.Body} {
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended early: %v", err)
			}
			if strings.Contains(line, `"parts":["You`) || strings.Contains(line, `"content":"You`) {
				break
			}
		}
	}
	sr.Close()
	st, err := sqlite.Open(sr.Path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, _, err := st.ListRecords(ctx, sr.alice.ID, id, 1, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("records: %v %v", recs, err)
	}
	if r := recs[0]; r.Status != store.StatusFail || !strings.HasPrefix(r.AnswerText, "You said") || len(r.AnswerText) >= len("You said: "+long) {
		t.Fatalf("session turn after stop: %+v", r)
	}
	logged, err := st.SessionByExtID(ctx, sr.alice.ID, store.ModuleChat, "user:u7")
	if err != nil {
		t.Fatalf("OpenAI-surface turn not logged before the store closed: %v", err)
	}
	recs, _, _ = st.ListRecords(ctx, sr.alice.ID, logged.ID, 1, 10)
	if len(recs) != 1 || recs[0].Status != store.StatusFail || !strings.HasPrefix(recs[0].AnswerText, "You said") {
		t.Fatalf("OpenAI-surface turn after stop: %+v", recs)
	}
}

// panickyStore panics in SearchSessions, to see the surface's recovery answer in its own shape.
type panickyStore struct{ store.Store }

func (panickyStore) SearchSessions(context.Context, store.SessionFilter) ([]store.Session, int64, error) {
	panic("boom")
}

func TestSessionPanicAnswersInSurfaceShape(t *testing.T) {
	cfg, err := relay.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth.JWT.Secret = testJWTSecret
	st, err := sqlite.Open(t.TempDir()+"/relay.db", sqlite.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, _ := st.CreateUser(context.Background(), store.User{Name: "p"})
	tok, _ := relay.IssueToken([]byte(testJWTSecret), u, time.Hour, time.Now())
	srv := relay.NewServer(cfg, panickyStore{st}, nil, quietLog())
	req := httptest.NewRequest("POST", "/v1/chat/session/search", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != 500 || strings.TrimSpace(rec.Body.String()) != `{"code":500,"msg":"internal error"}` {
		t.Fatalf("panic answer: %d %s", rec.Code, rec.Body.String())
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
