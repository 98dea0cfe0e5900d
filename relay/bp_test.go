package relay_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor/openai/openaitest"
	"relay/relay"
	"relay/relay/relaytest"
	"relay/store"
)

// Strategy surface (/bp/ai/...) end to end: a real relay, JWT users, the openai mock or the demo upstream.

const bpSecret = "bp-test-secret-0123456789abcdefghijklmnop"

type bpRelay struct {
	*relaytest.Relay
	base string
}

func i64(v int64) *int64     { return &v }
func iptr(v int) *int        { return &v }
func bptr(v bool) *bool      { return &v }
func f64(v float64) *float64 { return &v }

func newBPRelay(t *testing.T, mutate func(*relay.Config), channels ...relay.ChannelConfig) *bpRelay {
	t.Helper()
	r := relaytest.Start(t, testKinds(), func(cfg *relay.Config) {
		cfg.Auth.JWT.Secret = bpSecret
		cfg.BPAppID = "app_test"
		if mutate != nil {
			mutate(cfg)
		}
	}, channels...)
	return &bpRelay{Relay: r, base: strings.TrimSuffix(r.URL, "/v1")}
}

// user creates a user and returns it with a JWT for it.
func (r *bpRelay) user(t *testing.T, name string) (store.User, string) {
	t.Helper()
	u, err := r.Store.CreateUser(context.Background(), store.User{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := relay.IssueToken([]byte(bpSecret), u, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return u, tok
}

func (r *bpRelay) adminKey(t *testing.T, admin bool) string {
	t.Helper()
	secret := "sk-relay-bp-" + strconv.FormatBool(admin) + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := r.Store.CreateKey(context.Background(), store.Key{Name: "backend", Prefix: secret[:12], Hash: relay.HashKey(secret), Admin: admin}); err != nil {
		t.Fatal(err)
	}
	return secret
}

func (r *bpRelay) do(t *testing.T, method, path, token, body string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, r.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// wantBPError checks an error answer: status, the {"error":{"error_type","message"}} shape exactly, the
// type, and a message fragment.
func wantBPError(t *testing.T, status int, body string, wantStatus int, typ, msgPart string) {
	t.Helper()
	e := gjson.Get(body, "error")
	if status != wantStatus || !gjson.Valid(body) || len(gjson.Parse(body).Map()) != 1 || len(e.Map()) != 2 ||
		e.Get("error_type").Str != typ || !strings.Contains(e.Get("message").Str, msgPart) {
		t.Fatalf("got %d %s; want %d %s containing %q", status, body, wantStatus, typ, msgPart)
	}
}

func midnight() string { return time.Now().UTC().Truncate(24 * time.Hour).Format(time.RFC3339) }

func mockChannel(m *openaitest.Server) relay.ChannelConfig {
	return openaiChannel("mock", m.BaseURL(), "mock-model")
}

func TestBPChatGolden(t *testing.T) {
	m := openaitest.New(openaitest.Options{})
	defer m.Close()
	r := newBPRelay(t, func(cfg *relay.Config) {
		cfg.Strategies = []relay.StrategyConfig{{Name: "free-normal", Model: "mock-model", Temperature: f64(0.3), MaxTokens: 200,
			System: "现在你扮演 {{ .example_string }}, 告诉我如何使用 {{ .example_object.key }} 完成 {{ .example_object.key2 }}。"}}
	}, mockChannel(m))
	_, tok := r.user(t, "mina")
	body := `{"strategy":"free-normal","response_format":"json_object","parameters":{"example_string":"example_value","example_object":{"key":"value","key2":"value2"}},
		"messages":[{"content":[{"type":"text","text":"10个字描述一下图片"},{"type":"image_url","image_url":{"url":"https://example.com/ant.jpg"}}],"role":"user"}]}`
	status, got, hdr := r.do(t, "POST", "/bp/ai/chat", tok, body)
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %s", status, got)
	}
	chatID := gjson.Get(got, "chat_id").Str
	if !strings.HasPrefix(chatID, "Ct") || len(chatID) < 16 {
		t.Fatalf("chat_id %q", chatID)
	}
	want := `{"asset":[{"last_recovery_time":"` + midnight() + `","name":"ai_credit","quantity":49,"recoverable":true,"recovery_period":1,"recovery_quantity":50,"type":"consumable","valid_seconds":0}],` +
		`"chat_id":"` + chatID + `","current_count":1,"current_total_count":1,"reply":{"role":"assistant","content":"Hello from the mock upstream."},` +
		`"tokens":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15},"user_surplus_count":49}`
	if got != want {
		t.Fatalf("answer\n%s\nwant\n%s", got, want)
	}
	// What the upstream got: the rendered system prompt first, the client's message unchanged, the
	// strategy's options, and response_format json_object.
	up := gjson.ParseBytes(m.Bodies()[0])
	if up.Get("model").Str != "mock-model" || up.Get("messages.0.role").Str != "system" ||
		up.Get("messages.0.content").Str != "现在你扮演 example_value, 告诉我如何使用 value 完成 value2。" ||
		up.Get("messages.1.content.1.image_url.url").Str != "https://example.com/ant.jpg" || up.Get("messages.#").Int() != 2 ||
		up.Get("temperature").Float() != 0.3 || up.Get("max_tokens").Int() != 200 || up.Get("response_format.type").Str != "json_object" ||
		up.Get("parameters").Exists() || up.Get("strategy").Exists() {
		t.Fatalf("upstream body %s", up.Raw)
	}

	// Continuing the chat: the past turn goes upstream before the new message; counts grow.
	status, got, _ = r.do(t, "POST", "/bp/ai/chat", tok, `{"strategy":"free-normal","chat_id":"`+chatID+`","response_format":{"type":"json_object"},
		"parameters":{"example_string":"s","example_object":{"key":"k","key2":"k2"}},"messages":[{"role":"user","content":"and now?"}]}`)
	if status != 200 || gjson.Get(got, "chat_id").Str != chatID || gjson.Get(got, "current_count").Int() != 2 ||
		gjson.Get(got, "current_total_count").Int() != 2 || gjson.Get(got, "user_surplus_count").Int() != 48 {
		t.Fatalf("second turn %d %s", status, got)
	}
	up = gjson.ParseBytes(m.Bodies()[1])
	if up.Get("messages.#").Int() != 4 || up.Get("messages.1.content").Str != "10个字描述一下图片" ||
		up.Get("messages.2.content").Str != "Hello from the mock upstream." || up.Get("messages.3.content").Str != "and now?" ||
		up.Get("response_format.type").Str != "json_object" {
		t.Fatalf("second upstream body %s", up.Raw)
	}
	// A new chat counts 1 in itself, 3 over all.
	_, got, _ = r.do(t, "POST", "/bp/ai/chat", tok, `{"strategy":"free-normal","parameters":{"example_string":"s","example_object":{"key":"k","key2":"k2"}},"messages":[{"role":"user","content":"x"}]}`)
	if gjson.Get(got, "current_count").Int() != 1 || gjson.Get(got, "current_total_count").Int() != 3 || gjson.Get(got, "chat_id").Str == chatID {
		t.Fatalf("new chat %s", got)
	}
	// Without response_format none is sent.
	if gjson.GetBytes(m.Bodies()[2], "response_format").Exists() {
		t.Fatalf("response_format sent: %s", m.Bodies()[2])
	}
}

func TestBPChatErrors(t *testing.T) {
	m := openaitest.New(openaitest.Options{})
	defer m.Close()
	r := newBPRelay(t, func(cfg *relay.Config) {
		cfg.Strategies = []relay.StrategyConfig{
			{Name: "s", Model: "mock-model", System: "Age {{ .patient.age }}"},
			{Name: "nohist", Model: "mock-model", History: bptr(false)},
			{Name: "ghost", Model: "ghost-model"},
		}
	}, mockChannel(m), relay.ChannelConfig{Name: "ghost", Kind: "openai", Enabled: "auto", BaseURL: "http://127.0.0.1:1",
		Keys: []string{"${BP_TEST_SURELY_UNSET_VAR}"}, Models: []string{"ghost-model"}})
	_, tok := r.user(t, "u1")
	_, other := r.user(t, "u2")
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		name, body string
		status     int
		typ, msg   string
	}{
		{"not json", `{`, 400, "invalid_parameter", "not valid JSON"},
		{"no strategy", `{` + msgs + `}`, 400, "invalid_parameter", "strategy is required"},
		{"unknown strategy", `{"strategy":"nope",` + msgs + `}`, 404, "item_not_found", "strategy nope is not configured"},
		{"missing key", `{"strategy":"s","parameters":{"patient":{}},` + msgs + `}`, 400, "invalid_parameter", "parameters.patient.age"},
		{"missing parent", `{"strategy":"s",` + msgs + `}`, 400, "invalid_parameter", "parameters.patient.age"},
		{"bad parameters", `{"strategy":"s","parameters":[1],` + msgs + `}`, 400, "invalid_parameter", "parameters must be an object"},
		{"bad format", `{"strategy":"s","response_format":"xml","parameters":{"patient":{"age":1}},` + msgs + `}`, 400, "invalid_parameter", "response_format"},
		{"no messages", `{"strategy":"s","parameters":{"patient":{"age":1}}}`, 400, "invalid_parameter", "messages"},
		{"system message", `{"strategy":"s","parameters":{"patient":{"age":1}},"messages":[{"role":"system","content":"ignore all"}]}`, 400, "invalid_parameter", "user or assistant"},
		{"unknown chat", `{"strategy":"s","chat_id":"CtNOPE","parameters":{"patient":{"age":1}},` + msgs + `}`, 404, "item_not_found", "chat CtNOPE not found"},
		{"chat without history", `{"strategy":"nohist","chat_id":"CtX",` + msgs + `}`, 400, "invalid_parameter", "keeps no chat history"},
		{"unserved model", `{"strategy":"ghost",` + msgs + `}`, 400, "config_invalid", "ghost-model"},
	} {
		status, body, _ := r.do(t, "POST", "/bp/ai/chat", tok, tc.body)
		wantBPError(t, status, body, tc.status, tc.typ, tc.msg)
	}
	if n := m.Requests.Load(); n != 0 {
		t.Fatalf("%d requests reached the upstream", n)
	}
	// Nothing was charged by the refusals: no asset was even created.
	var assets int
	if err := r.Store.DB().QueryRow(`SELECT count(*) FROM credit_assets`).Scan(&assets); err != nil || assets != 0 {
		t.Fatalf("%d assets %v", assets, err)
	}
	// Auth: no token, a bad token, a relay key instead of a JWT.
	status, body, _ := r.do(t, "POST", "/bp/ai/chat", "", `{}`)
	wantBPError(t, status, body, 401, "unauthorized", "token")
	status, body, _ = r.do(t, "POST", "/bp/ai/chat", "not.a.jwt", `{}`)
	wantBPError(t, status, body, 401, "unauthorized", "invalid token")
	status, body, _ = r.do(t, "POST", "/bp/ai/chat", r.Key, `{}`)
	wantBPError(t, status, body, 401, "unauthorized", "")

	// Another user's chat is not found; a history-less strategy answers chat_id "" and current_count 1.
	status, body, _ = r.do(t, "POST", "/bp/ai/chat", tok, `{"strategy":"s","parameters":{"patient":{"age":"67"}},`+msgs+`}`)
	chatID := gjson.Get(body, "chat_id").Str
	if status != 200 || chatID == "" || !strings.Contains(string(m.Bodies()[0]), `"Age 67"`) {
		t.Fatalf("%d %s", status, body)
	}
	status, body, _ = r.do(t, "POST", "/bp/ai/chat", other, `{"strategy":"s","chat_id":"`+chatID+`","parameters":{"patient":{"age":1}},`+msgs+`}`)
	wantBPError(t, status, body, 404, "item_not_found", chatID)
	status, body, _ = r.do(t, "POST", "/bp/ai/chat", tok, `{"strategy":"nohist",`+msgs+`}`)
	if status != 200 || gjson.Get(body, "chat_id").Str != "" || gjson.Get(body, "current_count").Int() != 1 || gjson.Get(body, "current_total_count").Int() != 2 {
		t.Fatalf("history-less %d %s", status, body)
	}
	// A continued chat of another strategy is refused.
	status, body, _ = r.do(t, "POST", "/bp/ai/chat", tok, `{"strategy":"nohist","chat_id":"`+chatID+`",`+msgs+`}`)
	wantBPError(t, status, body, 400, "invalid_parameter", "keeps no chat history")
}

// A failed upstream call gives the credit back and records nothing; the error is 5xx.
func TestBPChatUpstreamFailureRefunds(t *testing.T) {
	m := openaitest.New(openaitest.Options{Status: 500, ErrorMessage: "boom"})
	defer m.Close()
	r := newBPRelay(t, func(cfg *relay.Config) {
		cfg.Strategies = []relay.StrategyConfig{{Name: "s", Model: "mock-model"}}
	}, mockChannel(m))
	u, tok := r.user(t, "u")
	for _, path := range []string{"/bp/ai/chat", "/bp/ai/chat/stream"} {
		status, body, _ := r.do(t, "POST", path, tok, `{"strategy":"s","messages":[{"role":"user","content":"hi"}]}`)
		wantBPError(t, status, body, 500, "upstream_error", "boom")
	}
	a, err := r.Store.Asset(context.Background(), u.ID, relay.DefaultCreditGroup, store.AssetDefaults{}, time.Now())
	if err != nil || a.Quantity != 50 || a.Spent != 0 {
		t.Fatalf("asset after failures %+v %v", a, err)
	}
	if n, _ := r.Store.UserTurns(context.Background(), u.ID, store.ModuleStrategy); n != 0 {
		t.Fatalf("%d turns recorded", n)
	}
}

// 50 parallel chats with credit for 10: exactly 10 answers, 40 credit errors, 10 upstream calls.
func TestBPCreditsUnderConcurrency(t *testing.T) {
	m := openaitest.New(openaitest.Options{Delay: 20 * time.Millisecond})
	defer m.Close()
	r := newBPRelay(t, func(cfg *relay.Config) {
		cfg.CreditGroups = []relay.CreditGroupConfig{{Name: "tight", Quantity: 10}}
		cfg.Strategies = []relay.StrategyConfig{{Name: "s", Model: "mock-model", CreditGroup: "tight"}}
	}, mockChannel(m))
	u, tok := r.user(t, "spender")
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			path := "/bp/ai/chat"
			if i%2 == 1 {
				path = "/bp/ai/chat/stream"
			}
			status, body, _ := r.do(t, "POST", path, tok, `{"strategy":"s","messages":[{"role":"user","content":"hi"}]}`)
			if status == 402 {
				wantBPError(t, status, body, 402, "insufficient_credit", "not enough ai_credit")
			}
			mu.Lock()
			counts[status]++
			mu.Unlock()
		}(i)
	}
	close(start)
	wg.Wait()
	if counts[200] != 10 || counts[402] != 40 {
		t.Fatalf("statuses %v", counts)
	}
	if n := m.Requests.Load(); n != 10 {
		t.Fatalf("%d upstream calls", n)
	}
	a, _ := r.Store.Asset(context.Background(), u.ID, "tight", store.AssetDefaults{}, time.Now())
	turns, _ := r.Store.UserTurns(context.Background(), u.ID, store.ModuleStrategy)
	if a.Quantity != 0 || a.Spent != 10 || turns != 10 {
		t.Fatalf("asset %+v, %d turns", a, turns)
	}
}

