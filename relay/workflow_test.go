package relay_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/demo"
	"relay/adaptor/fastgpt"
	"relay/adaptor/fastgpt/fastgpttest"
	"relay/relay"
	"relay/relay/relaytest"
	"relay/store"
	"relay/store/sqlite"
)

const (
	cbSecret   = "test-callback-secret-do-not-log"
	appKeyA    = "fastgpt-app-key-answer"
	appKeyB    = "fastgpt-app-key-detail"
	appKeyFail = "fastgpt-app-key-fail"
	appKeySlow = "fastgpt-app-key-slow"
	answerA    = "工作流的回答 workflow answer"
)

// The detail workflow's data, sent verbatim by the mock.
var (
	detailNodes = `[{"nodeId":"workflowStartNodeId","moduleName":"Workflow start","moduleType":"workflowStart","runningTime":0},{"nodeId":"aiChatNode01","moduleName":"AI chat","moduleType":"chatNode","runningTime":1.2,"inputTokens":41,"outputTokens":16,"quoteList":[{"q":"refund?","a":"30 days"}]}]`
	detailVars  = `{"customer_tier":"gold","step":"2"}`
)

// wfEnv is a relay with four FastGPT apps behind it (each with its own app key) and these workflows:
// wf-answer, wf-detail, wf-fail, wf-slow, wf-vip (only the relay key named "vip"), wf-off (channel
// disabled) and wf-nokey (app key variable unset).
type wfEnv struct {
	*relaytest.Relay
	answer, detail, fail, slow *fastgpttest.Server
}

func fastgptChannel(name, url string) relay.ChannelConfig {
	return relay.ChannelConfig{Name: name, Kind: "fastgpt", Enabled: "true", BaseURL: url, Models: []string{name + "-model"}}
}

func newWFEnv(t *testing.T, mutate func(*relay.Config)) *wfEnv {
	t.Helper()
	env := &wfEnv{
		answer: fastgpttest.NewServer(fastgpttest.Options{Key: appKeyA, Answer: answerA}),
		detail: fastgpttest.NewServer(fastgpttest.Options{Key: appKeyB, Answer: "Refunds are accepted within 30 days.",
			NodeStatus: []string{"AI 对话"}, ResponseData: json.RawMessage(detailNodes), NewVariables: json.RawMessage(detailVars),
			UpdateVariables: json.RawMessage(`{"step":"2"}`),
			Tool:            &fastgpttest.Tool{ID: "call_1", Name: "Weather", FunctionName: "weather", Params: `{"city":"Oslo"}`, Response: "sunny"},
			ExtraFrames:     []fastgpttest.Frame{{Event: "flowNodeResponse", Data: `{"nodeId":"n0","error":"node failed softly"}`}}}),
		fail: fastgpttest.NewServer(fastgpttest.Options{Key: appKeyFail, Fail: fastgpttest.FixedError(510)}),
		slow: fastgpttest.NewServer(fastgpttest.Options{Key: appKeySlow, Answer: "slow answer", HeaderDelay: 10 * time.Second}),
	}
	for _, s := range []*fastgpttest.Server{env.answer, env.detail, env.fail, env.slow} {
		t.Cleanup(s.Close)
	}
	t.Setenv("WF_TEST_KEY_A", appKeyA)
	t.Setenv("WF_TEST_KEY_B", appKeyB)
	off := fastgptChannel("fg-off", env.answer.URL)
	off.Enabled = "false"
	env.Relay = relaytest.Start(t, map[string]adaptor.Adaptor{"fastgpt": fastgpt.New(), "demo": demo.New()}, func(c *relay.Config) {
		c.Workflows.Apps = []relay.WorkflowConfig{
			{WorkID: "wf-answer", EventType: "fastgpt", Channel: "fg-a", AppKey: "${WF_TEST_KEY_A}"},
			{WorkID: "wf-detail", EventType: "fastgpt", Channel: "fg-b", AppKey: "${WF_TEST_KEY_B}"},
			{WorkID: "wf-fail", EventType: "fastgpt", Channel: "fg-c", AppKey: appKeyFail},
			{WorkID: "wf-slow", EventType: "fastgpt", Channel: "fg-d", AppKey: appKeySlow},
			{WorkID: "wf-vip", EventType: "fastgpt", Channel: "fg-a", AppKey: "${WF_TEST_KEY_A}", AllowedKeys: []string{"vip"}},
			{WorkID: "wf-off", EventType: "fastgpt", Channel: "fg-off", AppKey: appKeyA},
			{WorkID: "wf-nokey", EventType: "fastgpt", Channel: "fg-a", AppKey: "${WF_TEST_KEY_UNSET_FOR_SURE}"},
		}
		c.Callbacks.Secret = cbSecret
		c.Callbacks.AllowPrivate = true
		c.Callbacks.InitialBackoff = 20 * time.Millisecond
		c.Callbacks.MaxBackoff = 80 * time.Millisecond
		c.Callbacks.Timeout = 2 * time.Second
		if mutate != nil {
			mutate(c)
		}
	}, fastgptChannel("fg-a", env.answer.URL), fastgptChannel("fg-b", env.detail.URL), fastgptChannel("fg-c", env.fail.URL),
		fastgptChannel("fg-d", env.slow.URL), off, relay.ChannelConfig{Name: "demo", Kind: "demo", Enabled: "true", Models: []string{"demo"}})
	return env
}

