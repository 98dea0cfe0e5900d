package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"

	"relay/adaptor/demo"
	"relay/adaptor/openai/openaitest"
	"relay/relay"
)

func userParams(model, text string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    openai.ChatModel(model),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage(text)},
	}
}

func TestSDKNonStreamDemo(t *testing.T) {
	tr := newTestRelay(t, nil, demoChannel())
	client := tr.sdk()
	comp, err := client.Chat.Completions.New(context.Background(), userParams("demo", "héllo wörld"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := comp.Choices[0].Message.Content, "You said: héllo wörld"; got != want {
		t.Fatalf("content %q, want %q", got, want)
	}
	if comp.Model != "demo" || comp.Object != "chat.completion" || !strings.HasPrefix(comp.ID, "chatcmpl-") || comp.Created == 0 {
		t.Fatalf("envelope: %+v", comp)
	}
	if comp.Choices[0].FinishReason != "stop" || comp.Usage.PromptTokens == 0 || comp.Usage.CompletionTokens == 0 ||
		comp.Usage.TotalTokens != comp.Usage.PromptTokens+comp.Usage.CompletionTokens {
		t.Fatalf("finish/usage: %+v %+v", comp.Choices[0].FinishReason, comp.Usage)
	}
	rows := tr.logs()
	if len(rows) != 1 || rows[0].Status != 200 || rows[0].Model != "demo" || rows[0].Channel != "demo" || rows[0].Stream ||
		rows[0].Usage.TotalTokens != int(comp.Usage.TotalTokens) || rows[0].Error != "" {
		t.Fatalf("log rows: %+v", rows)
	}
}

func TestSDKStreamDemoWithAccumulator(t *testing.T) {
	tr := newTestRelay(t, nil, demoChannel())
	client := tr.sdk()
	p := userParams("demo", "one two three four five")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(context.Background(), p)
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := acc.Choices[0].Message.Content, demo.Answer([]byte(`{"messages":[{"role":"user","content":"one two three four five"}]}`)); got != want {
		t.Fatalf("accumulated %q, want %q", got, want)
	}
	if chunks < 5 {
		t.Fatalf("want several chunks, got %d", chunks)
	}
	if acc.Usage.PromptTokens == 0 || acc.Usage.CompletionTokens == 0 || acc.Choices[0].FinishReason != "stop" {
		t.Fatalf("usage %+v finish %q", acc.Usage, acc.Choices[0].FinishReason)
	}
	rows := tr.logs()
	if len(rows) != 1 || !rows[0].Stream || rows[0].Status != 200 || rows[0].TTFB <= 0 || rows[0].Usage.TotalTokens != int(acc.Usage.TotalTokens) {
		t.Fatalf("log rows: %+v", rows)
	}
}

func TestSDKAgainstOpenAIUpstream(t *testing.T) {
	up := openaitest.New(openaitest.Options{Answer: "Paris is the capital. 巴黎。", Chunks: 5, Model: "gpt-upstream-2024", Key: "sk-upstream-secret-up"})
	defer up.Close()
	ch := openaiChannel("up", up.BaseURL(), "gpt-4o-mini")
	ch.ModelMap = map[string]string{"gpt-4o-mini": "gpt-upstream-2024"}
	tr := newTestRelay(t, nil, ch)
	client := tr.sdk()

	comp, err := client.Chat.Completions.New(context.Background(), userParams("gpt-4o-mini", "capital of France?"))
	if err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].Message.Content != "Paris is the capital. 巴黎。" || comp.Model != "gpt-4o-mini" || comp.Usage.TotalTokens != 16 {
		t.Fatalf("completion: %q model %q usage %+v", comp.Choices[0].Message.Content, comp.Model, comp.Usage)
	}

	p := userParams("gpt-4o-mini", "capital of France?")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(context.Background(), p)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		c := stream.Current()
		if c.Model != "gpt-4o-mini" {
			t.Fatalf("chunk model %q", c.Model)
		}
		acc.AddChunk(c)
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != "Paris is the capital. 巴黎。" || acc.Usage.TotalTokens != 16 {
		t.Fatalf("stream: %q usage %+v", acc.Choices[0].Message.Content, acc.Usage)
	}
	// The upstream saw its own model name and the channel's key, never the relay key.
	for i, b := range up.Bodies() {
		if gjson.GetBytes(b, "model").Str != "gpt-upstream-2024" {
			t.Fatalf("upstream body %d model: %s", i, b)
		}
	}
	for _, h := range up.Headers() {
		if h.Get("Authorization") != "Bearer sk-upstream-secret-up" {
			t.Fatalf("upstream auth header %q", h.Get("Authorization"))
		}
	}
}

func TestSDKModelsList(t *testing.T) {
	up := openaitest.New(openaitest.Options{})
	defer up.Close()
	tr := newTestRelay(t, nil, demoChannel(), openaiChannel("up", up.BaseURL(), "gpt-4o-mini", "gpt-4o"))
	client := tr.sdk()
	page, err := client.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID+"/"+m.OwnedBy)
	}
	if got := strings.Join(ids, ","); got != "demo/demo,gpt-4o/openai,gpt-4o-mini/openai" {
		t.Fatalf("models %s", got)
	}
	// A key limited to some models sees only those.
	limited := tr.newKey("limited", []string{"demo"})
	lc := tr.sdk()
	page, err = lc.Models.List(context.Background(), optionKey(limited))
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != "demo" {
		t.Fatalf("limited models: %+v %v", page, err)
	}
	m, err := client.Models.Get(context.Background(), "gpt-4o")
	if err != nil || m.ID != "gpt-4o" {
		t.Fatalf("get model: %+v %v", m, err)
	}
	_, err = client.Models.Get(context.Background(), "nope")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Fatalf("get unknown model: %v", err)
	}
}