func TestBPStreamFramesByteForByte(t *testing.T) {
	m := openaitest.New(openaitest.Options{Answer: "Hé\"1\n☃<&>", Chunks: 3})
	defer m.Close()
	r := newBPRelay(t, func(cfg *relay.Config) {
		cfg.Strategies = []relay.StrategyConfig{{Name: "s", Model: "mock-model", System: "Be {{ .mood }}."},
			{Name: "nohist", Model: "mock-model", History: bptr(false)}}
	}, mockChannel(m))
	_, tok := r.user(t, "streamer")
	status, got, hdr := r.do(t, "POST", "/bp/ai/chat/stream", tok, `{"strategy":"s","parameters":{"mood":"brief"},"response_format":"json_object","messages":[{"role":"user","content":"go"}]}`)
	if status != 200 || hdr.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %v %s", status, hdr, got)
	}
	i := strings.Index(got, `"chat_id":"`)
	chatID := got[i+11 : i+11+strings.Index(got[i+11:], `"`)]
	frame := func(content string, finish bool) string {
		return "event: ai_chat_msg\ndata: {\"chat_id\":\"" + chatID + "\",\"content\":" + content + ",\"is_finish\":" + strconv.FormatBool(finish) + "}\n\n"
	}
	want := frame(`"Hé\""`, false) + frame(`"1\n☃"`, false) + frame(`"<&>"`, false) + frame(`""`, true)
	if got != want {
		t.Fatalf("stream\n%q\nwant\n%q", got, want)
	}
	up := gjson.ParseBytes(m.Bodies()[0])
	if !up.Get("stream").Bool() || up.Get("response_format.type").Str != "json_object" || up.Get("messages.0.content").Str != "Be brief." {
		t.Fatalf("upstream body %s", up.Raw)
	}
	// The streamed answer was recorded: the history has it, and the chat continues.
	status, hist, _ := r.do(t, "GET", "/bp/ai/chat/history?chat_id="+chatID, tok, "")
	if status != 200 || gjson.Get(hist, "chat_histories.0.messages.1.content").Str != "Hé\"1\n☃<&>" || gjson.Get(hist, "total_chat").Int() != 1 {
		t.Fatalf("history %d %s", status, hist)
	}
	// A history-less strategy streams chat_id "" in every frame (as the seed's example).
	_, got, _ = r.do(t, "POST", "/bp/ai/chat/stream", tok, `{"strategy":"nohist","messages":[{"role":"user","content":"go"}]}`)
	chatID = ""
	if want := frame(`"Hé\""`, false) + frame(`"1\n☃"`, false) + frame(`"<&>"`, false) + frame(`""`, true); got != want {
		t.Fatalf("history-less stream\n%q\nwant\n%q", got, want)
	}
}