func (e *wfEnv) get(t *testing.T, key, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.URL+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sseEvent is one frame of a raw SSE body.
type sseEvent struct{ name, data string }

func sseEvents(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != "" {
				out = append(out, cur)
			} else if cur.name != "" {
				t.Fatalf("event %q without data", cur.name)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if cur.data != "" {
				t.Fatalf("two data lines in one frame: %q", line)
			}
			cur.data = strings.TrimPrefix(line, "data: ")
		case strings.HasPrefix(line, ":"):
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	if cur.data != "" || cur.name != "" {
		t.Fatalf("unterminated frame %+v", cur)
	}
	return out
}

func compactJSON(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %s", s)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestWorkflowSyncNonStream(t *testing.T) {
	env := newWFEnv(t, nil)
	// No model: the seed makes it optional; the answer names the workflow.
	resp := env.Post(env.Key, `{"work_id":"wf-answer","chat_id":"conv-7","response_chat_item_id":"msg-7a","variables":{"tier":"gold"},"messages":[{"role":"user","content":"hi"}]}`)
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	g := gjson.ParseBytes(body)
	if g.Get("object").Str != "chat.completion" || g.Get("model").Str != "wf-answer" || g.Get("choices.0.message.content").Str != answerA ||
		!strings.HasPrefix(g.Get("id").Str, "chatcmpl-") || g.Get("created").Int() == 0 || g.Get("usage.total_tokens").Int() == 0 {
		t.Fatalf("completion: %s", body)
	}
	if g.Get("responseData").Exists() || g.Get("newVariables").Exists() {
		t.Fatalf("detail data without detail: %s", body)
	}
	up := env.answer.LastRequest()
	ub := gjson.ParseBytes(up.Body)
	if up.Authorization != "Bearer "+appKeyA || ub.Get("chatId").Str != "conv-7" || ub.Get("responseChatItemId").Str != "msg-7a" ||
		ub.Get("variables").Raw != `{"tier":"gold"}` || ub.Get("detail").Type != gjson.False {
		t.Fatalf("upstream got %s %s", up.Authorization, up.Body)
	}
	for _, k := range []string{"work_id", "event_type", "is_batch", "callback"} {
		if ub.Get(k).Exists() {
			t.Fatalf("control field %s went upstream: %s", k, up.Body)
		}
	}
	// The client's own model name is kept; chatId and chat_id may both come if they agree.
	resp = env.Post(env.Key, `{"model":"my-model","event_type":"fastgpt","work_id":"wf-answer","chatId":"c1","chat_id":"c1","messages":[{"role":"user","content":"hi"}]}`)
	body = readAll(t, resp)
	if resp.StatusCode != 200 || gjson.GetBytes(body, "model").Str != "my-model" || gjson.GetBytes(env.answer.LastRequest().Body, "chatId").Str != "c1" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	// The call is accounted like any other: one log row per request, on the workflow's channel.
	rows := env.Logs()
	if len(rows) != 2 || rows[0].Surface != "workflow" || rows[0].Channel != "fg-a" || rows[0].Status != 200 || rows[1].Model != "wf-answer" {
		t.Fatalf("log rows %+v", rows)
	}
}

func TestWorkflowDetailNonStream(t *testing.T) {
	env := newWFEnv(t, nil)
	resp := env.Post(env.Key, `{"work_id":"wf-detail","detail":true,"variables":{"customer_tier":"gold"},"messages":[{"role":"user","content":"refund?"}]}`)
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	g := gjson.ParseBytes(body)
	if g.Get("responseData").Raw != detailNodes || g.Get("newVariables").Raw != detailVars {
		t.Fatalf("detail data:\n%s", body)
	}
	// Usage is the nodes' token counts.
	if g.Get("usage.prompt_tokens").Int() != 41 || g.Get("usage.completion_tokens").Int() != 16 || g.Get("choices.0.message.content").Str != "Refunds are accepted within 30 days." {
		t.Fatalf("completion: %s", body)
	}
	// The SDK reads the completion and keeps the extras as extra fields.
	client := openai.NewClient(option.WithBaseURL(env.URL), option.WithAPIKey(env.Key), option.WithMaxRetries(0))
	comp, err := client.Chat.Completions.New(context.Background(), userParams("m", "refund?"),
		option.WithJSONSet("work_id", "wf-detail"), option.WithJSONSet("detail", true))
	if err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].Message.Content != "Refunds are accepted within 30 days." || comp.JSON.ExtraFields["responseData"].Raw() != detailNodes {
		t.Fatalf("sdk: %q %q", comp.Choices[0].Message.Content, comp.JSON.ExtraFields["responseData"].Raw())
	}
}

func TestWorkflowDetailStream(t *testing.T) {
	env := newWFEnv(t, nil)
	resp := env.Post(env.Key, `{"work_id":"wf-detail","stream":true,"detail":true,"messages":[{"role":"user","content":"refund?"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %v", resp.StatusCode, resp.Header)
	}
	events := sseEvents(t, resp.Body)
	resp.Body.Close()
	// The order: node status, the extra node response, the tool events, the answer chunks, the
	// variables update, the final chunk, flowResponses, [DONE] (consecutive chunks counted once).
	var seq []string
	var text strings.Builder
	named := map[string]string{}
	for _, e := range events {
		tok := e.name
		if e.name == "" {
			tok = "chunk"
			if e.data == "[DONE]" {
				tok = "[DONE]"
			} else {
				g := gjson.Parse(e.data)
				if g.Get("object").Str != "chat.completion.chunk" || g.Get("model").Str != "wf-detail" {
					t.Fatalf("chunk envelope: %s", e.data)
				}
				text.WriteString(g.Get("choices.0.delta.content").Str)
			}
		} else {
			named[e.name] = e.data
		}
		if len(seq) == 0 || seq[len(seq)-1] != tok || tok != "chunk" {
			seq = append(seq, tok)
		}
	}
	want := "flowNodeStatus flowNodeResponse toolCall toolParams toolResponse chunk updateVariables chunk flowResponses [DONE]"
	if got := strings.Join(seq, " "); got != want {
		t.Fatalf("event order\n got %s\nwant %s", got, want)
	}
	if text.String() != "Refunds are accepted within 30 days." {
		t.Fatalf("text %q", text.String())
	}
	// Object payloads pass as they are; an array, or an object with a top-level "error", is wrapped.
	if named["flowNodeStatus"] != `{"name":"AI 对话","status":"running"}` || named["updateVariables"] != `{"step":"2"}` ||
		named["flowResponses"] != `{"data":`+detailNodes+`}` || named["flowNodeResponse"] != `{"data":{"nodeId":"n0","error":"node failed softly"}}` ||
		gjson.Get(named["toolCall"], "tool.functionName").Str != "weather" || gjson.Get(named["toolResponse"], "tool.response").Str != "sunny" {
		t.Fatalf("named payloads %v", named)
	}

	// Without detail, the same workflow streams plain OpenAI chunks.
	resp = env.Post(env.Key, `{"work_id":"wf-detail","stream":true,"messages":[{"role":"user","content":"refund?"}]}`)
	frames := sseFrames(t, resp.Body) // fails on any event: line
	resp.Body.Close()
	if frames[len(frames)-1] != "[DONE]" || len(frames) < 3 {
		t.Fatalf("frames %v", frames)
	}
}

// The openai-go SDK still parses a detail stream: the named events come out as empty chunks and the
// accumulated answer and usage are right.
func TestWorkflowSDKDetailStream(t *testing.T) {
	env := newWFEnv(t, nil)
	client := openai.NewClient(option.WithBaseURL(env.URL), option.WithAPIKey(env.Key), option.WithMaxRetries(0))
	p := userParams("any-model", "refund?")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(context.Background(), p,
		option.WithJSONSet("work_id", "wf-detail"), option.WithJSONSet("detail", true), option.WithJSONSet("chatId", "conv-sdk"))
	var acc openai.ChatCompletionAccumulator
	n, named := 0, 0
	for stream.Next() {
		c := stream.Current()
		n++
		if c.ID == "" && len(c.Choices) == 0 {
			// A named event: the SDK decodes it as an empty chunk; the accumulator, which has
			// already seen the stream's id, does not take it, and that is all.
			named++
			continue
		}
		if !acc.AddChunk(c) {
			t.Fatalf("accumulator refused chunk %d: %s", n, c.RawJSON())
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("after %d chunks: %v", n, err)
	}
	if named != 7 {
		t.Fatalf("%d named events reached the SDK, want 7", named)
	}
	if acc.Choices[0].Message.Content != "Refunds are accepted within 30 days." || acc.Usage.PromptTokens != 41 || acc.Usage.CompletionTokens != 16 ||
		acc.Choices[0].FinishReason != "stop" || acc.Model != "any-model" {
		t.Fatalf("accumulated %q usage %+v finish %q model %q", acc.Choices[0].Message.Content, acc.Usage, acc.Choices[0].FinishReason, acc.Model)
	}
	if up := env.detail.LastRequest(); gjson.GetBytes(up.Body, "chatId").Str != "conv-sdk" || up.Authorization != "Bearer "+appKeyB {
		t.Fatalf("upstream %s %s", up.Authorization, up.Body)
	}
}

func TestWorkflowBadInputs(t *testing.T) {
	env := newWFEnv(t, nil)
	vip := env.NewKey("vip", nil)
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	cases := []struct {
		name, key, body string
		status          int
		param, code     string
	}{
		{"unknown work_id", env.Key, `{"work_id":"nope",` + msgs + `}`, 404, "work_id", "workflow_not_found"},
		{"work_id not allowed", env.Key, `{"work_id":"wf-vip",` + msgs + `}`, 403, "work_id", "workflow_not_allowed"},
		{"chat ids disagree", env.Key, `{"work_id":"wf-answer","chat_id":"a","chatId":"b",` + msgs + `}`, 400, "chatId", ""},
		{"variables not strings", env.Key, `{"work_id":"wf-answer","variables":{"a":"x","n":5},` + msgs + `}`, 400, "variables", ""},
		{"variables nested", env.Key, `{"work_id":"wf-answer","variables":{"o":{"a":"b"}},` + msgs + `}`, 400, "variables", ""},
		{"batch with stream", env.Key, `{"work_id":"wf-answer","is_batch":true,"stream":true,` + msgs + `}`, 400, "is_batch", ""},
		{"callback not a URL", env.Key, `{"work_id":"wf-answer","is_batch":true,"callback":"::nope",` + msgs + `}`, 400, "callback", "invalid_callback"},
		{"callback ftp", env.Key, `{"work_id":"wf-answer","is_batch":true,"callback":"ftp://example.com/x",` + msgs + `}`, 400, "callback", "invalid_callback"},
		{"callback relative", env.Key, `{"work_id":"wf-answer","is_batch":true,"callback":"/cb",` + msgs + `}`, 400, "callback", "invalid_callback"},
		{"callback without batch", env.Key, `{"work_id":"wf-answer","callback":"http://example.com/cb",` + msgs + `}`, 400, "callback", ""},
		{"callback not string", env.Key, `{"work_id":"wf-answer","is_batch":true,"callback":5,` + msgs + `}`, 400, "callback", ""},
		{"work_id not string", env.Key, `{"work_id":7,` + msgs + `}`, 400, "work_id", ""},
		{"is_batch not bool", env.Key, `{"work_id":"wf-answer","is_batch":"yes",` + msgs + `}`, 400, "is_batch", ""},
		{"unknown event_type", env.Key, `{"work_id":"wf-answer","event_type":"dify",` + msgs + `}`, 400, "event_type", ""},
		{"event_type without work_id", env.Key, `{"model":"demo","event_type":"fastgpt",` + msgs + `}`, 400, "work_id", ""},
		{"workflow channel off", env.Key, `{"work_id":"wf-off",` + msgs + `}`, 503, "", "workflow_unavailable"},
		{"workflow app key unset", env.Key, `{"work_id":"wf-nokey",` + msgs + `}`, 503, "", "workflow_unavailable"},
		{"plain batch unknown model", env.Key, `{"model":"gpt-9","is_batch":true,` + msgs + `}`, 404, "model", "model_not_found"},
		{"missing messages", env.Key, `{"work_id":"wf-answer"}`, 400, "messages", ""},
		{"no key", "", `{"work_id":"wf-answer",` + msgs + `}`, 401, "", "missing_api_key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := env.Post(c.key, c.body)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, readAll(t, resp))
			}
			e := errorBody(t, resp)
			if c.param != "" && (e["param"] != c.param || !strings.Contains(e["message"].(string), c.param)) {
				t.Fatalf("param %v, want %q: %v", e["param"], c.param, e)
			}
			if c.code != "" && e["code"] != c.code {
				t.Fatalf("code %v, want %q", e["code"], c.code)
			}
			if msg := e["message"].(string); strings.Contains(msg, appKeyA) || strings.Contains(msg, cbSecret) || strings.Contains(msg, "WF_TEST_KEY") {
				t.Fatalf("secret in error: %s", msg)
			}
		})
	}
	if n := len(env.answer.Requests()); n != 0 {
		t.Fatalf("bad requests reached the upstream %d times", n)
	}
	// The listed key may use the restricted workflow.
	resp := env.Post(vip, `{"work_id":"wf-vip",`+msgs+`}`)
	if b := readAll(t, resp); resp.StatusCode != 200 || gjson.GetBytes(b, "choices.0.message.content").Str != answerA {
		t.Fatalf("vip: %d %s", resp.StatusCode, b)
	}
	// Plain OpenAI requests are untouched by the gate.
	resp = env.Post(env.Key, `{"model":"demo",`+msgs+`}`)
	if b := readAll(t, resp); resp.StatusCode != 200 || gjson.GetBytes(b, "choices.0.message.content").Str != "You said: hi" {
		t.Fatalf("plain: %d %s", resp.StatusCode, b)
	}
}

// Private destinations are refused at submission unless callbacks.allow_private is set; without a
// secret, callbacks are refused altogether.
func TestWorkflowCallbackPolicy(t *testing.T) {
	env := newWFEnv(t, func(c *relay.Config) { c.Callbacks.AllowPrivate = false })
	for _, cb := range []string{"http://127.0.0.1:9/cb", "http://localhost:8080/cb", "http://api.localhost/cb", "http://[::1]/cb",
		"http://169.254.169.254/latest/meta-data", "http://10.1.2.3/cb", "https://192.168.1.1/cb", "http://[::ffff:127.0.0.1]/cb",
		"http://100.100.100.200/cb", "http://0.0.0.0/cb", "http://[fe80::1]/cb", "http://[64:ff9b::a00:1]/cb"} {
		resp := env.Post(env.Key, `{"work_id":"wf-answer","is_batch":true,"callback":"`+cb+`","messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 400 {
			t.Fatalf("%s: status %d", cb, resp.StatusCode)
		}
		if e := errorBody(t, resp); e["code"] != "invalid_callback" || !strings.Contains(e["message"].(string), "private") {
			t.Fatalf("%s: %v", cb, e)
		}
	}
	noSecret := newWFEnv(t, func(c *relay.Config) { c.Callbacks.Secret = "" })
	resp := noSecret.Post(noSecret.Key, `{"work_id":"wf-answer","is_batch":true,"callback":"http://127.0.0.1:9/cb","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 400 {
		t.Fatalf("no secret: %d", resp.StatusCode)
	}
	if e := errorBody(t, resp); e["code"] != "callbacks_disabled" {
		t.Fatalf("no secret: %v", e)
	}
}

func TestWorkflowGetAuth(t *testing.T) {
	env := newWFEnv(t, nil)
	revoked := env.NewKey("gone", nil)
	if err := env.Store.RevokeKey(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key    string
		status int
		body   string
	}{
		{env.Key, 200, `{"code":0,"msg":"API key is valid"}`},
		{"", 401, `{"code":401,"msg":"missing API key: send it as Authorization: Bearer <key>"}`},
		{"sk-relay-unknown", 401, `{"code":401,"msg":"invalid API key"}`},
		{revoked, 401, `{"code":401,"msg":"API key has been revoked"}`},
	} {
		status, body := env.get(t, c.key, "/chat/getauth")
		if status != c.status || string(body) != c.body {
			t.Fatalf("key %q: %d %s", c.key, status, body)
		}
	}
}

// receiver is a loopback callback endpoint that fails the first failFirst deliveries with 500.
type receiver struct {
	*httptest.Server
	t         *testing.T
	mu        sync.Mutex
	failFirst int
	got       []delivery
	notify    chan delivery
}

type delivery struct {
	header http.Header
	body   []byte
	status int
	at     time.Time
}

func newReceiver(t *testing.T, failFirst int) *receiver {
	r := &receiver{t: t, failFirst: failFirst, notify: make(chan delivery, 1000)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := 200
		if len(r.got) < r.failFirst {
			status = 500
		}
		d := delivery{header: req.Header.Clone(), body: b, status: status, at: time.Now()}
		r.got = append(r.got, d)
		r.mu.Unlock()
		w.WriteHeader(status)
		if status != 200 {
			io.WriteString(w, "receiver not ready")
		}
		r.notify <- d
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// wait returns the next delivery with status 200.
func (r *receiver) waitOK(timeout time.Duration) delivery {
	r.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case d := <-r.notify:
			if d.status == 200 {
				return d
			}
		case <-deadline:
			r.t.Fatalf("no successful delivery within %v (%d attempts)", timeout, len(r.deliveries()))
		}
	}
}

func checkSignature(t *testing.T, d delivery) {
	t.Helper()
	m := hmac.New(sha256.New, []byte(cbSecret))
	m.Write(d.body)
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); d.header.Get(relay.HeaderSignature) != want {
		t.Fatalf("signature %q, want %q", d.header.Get(relay.HeaderSignature), want)
	}
}

func submit(t *testing.T, env *wfEnv, key, body string) (taskID, chatID string) {
	t.Helper()
	resp := env.Post(key, body)
	b := readAll(t, resp)
	g := gjson.ParseBytes(b)
	if resp.StatusCode != 202 || !strings.HasPrefix(g.Get("task_id").Str, "task_") || g.Get("status").Str != "pending" ||
		g.Get("object").Str != "chat.completion.task" || resp.Header.Get("Location") != "/v1/chat/tasks/"+g.Get("task_id").Str {
		t.Fatalf("submit: %d %s", resp.StatusCode, b)
	}
	return g.Get("task_id").Str, g.Get("chat_id").Str
}

func (e *wfEnv) task(t *testing.T, key, id string) gjson.Result {
	t.Helper()
	status, b := e.get(t, key, "/chat/tasks/"+id)
	if status != 200 {
		t.Fatalf("task %s: %d %s", id, status, b)
	}
	return gjson.ParseBytes(b)
}

// waitTask polls the task until its status is one of want.
func (e *wfEnv) waitTask(t *testing.T, key, id string, timeout time.Duration, want ...string) gjson.Result {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		g := e.task(t, key, id)
		for _, w := range want {
			if g.Get("status").Str == w {
				return g
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s after %v: %s", id, g.Get("status").Str, timeout, g.Raw)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBatchCallbackRetriedThenDelivered(t *testing.T) {
	env := newWFEnv(t, nil)
	rcv := newReceiver(t, 2)
	id, chatID := submit(t, env, env.Key, `{"work_id":"wf-detail","is_batch":true,"detail":true,"chat_id":"conv-b1","callback":"`+rcv.URL+`/hook?x=1","messages":[{"role":"user","content":"refund?"}]}`)
	if chatID != "conv-b1" {
		t.Fatalf("chat id %q", chatID)
	}
	d := rcv.waitOK(10 * time.Second)
	all := rcv.deliveries()
	if len(all) != 3 || all[0].status != 500 || all[1].status != 500 {
		t.Fatalf("deliveries %d", len(all))
	}
	for i, x := range all {
		checkSignature(t, x)
		if x.header.Get(relay.HeaderTaskID) != id || x.header.Get(relay.HeaderAttempt) != fmt.Sprint(i+1) ||
			x.header.Get(relay.HeaderResultStatus) != "200" || x.header.Get("Content-Type") != "application/json" || string(x.body) != string(d.body) {
			t.Fatalf("delivery %d headers %v", i, x.header)
		}
	}
	// Backoff: the second retry waited at least half of twice the initial backoff.
	if gap := all[2].at.Sub(all[1].at); gap < 20*time.Millisecond {
		t.Fatalf("retry gap %v", gap)
	}
	// The body is what a synchronous call returns: the completion with responseData and newVariables.
	g := gjson.ParseBytes(d.body)
	if g.Get("object").Str != "chat.completion" || g.Get("model").Str != "wf-detail" || g.Get("choices.0.message.content").Str != "Refunds are accepted within 30 days." ||
		g.Get("responseData").Raw != detailNodes || g.Get("newVariables").Raw != detailVars || g.Get("usage.total_tokens").Int() != 57 {
		t.Fatalf("callback body %s", d.body)
	}
	resp := env.Post(env.Key, `{"work_id":"wf-detail","detail":true,"chat_id":"conv-b1","messages":[{"role":"user","content":"refund?"}]}`)
	sync := gjson.ParseBytes(readAll(t, resp))
	for _, k := range []string{"object", "model", "choices", "usage", "responseData", "newVariables"} {
		if sync.Get(k).Raw != g.Get(k).Raw {
			t.Fatalf("%s differs: sync %s, callback %s", k, sync.Get(k).Raw, g.Get(k).Raw)
		}
	}
	// The task shows the state, the result and every attempt.
	tk := env.waitTask(t, env.Key, id, 5*time.Second, "delivered")
	if tk.Get("result").Raw != string(d.body) || tk.Get("result_status").Int() != 200 || tk.Get("work_id").Str != "wf-detail" ||
		tk.Get("chat_id").Str != "conv-b1" || tk.Get("runs").Int() != 1 || tk.Get("callback.url").Str != rcv.URL+"/hook?x=1" ||
		tk.Get("callback.delivered_at").Int() == 0 || tk.Get("completed_at").Int() == 0 {
		t.Fatalf("task %s", tk.Raw)
	}
	at := tk.Get("callback.attempts").Array()
	if len(at) != 3 || at[0].Get("status").Int() != 500 || at[0].Get("error").Str != "HTTP 500: receiver not ready" ||
		at[1].Get("attempt").Int() != 2 || at[2].Get("status").Int() != 200 || at[2].Get("error").Exists() {
		t.Fatalf("attempts %s", tk.Get("callback.attempts").Raw)
	}
	// The upstream saw the job's request with the app key, without the relay's control fields.
	up := env.detail.Requests()[0]
	if up.Authorization != "Bearer "+appKeyB || gjson.GetBytes(up.Body, "callback").Exists() || gjson.GetBytes(up.Body, "is_batch").Exists() ||
		gjson.GetBytes(up.Body, "chatId").Str != "conv-b1" {
		t.Fatalf("upstream %s %s", up.Authorization, up.Body)
	}
	// Another key cannot see the task (the owner is checked in the query).
	other := env.NewKey("other", nil)
	if status, b := env.get(t, other, "/chat/tasks/"+id); status != 404 || gjson.GetBytes(b, "error.code").Str != "task_not_found" {
		t.Fatalf("other key: %d %s", status, b)
	}
	if status, _ := env.get(t, env.Key, "/chat/tasks/task_nope"); status != 404 {
		t.Fatalf("unknown task: %d", status)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(rcv.deliveries()); n != 3 {
		t.Fatalf("%d deliveries after success", n)
	}
}

// Without a callback the result waits in the task; a failing workflow's result is its error object.
func TestBatchWithoutCallbackAndFailure(t *testing.T) {
	env := newWFEnv(t, nil)
	id, _ := submit(t, env, env.Key, `{"work_id":"wf-answer","is_batch":true,"messages":[{"role":"user","content":"hi"}]}`)
	tk := env.waitTask(t, env.Key, id, 5*time.Second, "completed")
	if tk.Get("result_status").Int() != 200 || tk.Get("result.choices.0.message.content").Str != answerA || tk.Get("callback").Type != gjson.Null {
		t.Fatalf("task %s", tk.Raw)
	}

	rcv := newReceiver(t, 0)
	id, _ = submit(t, env, env.Key, `{"work_id":"wf-fail","is_batch":true,"callback":"`+rcv.URL+`","messages":[{"role":"user","content":"hi"}]}`)
	d := rcv.waitOK(5 * time.Second)
	checkSignature(t, d)
	// FastGPT's 510 (balance exhausted) is a 429 with an OpenAI error object.
	e := gjson.GetBytes(d.body, "error")
	if d.header.Get(relay.HeaderResultStatus) != "429" || e.Get("type").Str != "rate_limit_error" || !strings.Contains(e.Get("message").Str, "账号余额不足") {
		t.Fatalf("failure callback %v %s", d.header, d.body)
	}
	tk = env.waitTask(t, env.Key, id, 5*time.Second, "delivered")
	if tk.Get("result_status").Int() != 429 || tk.Get("result.error.type").Str != "rate_limit_error" {
		t.Fatalf("task %s", tk.Raw)
	}

	// A plain model can be batched too: routed by model, no workflow.
	id, _ = submit(t, env, env.Key, `{"model":"demo","is_batch":true,"messages":[{"role":"user","content":"plain batch"}]}`)
	tk = env.waitTask(t, env.Key, id, 5*time.Second, "completed")
	if tk.Get("result.choices.0.message.content").Str != "You said: plain batch" || tk.Get("work_id").Str != "" {
		t.Fatalf("plain batch %s", tk.Raw)
	}
}

func TestBatchCallbackGivesUp(t *testing.T) {
	env := newWFEnv(t, func(c *relay.Config) { c.Callbacks.MaxAttempts = 3 })
	rcv := newReceiver(t, 1000)
	id, _ := submit(t, env, env.Key, `{"work_id":"wf-answer","is_batch":true,"callback":"`+rcv.URL+`","messages":[{"role":"user","content":"hi"}]}`)
	tk := env.waitTask(t, env.Key, id, 10*time.Second, "callback_failed")
	if n := len(tk.Get("callback.attempts").Array()); n != 3 || tk.Get("result_status").Int() != 200 || tk.Get("callback.next_attempt_at").Type != gjson.Null {
		t.Fatalf("task %s", tk.Raw)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(rcv.deliveries()); n != 3 {
		t.Fatalf("receiver saw %d attempts, want 3", n)
	}

	// max_age gives up too, whatever the attempts left.
	env2 := newWFEnv(t, func(c *relay.Config) { c.Callbacks.MaxAge = 150 * time.Millisecond; c.Callbacks.MaxAttempts = 1000 })
	id, _ = submit(t, env2, env2.Key, `{"work_id":"wf-answer","is_batch":true,"callback":"`+rcv.URL+`","messages":[{"role":"user","content":"hi"}]}`)
	tk = env2.waitTask(t, env2.Key, id, 10*time.Second, "callback_failed")
	if n := len(tk.Get("callback.attempts").Array()); n < 2 || n > 12 {
		t.Fatalf("attempts within max_age: %d", n)
	}
}

// A relay stopped mid-job resumes it after restart on the same database: the callback arrives exactly
// once, with the full result.
func TestBatchResumesAfterRestart(t *testing.T) {
	env := newWFEnv(t, func(c *relay.Config) { c.Server.ShutdownGrace = 200 * time.Millisecond })
	rcv := newReceiver(t, 0)
	id, _ := submit(t, env, env.Key, `{"work_id":"wf-slow","is_batch":true,"chat_id":"conv-r","callback":"`+rcv.URL+`","messages":[{"role":"user","content":"hi"}]}`)
	deadline := time.Now().Add(5 * time.Second)
	for len(env.slow.Requests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the job never reached the upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	tk := env.task(t, env.Key, id)
	if tk.Get("status").Str != "running" {
		t.Fatalf("before stop: %s", tk.Raw)
	}
	start := time.Now()
	env.Close() // the slow upstream call is cancelled at the end of the grace period
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if n := len(rcv.deliveries()); n != 0 {
		t.Fatalf("delivered before restart: %d", n)
	}
	if !env.slow.Requests()[0].Canceled {
		t.Fatal("the upstream call was not cancelled by the stop")
	}
	env.slow.SetOptions(fastgpttest.Options{Key: appKeySlow, Answer: "slow answer"})

	again := relaytest.Start(t, map[string]adaptor.Adaptor{"fastgpt": fastgpt.New()}, func(c *relay.Config) {
		c.Store.Path = env.Path
		c.Workflows.Apps = []relay.WorkflowConfig{{WorkID: "wf-slow", EventType: "fastgpt", Channel: "fg-d", AppKey: appKeySlow}}
		c.Callbacks.Secret = cbSecret
		c.Callbacks.AllowPrivate = true
	}, fastgptChannel("fg-d", env.slow.URL))
	d := rcv.waitOK(10 * time.Second)
	checkSignature(t, d)
	if d.header.Get(relay.HeaderTaskID) != id || gjson.GetBytes(d.body, "choices.0.message.content").Str != "slow answer" ||
		gjson.GetBytes(d.body, "object").Str != "chat.completion" || gjson.GetBytes(d.body, "model").Str != "wf-slow" {
		t.Fatalf("callback %v %s", d.header, d.body)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(rcv.deliveries()); n != 1 {
		t.Fatalf("%d deliveries, want exactly 1", n)
	}
	// The original key still owns the task on the restarted relay.
	r2 := &wfEnv{Relay: again}
	tk = r2.waitTask(t, env.Key, id, 5*time.Second, "delivered")
	if tk.Get("runs").Int() != 2 || len(tk.Get("callback.attempts").Array()) != 1 || tk.Get("result").Raw != string(d.body) {
		t.Fatalf("task after restart %s", tk.Raw)
	}
	if n := len(env.slow.Requests()); n != 2 || gjson.GetBytes(env.slow.Requests()[1].Body, "chatId").Str != "conv-r" {
		t.Fatalf("upstream calls %d", n)
	}
}

// 200 jobs submitted at once all complete and are delivered exactly once each.
func TestBatchLoad200(t *testing.T) {
	env := newWFEnv(t, func(c *relay.Config) { c.Workflows.Concurrency = 16; c.Callbacks.Concurrency = 16 })
	rcv := newReceiver(t, 0)
	const n = 200
	start := time.Now()
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf(`{"work_id":"wf-answer","is_batch":true,"chat_id":"load-%d","callback":"%s/cb","messages":[{"role":"user","content":"job %d"}]}`, i, rcv.URL, i)
			req, _ := http.NewRequest(http.MethodPost, env.URL+"/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+env.Key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 202 {
				errs <- fmt.Sprintf("%d %s", resp.StatusCode, b)
				return
			}
			ids[i] = gjson.GetBytes(b, "task_id").Str
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	submitted := time.Since(start)
	deadline := time.After(60 * time.Second)
	for got := 0; got < n; {
		select {
		case d := <-rcv.notify:
			if d.status == 200 {
				got++
			}
		case <-deadline:
			t.Fatalf("only %d of %d delivered", got, n)
		}
	}
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	seen := map[string]int{}
	for _, d := range rcv.deliveries() {
		checkSignature(t, d)
		seen[d.header.Get(relay.HeaderTaskID)]++
		if !strings.HasPrefix(gjson.GetBytes(d.body, "choices.0.message.content").Str, "工作流") {
			t.Fatalf("body %s", d.body)
		}
	}
	for i, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("job %d (%s) delivered %d times", i, id, seen[id])
		}
	}
	if len(seen) != n || len(env.answer.Requests()) != n {
		t.Fatalf("%d tasks delivered, %d upstream calls", len(seen), len(env.answer.Requests()))
	}
	t.Logf("LOAD: %d batch jobs: all 202s in %v, all delivered exactly once in %v", n, submitted.Round(time.Millisecond), elapsed.Round(time.Millisecond))
}

// Batch jobs count against their key's limits: the request rate at submission (a job over the limit is
// refused with 429 before it is stored), and the token quota with the job's real usage once it has run.
func TestBatchJobsCountAgainstKeyLimits(t *testing.T) {
	env := newWFEnv(t, nil)
	secret := "sk-relay-limited-batch"
	k, err := env.Store.CreateKey(context.Background(), store.Key{Name: "batch-limited", Prefix: secret[:12], Hash: relay.HashKey(secret),
		RPM: 2, QuotaTokens: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 2; i++ {
		id, _ := submit(t, env, secret, `{"model":"demo","is_batch":true,"messages":[{"role":"user","content":"count me"}]}`)
		ids = append(ids, id)
	}
	resp := env.Post(secret, `{"model":"demo","is_batch":true,"messages":[{"role":"user","content":"one too many"}]}`)
	b := readAll(t, resp)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || gjson.GetBytes(b, "error.code").Str != "rate_limit_exceeded" {
		t.Fatalf("third job in a minute with rpm 2: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	want := int64(0)
	for _, id := range ids {
		tk := env.waitTask(t, secret, id, 5*time.Second, "completed")
		n := tk.Get("result.usage.total_tokens").Int()
		if n <= 0 {
			t.Fatalf("job without usage: %s", tk.Raw)
		}
		want += n
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		keys, err := env.Store.ListKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var used int64 = -1
		for _, x := range keys {
			if x.ID == k.ID {
				used = x.UsedTokens
			}
		}
		if used == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored quota spending %d, want the jobs' %d tokens", used, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A job whose key is revoked before it runs (here: while the relay was down, the job interrupted)
// ends with the 401 a request of that key gets, and reaches no upstream.
func TestBatchJobOfRevokedKeyDoesNotRun(t *testing.T) {
	env := newWFEnv(t, func(c *relay.Config) { c.Server.ShutdownGrace = 200 * time.Millisecond })
	secret := "sk-relay-batch-revoked"
	k, err := env.Store.CreateKey(context.Background(), store.Key{Name: "soon-revoked", Prefix: secret[:12], Hash: relay.HashKey(secret)})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := submit(t, env, secret, `{"work_id":"wf-slow","is_batch":true,"messages":[{"role":"user","content":"hi"}]}`)
	deadline := time.Now().Add(5 * time.Second)
	for len(env.slow.Requests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the job never reached the upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	env.Close() // the job goes back to pending
	st, err := sqlite.Open(env.Path, sqlite.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeKey(context.Background(), "soon-revoked"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	env.slow.SetOptions(fastgpttest.Options{Key: appKeySlow, Answer: "slow answer"})
	again := relaytest.Start(t, map[string]adaptor.Adaptor{"fastgpt": fastgpt.New()}, func(c *relay.Config) {
		c.Store.Path = env.Path
		c.Workflows.Apps = []relay.WorkflowConfig{{WorkID: "wf-slow", EventType: "fastgpt", Channel: "fg-d", AppKey: appKeySlow}}
	}, fastgptChannel("fg-d", env.slow.URL))
	deadline = time.Now().Add(5 * time.Second)
	for {
		j, _, err := again.Store.GetJob(context.Background(), id, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == store.JobCompleted {
			if j.ResultStatus != 401 || gjson.GetBytes(j.Result, "error.code").Str != "invalid_api_key" {
				t.Fatalf("revoked key's job: %d %s", j.ResultStatus, j.Result)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s", j.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(env.slow.Requests()); n != 1 {
		t.Fatalf("the upstream was called %d times; want only the run before the revoke", n)
	}
}

// A batch job of a key that belongs to a user is logged into that user's sessions like a synchronous
// call: its chat_id names the session.
func TestBatchJobLoggedIntoSessions(t *testing.T) {
	env := newWFEnv(t, nil)
	ctx := context.Background()
	u, err := env.Store.CreateUser(ctx, store.User{Name: "batch-user", Role: store.RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	secret := "sk-relay-batch-user"
	if _, err := env.Store.CreateKey(ctx, store.Key{Name: "batch-user", Prefix: secret[:12], Hash: relay.HashKey(secret), UserID: u.ID}); err != nil {
		t.Fatal(err)
	}
	id, _ := submit(t, env, secret, `{"model":"demo","is_batch":true,"chat_id":"conv-batch","messages":[{"role":"user","content":"log me"}]}`)
	env.waitTask(t, secret, id, 5*time.Second, "completed")
	deadline := time.Now().Add(5 * time.Second)
	for {
		ss, _, err := env.Store.SearchSessions(ctx, store.SessionFilter{UserID: u.ID, Page: 1, Size: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(ss) == 1 {
			recs, _, err := env.Store.ListRecords(ctx, u.ID, ss[0].ID, 1, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 1 {
				r := recs[0]
				if ss[0].ExtID != "chat:conv-batch" || r.ProblemText != "log me" || r.AnswerText != "You said: log me" || r.Status != store.StatusSuccess {
					t.Fatalf("session %+v record %+v", ss[0], r)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no logged turn after 5s (%d sessions)", len(ss))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