// TestStreamChunkInvariants checks the framing rules the npm SDK's stream helper depends on, against an
// upstream that leaves the role out and names another model.
func TestStreamChunkInvariants(t *testing.T) {
	for _, includeUsage := range []bool{true, false} {
		up := openaitest.New(openaitest.Options{Answer: "abcdefghij", Chunks: 5, Model: "other-model", NoRole: true})
		tr := newTestRelay(t, nil, openaiChannel("up", up.BaseURL(), "m1"))
		body := `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}],"extra_vendor_field":{"keep":[1,2]}}`
		if includeUsage {
			body = `{"model":"m1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}],"extra_vendor_field":{"keep":[1,2]}}`
		}
		resp := tr.post(tr.Key, body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("X-Accel-Buffering") != "no" {
			t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
		}
		frames := sseFrames(t, resp.Body)
		resp.Body.Close()
		if frames[len(frames)-1] != "[DONE]" {
			t.Fatalf("last frame %q", frames[len(frames)-1])
		}
		frames = frames[:len(frames)-1]
		id, created := gjson.Get(frames[0], "id").Str, gjson.Get(frames[0], "created").Int()
		var text strings.Builder
		finishes, usageChunks := 0, 0
		for i, f := range frames {
			g := gjson.Parse(f)
			if g.Get("id").Str != id || g.Get("created").Int() != created || g.Get("model").Str != "m1" || g.Get("object").Str != "chat.completion.chunk" {
				t.Fatalf("frame %d envelope differs: %s", i, f)
			}
			if g.Get("usage").Exists() != includeUsage {
				t.Fatalf("frame %d usage presence wrong (include_usage=%v): %s", i, includeUsage, f)
			}
			if len(g.Get("choices").Array()) == 0 {
				usageChunks++
				if g.Get("usage.total_tokens").Int() != 16 {
					t.Fatalf("usage chunk: %s", f)
				}
				continue
			}
			c := g.Get("choices.0")
			if !c.Get("index").Exists() || !c.Get("delta").Exists() {
				t.Fatalf("frame %d lacks index/delta: %s", i, f)
			}
			if i == 0 && c.Get("delta.role").Str != "assistant" {
				t.Fatalf("first frame lacks role: %s", f)
			}
			if c.Get("finish_reason").Str != "" {
				finishes++
			}
			text.WriteString(c.Get("delta.content").Str)
		}
		if text.String() != "abcdefghij" || finishes != 1 {
			t.Fatalf("text %q finishes %d", text.String(), finishes)
		}
		if want := map[bool]int{true: 1, false: 0}[includeUsage]; usageChunks != want {
			t.Fatalf("usage chunks %d, want %d", usageChunks, want)
		}
		// The relay asked the upstream for usage either way, and passed unknown fields through.
		b := up.Bodies()[0]
		if !gjson.GetBytes(b, "stream_options.include_usage").Bool() || gjson.GetBytes(b, "extra_vendor_field").Raw != `{"keep":[1,2]}` {
			t.Fatalf("upstream body: %s", b)
		}
		rows := tr.logs()
		if len(rows) != 1 || rows[0].Usage.TotalTokens != 16 || rows[0].Usage.Estimated {
			t.Fatalf("log: %+v", rows)
		}
		up.Close()
	}
}

// An upstream that sends no usage still gets a usage chunk (estimated) and an estimated log row.
func TestStreamUsageEstimatedWhenUpstreamHasNone(t *testing.T) {
	up := openaitest.New(openaitest.Options{Answer: "estimated answer text", NoUsage: true})
	defer up.Close()
	tr := newTestRelay(t, nil, openaiChannel("up", up.BaseURL(), "m1"))
	resp := tr.post(tr.Key, `{"model":"m1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
	frames := sseFrames(t, resp.Body)
	resp.Body.Close()
	usage := gjson.Get(frames[len(frames)-2], "usage")
	if usage.Get("completion_tokens").Int() == 0 || usage.Get("prompt_tokens").Int() == 0 {
		t.Fatalf("usage chunk %s", frames[len(frames)-2])
	}
	rows := tr.logs()
	if !rows[0].Usage.Estimated || rows[0].Usage.CompletionTokens != int(usage.Get("completion_tokens").Int()) {
		t.Fatalf("log %+v", rows[0])
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	up := openaitest.New(openaitest.Options{Answer: strings.Repeat("word ", 50), Chunks: 50, ChunkDelay: 100 * time.Millisecond})
	defer up.Close()
	tr := newTestRelay(t, nil, openaiChannel("up", up.BaseURL(), "m1"))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tr.URL+"/chat/completions",
		strings.NewReader(`{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+tr.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := io.ReadAtLeast(resp.Body, buf, 10); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-up.CancelSeen:
	case <-time.After(10 * time.Second): // generous: a loaded CI machine, not the relay, sets the pace
		t.Fatal("the upstream did not see the cancel")
	}
	rows := tr.logs()
	if len(rows) != 1 || rows[0].Status != 499 || !strings.Contains(rows[0].Error, "client") {
		t.Fatalf("log: %+v", rows)
	}
}

func TestUpstreamFailureAfterFirstByte(t *testing.T) {
	for name, opts := range map[string]openaitest.Options{
		"error frame": {Chunks: 6, ErrorAfter: 2},
		"early close": {Chunks: 6, CloseAfter: 3},
	} {
		t.Run(name, func(t *testing.T) {
			up := openaitest.New(opts)
			defer up.Close()
			tr := newTestRelay(t, nil, openaiChannel("up", up.BaseURL(), "m1"))
			client := tr.sdk()
			stream := client.Chat.Completions.NewStreaming(context.Background(), userParams("m1", "hi"))
			n := 0
			for stream.Next() {
				n++
			}
			if stream.Err() == nil || n == 0 {
				t.Fatalf("want chunks then an error, got %d chunks, err %v", n, stream.Err())
			}
			rows := tr.logs()
			if len(rows) != 1 || rows[0].Error == "" || rows[0].TTFB == 0 {
				t.Fatalf("log row must say failed: %+v", rows)
			}
		})
	}
}

func TestUpstreamErrorsBeforeFirstByte(t *testing.T) {
	cases := []struct {
		name   string
		opts   openaitest.Options
		stream bool
		status int
		code   string
	}{
		{"500 non-stream", openaitest.Options{Status: 500, ErrorMessage: "upstream exploded"}, false, 500, "mock_error"},
		{"503 stream", openaitest.Options{Status: 503, ErrorMessage: "upstream overloaded"}, true, 503, "mock_error"},
		{"429", openaitest.Options{Status: 429, ErrorMessage: "slow down", RetryAfter: "7"}, false, 429, "mock_error"},
		{"400", openaitest.Options{Status: 400, ErrorMessage: "bad temperature"}, true, 400, "mock_error"},
		{"401 upstream key", openaitest.Options{Key: "the-right-key"}, false, 401, "invalid_api_key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := openaitest.New(c.opts)
			defer up.Close()
			tr := newTestRelay(t, nil, openaiChannel("up", up.BaseURL(), "m1"))
			body := `{"model":"m1","messages":[{"role":"user","content":"hi"}],"stream":` + map[bool]string{true: "true", false: "false"}[c.stream] + `}`
			resp := tr.post(tr.Key, body)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.opts.RetryAfter != "" && resp.Header.Get("Retry-After") != c.opts.RetryAfter {
				t.Fatalf("Retry-After %q, want the upstream's %q", resp.Header.Get("Retry-After"), c.opts.RetryAfter)
			}
			e := errorBody(t, resp)
			msg, _ := e["message"].(string)
			if c.opts.ErrorMessage != "" && !strings.Contains(msg, c.opts.ErrorMessage) {
				t.Fatalf("message %q lacks the upstream's", msg)
			}
			if e["code"] != c.code || strings.Contains(msg, "sk-upstream-secret") {
				t.Fatalf("error %v", e)
			}
			rows := tr.logs()
			if len(rows) != 1 || rows[0].Status != c.status || rows[0].Error == "" {
				t.Fatalf("log: %+v", rows)
			}
		})
	}
}

func TestUpstreamUnreachableAndTimeout(t *testing.T) {
	// A port with nothing listening: 502.
	tr := newTestRelay(t, nil, openaiChannel("dead", "http://127.0.0.1:1/v1", "m1"))
	resp := tr.post(tr.Key, `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 502 {
		t.Fatalf("unreachable: status %d", resp.StatusCode)
	}
	if e := errorBody(t, resp); e["code"] != "upstream_unreachable" {
		t.Fatalf("unreachable: %v", e)
	}

	// An upstream slower than the channel timeout: 504, for streams too.
	up := openaitest.New(openaitest.Options{Delay: 3 * time.Second})
	defer up.Close()
	slow := openaiChannel("slow", up.BaseURL(), "m2")
	slow.Timeout = 200 * time.Millisecond
	tr2 := newTestRelay(t, nil, slow)
	for _, stream := range []string{"false", "true"} {
		start := time.Now()
		resp := tr2.post(tr2.Key, `{"model":"m2","stream":`+stream+`,"messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 504 || time.Since(start) > 2*time.Second {
			t.Fatalf("timeout (stream=%s): status %d after %v", stream, resp.StatusCode, time.Since(start))
		}
		if e := errorBody(t, resp); e["code"] != "upstream_timeout" {
			t.Fatalf("timeout: %v", e)
		}
	}
}

// A retryable failure on the first channel moves to the next before any byte reached the client.
func TestFailoverBeforeFirstByte(t *testing.T) {
	bad := openaitest.New(openaitest.Options{Status: 503})
	defer bad.Close()
	good := openaitest.New(openaitest.Options{Answer: "from the good one"})
	defer good.Close()
	first := openaiChannel("bad", bad.BaseURL(), "m1")
	first.Priority = 10
	tr := newTestRelay(t, nil, first, openaiChannel("good", good.BaseURL(), "m1"))
	client := tr.sdk()
	comp, err := client.Chat.Completions.New(context.Background(), userParams("m1", "hi"))
	if err != nil || comp.Choices[0].Message.Content != "from the good one" {
		t.Fatalf("%v %v", comp, err)
	}
	if bad.Requests.Load() != 1 {
		t.Fatalf("bad channel tried %d times", bad.Requests.Load())
	}
	rows := tr.logs()
	if rows[0].Channel != "good" || rows[0].Status != 200 {
		t.Fatalf("log %+v", rows[0])
	}
}

func TestRequestErrors(t *testing.T) {
	tr := newTestRelay(t, func(c *relay.Config) { c.Server.MaxBodyBytes = 4096 }, demoChannel())
	revoked := tr.newKey("gone", nil)
	if err := tr.Store.RevokeKey(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	limited := tr.newKey("limited", []string{"other"})
	ok := `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`
	cases := []struct {
		name, key, body string
		status          int
		param, code     string
	}{
		{"missing key", "", ok, 401, "", "missing_api_key"},
		{"unknown key", "sk-relay-nope", ok, 401, "", "invalid_api_key"},
		{"revoked key", revoked, ok, 401, "", "invalid_api_key"},
		{"malformed json", tr.Key, `{"model":"demo",`, 400, "", ""},
		{"not an object", tr.Key, `[1,2]`, 400, "", ""},
		{"missing model", tr.Key, `{"messages":[{"role":"user","content":"hi"}]}`, 400, "model", ""},
		{"model not string", tr.Key, `{"model":5,"messages":[{"role":"user","content":"hi"}]}`, 400, "model", ""},
		{"missing messages", tr.Key, `{"model":"demo"}`, 400, "messages", ""},
		{"messages not array", tr.Key, `{"model":"demo","messages":"hi"}`, 400, "messages", ""},
		{"empty messages", tr.Key, `{"model":"demo","messages":[]}`, 400, "messages", ""},
		{"bad role", tr.Key, `{"model":"demo","messages":[{"role":"wizard","content":"hi"}]}`, 400, "messages[0].role", ""},
		{"content number", tr.Key, `{"model":"demo","messages":[{"role":"user","content":5}]}`, 400, "messages[0].content", ""},
		{"bad part", tr.Key, `{"model":"demo","messages":[{"role":"user","content":[{"text":"x"}]}]}`, 400, "messages[0].content[0]", ""},
		{"stream string", tr.Key, `{"model":"demo","stream":"yes","messages":[{"role":"user","content":"hi"}]}`, 400, "stream", ""},
		{"temperature string", tr.Key, `{"model":"demo","temperature":"hot","messages":[{"role":"user","content":"hi"}]}`, 400, "temperature", ""},
		{"chat ids disagree", tr.Key, `{"model":"demo","chatId":"a","chat_id":"b","messages":[{"role":"user","content":"hi"}]}`, 400, "chatId", ""},
		{"variables not object", tr.Key, `{"model":"demo","variables":"x","messages":[{"role":"user","content":"hi"}]}`, 400, "variables", ""},
		{"detail not bool", tr.Key, `{"model":"demo","detail":"yes","messages":[{"role":"user","content":"hi"}]}`, 400, "detail", ""},
		{"n>1", tr.Key, `{"model":"demo","n":3,"messages":[{"role":"user","content":"hi"}]}`, 400, "n", ""},
		{"too large", tr.Key, `{"model":"demo","messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`, 413, "", "request_too_large"},
		{"unknown model", tr.Key, `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, 404, "model", "model_not_found"},
		{"model not allowed for key", limited, ok, 404, "model", "model_not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := tr.post(c.key, c.body)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			e := errorBody(t, resp)
			if c.param != "" && e["param"] != c.param {
				t.Fatalf("param %v, want %q (%v)", e["param"], c.param, e)
			}
			if c.param != "" && !strings.Contains(e["message"].(string), c.param) {
				t.Fatalf("message %q does not name %q", e["message"], c.param)
			}
			if c.code != "" && e["code"] != c.code {
				t.Fatalf("code %v, want %q", e["code"], c.code)
			}
		})
	}
	// The SDK surfaces these as typed errors.
	client := tr.sdk()
	_, err := client.Chat.Completions.New(context.Background(), userParams("gpt-9", "hi"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Fatalf("sdk error %v", err)
	}
	// Unknown routes and methods answer in the same shape.
	resp := tr.post(tr.Key, "")
	resp.Body.Close()
	r2, _ := http.Get(strings.TrimSuffix(tr.URL, "/v1") + "/nowhere")
	if r2.StatusCode != 404 {
		t.Fatalf("unknown route %d", r2.StatusCode)
	}
	errorBody(t, r2)
}

// Unknown top-level fields, vendor extensions and headers pass through to an OpenAI upstream untouched;
// only model (alias) and stream_options are rewritten.
func TestBodyPassThrough(t *testing.T) {
	up := openaitest.New(openaitest.Options{})
	defer up.Close()
	ch := openaiChannel("up", up.BaseURL(), "alias")
	ch.ModelMap = map[string]string{"alias": "real-model"}
	tr := newTestRelay(t, nil, ch)
	body := `{"model":"alias","messages":[{"role":"user","content":"hi","name":"bob"}],"temperature":0.25,"response_format":{"type":"json_object"},"x_vendor":{"a":[1,"two",null]},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`
	resp := tr.post(tr.Key, body)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	got := up.Bodies()[0]
	var want, have map[string]any
	json.Unmarshal([]byte(body), &want)
	json.Unmarshal(got, &have)
	want["model"] = "real-model"
	wb, _ := json.Marshal(want)
	hb, _ := json.Marshal(have)
	if string(wb) != string(hb) {
		t.Fatalf("upstream body\n got %s\nwant %s", hb, wb)
	}
}

// An upstream that answers 200 and then an error as its first frame has failed before the first byte:
// the next channel is tried, and with none left the client gets a clean HTTP error, not a 200.
func TestStreamFirstFrameErrorFailsOver(t *testing.T) {
	bad := openaitest.New(openaitest.Options{FirstFrameError: true})
	defer bad.Close()
	good := openaitest.New(openaitest.Options{Answer: "second channel"})
	defer good.Close()
	first := openaiChannel("bad", bad.BaseURL(), "m1")
	first.Priority = 10
	tr := newTestRelay(t, nil, first, openaiChannel("good", good.BaseURL(), "m1"))
	client := tr.sdk()
	acc := streamAll(t, client, userParams("m1", "hi"))
	if acc.Choices[0].Message.Content != "second channel" || bad.Requests.Load() != 1 {
		t.Fatalf("%q, bad tried %d", acc.Choices[0].Message.Content, bad.Requests.Load())
	}

	only := newTestRelay(t, nil, openaiChannel("bad", bad.BaseURL(), "m1"))
	resp := only.post(only.Key, `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if e := errorBody(t, resp); !strings.Contains(e["message"].(string), "mock overloaded") {
		t.Fatalf("error %v", e)
	}
}

// A stream whose upstream falls silent longer than the channel's idle_timeout ends with a 504 error
// event instead of hanging.
func TestStreamIdleTimeout(t *testing.T) {
	up := openaitest.New(openaitest.Options{Chunks: 4, ChunkDelay: 5 * time.Second})
	defer up.Close()
	ch := openaiChannel("slow", up.BaseURL(), "m1")
	ch.IdleTimeout = 300 * time.Millisecond
	tr := newTestRelay(t, nil, ch)
	start := time.Now()
	resp := tr.post(tr.Key, `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	frames := sseFrames(t, resp.Body)
	resp.Body.Close()
	if time.Since(start) > 3*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
	if last := frames[len(frames)-1]; !strings.Contains(last, `"code":"upstream_idle_timeout"`) {
		t.Fatalf("last frame %s", last)
	}
	if rows := tr.logs(); rows[0].Status != 504 {
		t.Fatalf("log %+v", rows[0])
	}
}