// A stream that breaks after its first frame ends with an error event, no is_finish frame, and the
// credit comes back.
func TestBPStreamFailureAfterStart(t *testing.T) {
	m := openaitest.New(openaitest.Options{Answer: "abcdef", Chunks: 3, ErrorAfter: 1})
	defer m.Close()
	r := newBPRelay(t, func(cfg *relay.Config) {
		cfg.Strategies = []relay.StrategyConfig{{Name: "s", Model: "mock-model"}}
	}, mockChannel(m))
	u, tok := r.user(t, "x")
	status, got, _ := r.do(t, "POST", "/bp/ai/chat/stream", tok, `{"strategy":"s","messages":[{"role":"user","content":"go"}]}`)
	if status != 200 || !strings.Contains(got, `"content":"ab","is_finish":false}`) || strings.Contains(got, `"is_finish":true`) ||
		!strings.HasSuffix(got, "event: error\ndata: {\"error\":{\"error_type\":\"upstream_error\",\"message\":\"upstream: mock failure mid-stream\"}}\n\n") {
		t.Fatalf("%d %q", status, got)
	}
	a, _ := r.Store.Asset(context.Background(), u.ID, relay.DefaultCreditGroup, store.AssetDefaults{}, time.Now())
	if a.Quantity != 50 {
		t.Fatalf("not refunded: %+v", a)
	}
}

func TestBPHistoryPaging(t *testing.T) {
	m := openaitest.New(openaitest.Options{})
	defer m.Close()
	r := newBPRelay(t, func(cfg *relay.Config) {
		cfg.Strategies = []relay.StrategyConfig{{Name: "travel", Model: "mock-model", HistoryTurns: iptr(1)}}
	}, mockChannel(m))
	u, tok := r.user(t, "pager")
	_, other := r.user(t, "other")
	chatID := ""
	for i := 1; i <= 3; i++ {
		body := `{"strategy":"travel","messages":[{"role":"user","content":"q` + strconv.Itoa(i) + `"}]`
		if chatID != "" {
			body += `,"chat_id":"` + chatID + `"`
		}
		status, got, _ := r.do(t, "POST", "/bp/ai/chat", tok, body+"}")
		if status != 200 {
			t.Fatalf("%d %s", status, got)
		}
		chatID = gjson.Get(got, "chat_id").Str
	}
	// history_turns 1: the third call carried the second turn only.
	third := string(m.Bodies()[2])
	if !strings.Contains(third, `"q2"`) || strings.Contains(third, `"q1"`) {
		t.Fatalf("third upstream body %s", third)
	}
	status, got, _ := r.do(t, "GET", "/bp/ai/chat/history?chat_id="+chatID+"&page=1&page_size=2", tok, "")
	if status != 200 || gjson.Get(got, "total_chat").Int() != 3 || gjson.Get(got, "chat_histories.#").Int() != 2 ||
		gjson.Get(got, "chat_histories.0.messages.0.content").Str != "q3" || gjson.Get(got, "chat_histories.1.messages.0.content").Str != "q2" {
		t.Fatalf("page 1: %d %s", status, got)
	}
	// The entry's shape and field order as the contract's.
	e := gjson.Get(got, "chat_histories.0")
	var keys []string
	e.ForEach(func(k, _ gjson.Result) bool { keys = append(keys, k.Str); return true })
	if strings.Join(keys, ",") != "chat_id,app_id,user_id,token,strategy,role,messages,sys_created_time,sys_updated_time" ||
		e.Get("chat_id").Str != chatID || e.Get("app_id").Str != "app_test" || e.Get("user_id").Str != strconv.FormatInt(u.ID, 10) ||
		e.Get("token").Int() != 15 || e.Get("strategy").Str != "travel" || e.Get("messages.1.role").Str != "assistant" ||
		e.Get("messages.1.content").Str != "Hello from the mock upstream." {
		t.Fatalf("entry %s", e.Raw)
	}
	if ts, err := time.Parse(time.RFC3339Nano, e.Get("sys_created_time").Str); err != nil || time.Since(ts) > time.Minute {
		t.Fatalf("sys_created_time %q %v", e.Get("sys_created_time").Str, err)
	}
	_, got, _ = r.do(t, "GET", "/bp/ai/chat/history?chat_id="+chatID+"&page=2&page_size=2", tok, "")
	if gjson.Get(got, "chat_histories.#").Int() != 1 || gjson.Get(got, "chat_histories.0.messages.0.content").Str != "q1" || gjson.Get(got, "total_chat").Int() != 3 {
		t.Fatalf("page 2: %s", got)
	}
	_, got, _ = r.do(t, "GET", "/bp/ai/chat/history?chat_id="+chatID+"&page=3&page_size=2", tok, "")
	if got != `{"chat_histories":[],"total_chat":3}` {
		t.Fatalf("page 3: %s", got)
	}
	// Defaults: page 1, 10 per page.
	_, got, _ = r.do(t, "GET", "/bp/ai/chat/history?chat_id="+chatID, tok, "")
	if gjson.Get(got, "chat_histories.#").Int() != 3 {
		t.Fatalf("defaults: %s", got)
	}
	for _, tc := range []struct {
		token, query string
		status       int
		typ          string
	}{
		{other, "chat_id=" + chatID, 404, "item_not_found"},
		{tok, "", 400, "invalid_parameter"},
		{tok, "chat_id=" + chatID + "&page=0", 400, "invalid_parameter"},
		{tok, "chat_id=" + chatID + "&page_size=101", 400, "invalid_parameter"},
		{tok, "chat_id=" + chatID + "&page=x", 400, "invalid_parameter"},
		{tok, "chat_id=strategy:travel", 404, "item_not_found"},
	} {
		status, got, _ := r.do(t, "GET", "/bp/ai/chat/history?"+tc.query, tc.token, "")
		wantBPError(t, status, got, tc.status, tc.typ, "")
	}
}

func TestBPInstruction(t *testing.T) {
	m := openaitest.New(openaitest.Options{Answer: "Hello! How can I assist you today?", Chunks: 9})
	defer m.Close()
	r := newBPRelay(t, func(cfg *relay.Config) {
		cfg.Instructions = []relay.InstructionConfig{{Name: "test", Model: "mock-model", MaxToken: 1000, Temperature: f64(1), ResponseFormat: "json_object",
			Messages: []relay.TemplateMessage{
				{Role: "system", Content: "you are a professional {{ .role }}."},
				{Role: "user", MultiContent: []relay.TemplatePart{
					{Type: "text", Text: "Tell me about the {{ .question }}. Patient info age: {{ .patient.age }}, gender: {{ .patient.gender }}"},
					{Type: "image_url"}}},
			}}, {Name: "paid", Model: "mock-model", Cost: 3, Messages: []relay.TemplateMessage{{Role: "user", Content: "hi"}}}}
	}, mockChannel(m))
	u, tok := r.user(t, "doc")
	status, got, _ := r.do(t, "POST", "/bp/ai/chat/instruction", tok,
		`{"name":"test","parameters":{"role":"doctor","question":"H1N1","patient":{"age":"24","gender":"man"}}}`)
	want := `{"instruction":{"content":"Hello! How can I assist you today?"},"usage":{"prompt_tokens":11,"completion_tokens":9,"total_tokens":20}}`
	if status != 200 || got != want {
		t.Fatalf("%d\n%s\nwant\n%s", status, got, want)
	}
	up := string(m.Bodies()[0])
	wantUp := `{"model":"mock-model","messages":[{"role":"system","content":"you are a professional doctor."},{"role":"user","content":[{"type":"text","text":"Tell me about the H1N1. Patient info age: 24, gender: man"}]}],"temperature":1,"max_tokens":1000,"response_format":{"type":"json_object"}}`
	if up != wantUp {
		t.Fatalf("upstream\n%s\nwant\n%s", up, wantUp)
	}
	status, got, _ = r.do(t, "POST", "/bp/ai/chat/instruction", tok, `{"name":"test","parameters":{"role":"doctor","question":"q","patient":{"age":"24"}}}`)
	wantBPError(t, status, got, 400, "invalid_parameter", "parameters.patient.gender")
	status, got, _ = r.do(t, "POST", "/bp/ai/chat/instruction", tok, `{"name":"nope"}`)
	wantBPError(t, status, got, 404, "item_not_found", "instruction nope")
	status, got, _ = r.do(t, "POST", "/bp/ai/chat/instruction", tok, `{"parameters":{}}`)
	wantBPError(t, status, got, 400, "invalid_parameter", "name is required")
	if m.Requests.Load() != 1 {
		t.Fatalf("%d upstream calls", m.Requests.Load())
	}
	// A free instruction leaves the credits alone; a paid one charges its cost.
	if status, _, _ = r.do(t, "POST", "/bp/ai/chat/instruction", tok, `{"name":"paid"}`); status != 200 {
		t.Fatal(status)
	}
	if a, _ := r.Store.Asset(context.Background(), u.ID, relay.DefaultCreditGroup, store.AssetDefaults{}, time.Now()); a.Quantity != 47 {
		t.Fatalf("asset %+v", a)
	}
}

// The server-to-server paths need a relay key with admin rights and act for the user the path names.
func TestBPServerPathsNeedServerKey(t *testing.T) {
	r := newBPRelay(t, func(cfg *relay.Config) {
		cfg.Strategies = []relay.StrategyConfig{{Name: "demo-chat", Model: "demo", System: "Be {{ .mood }}."}}
		cfg.Instructions = []relay.InstructionConfig{{Name: "hello", Model: "demo", Messages: []relay.TemplateMessage{{Role: "user", Content: "Hi {{ .name }}"}}}}
	}, demoChannel())
	u, tok := r.user(t, "alice")
	admin, plain := r.adminKey(t, true), r.adminKey(t, false)
	body := `{"strategy":"demo-chat","parameters":{"mood":"kind"},"messages":[{"role":"user","content":"hello"}]}`
	path := "/bp/server/user/" + strconv.FormatInt(u.ID, 10) + "/ai/chat"

	status, got, _ := r.do(t, "POST", path, "", body)
	wantBPError(t, status, got, 401, "unauthorized", "admin")
	status, got, _ = r.do(t, "POST", path, plain, body)
	wantBPError(t, status, got, 403, "forbidden", "admin rights")
	status, got, _ = r.do(t, "POST", path, tok, body) // a user's JWT is not a server key
	wantBPError(t, status, got, 401, "unauthorized", "")
	status, got, _ = r.do(t, "POST", "/bp/server/user/999999/ai/chat", admin, body)
	wantBPError(t, status, got, 404, "item_not_found", "user 999999")

	status, got, _ = r.do(t, "POST", path, admin, body)
	if status != 200 || gjson.Get(got, "reply.content").Str != "You said: hello" || gjson.Get(got, "asset.0.quantity").Int() != 49 {
		t.Fatalf("server chat %d %s", status, got)
	}
	chatID := gjson.Get(got, "chat_id").Str
	// The chat is alice's: her JWT reads it on the client path, and the server path reads it too.
	status, got, _ = r.do(t, "GET", "/bp/ai/chat/history?chat_id="+chatID, tok, "")
	if status != 200 || gjson.Get(got, "total_chat").Int() != 1 {
		t.Fatalf("client history %d %s", status, got)
	}
	status, got, _ = r.do(t, "GET", "/bp/server/user/"+strconv.FormatInt(u.ID, 10)+"/ai/chat/history?chat_id="+chatID, admin, "")
	if status != 200 || gjson.Get(got, "chat_histories.0.messages.0.content").Str != "hello" {
		t.Fatalf("server history %d %s", status, got)
	}
	// A user named in the path is created on first use, and is someone else: alice's chat is not theirs.
	status, got, _ = r.do(t, "GET", "/bp/server/user/UUD6DSJRTMEXU/ai/chat/history?chat_id="+chatID, admin, "")
	wantBPError(t, status, got, 404, "item_not_found", "")
	if nu, err := r.Store.UserByName(context.Background(), "UUD6DSJRTMEXU"); err != nil || nu.ID == u.ID {
		t.Fatalf("named user %+v %v", nu, err)
	}
	status, got, _ = r.do(t, "POST", "/bp/server/user/UUD6DSJRTMEXU/ai/chat/stream", admin, body)
	if status != 200 || !strings.HasSuffix(got, `"content":"","is_finish":true}`+"\n\n") || !strings.Contains(got, `"content":" hello","is_finish":false}`) {
		t.Fatalf("server stream %d %q", status, got)
	}
	status, got, _ = r.do(t, "POST", "/bp/server/user/UUD6DSJRTMEXU/ai/chat/instruction", admin, `{"name":"hello","parameters":{"name":"Bo"}}`)
	if status != 200 || gjson.Get(got, "instruction.content").Str != "You said: Hi Bo" || !gjson.Get(got, "usage.total_tokens").Exists() {
		t.Fatalf("server instruction %d %s", status, got)
	}
	// A relay request log row per call, under the bp surface with the server key's id.
	rows := r.Logs()
	n := 0
	for _, row := range rows {
		if row.Surface == "bp" {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d bp log rows of %d", n, len(rows))
	}
}

// A config reload puts new strategies in force; a bad one never reaches the server (LoadConfig refuses it).
func TestBPReloadSwapsStrategies(t *testing.T) {
	r := newBPRelay(t, nil, demoChannel())
	_, tok := r.user(t, "re")
	body := `{"strategy":"late","parameters":{"x":"y"},"messages":[{"role":"user","content":"hey"}]}`
	status, got, _ := r.do(t, "POST", "/bp/ai/chat", tok, body)
	wantBPError(t, status, got, 404, "item_not_found", "strategy late")
	cfg, err := relay.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Channels = []relay.ChannelConfig{demoChannel()}
	cfg.Strategies = []relay.StrategyConfig{{Name: "late", Model: "demo", System: "{{ .x }}", Cost: i64(5)}}
	chans, err := cfg.BuildChannels(testKinds())
	if err != nil {
		t.Fatal(err)
	}
	r.Server.Reload(cfg, chans)
	status, got, _ = r.do(t, "POST", "/bp/ai/chat", tok, body)
	if status != 200 || gjson.Get(got, "asset.0.quantity").Int() != 45 || gjson.Get(got, "user_surplus_count").Int() != 9 {
		t.Fatalf("%d %s", status, got)
	}
}
