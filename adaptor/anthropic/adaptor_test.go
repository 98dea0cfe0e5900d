package anthropic_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/anthropic"
	"relay/adaptor/anthropic/anthropictest"
)

// bounded returns a context that ends the test's upstream calls after a few seconds at most.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func channel(baseURL string) *adaptor.Channel {
	return &adaptor.Channel{Name: "claude", Kind: "anthropic", BaseURL: baseURL, Keys: []string{"sk-ant-test"}, Credentials: map[string]string{}}
}

func chatRequest(body string) *adaptor.Request {
	m := gjson.Get(body, "model").Str
	return &adaptor.Request{Body: []byte(body), Model: m, UpstreamModel: m, Stream: gjson.Get(body, "stream").Bool()}
}

// drain reads a whole stream: text, reasoning, tool calls by OpenAI index (copied as they come), the last
// finish reason and usage, and the error that ended it (nil after message_stop).
type drained struct {
	text, reasoning string
	ids, names      []string
	args            []string
	finish          string
	usage           adaptor.Usage
	events          int
	err             error
}

func drain(t *testing.T, ev adaptor.Events) drained {
	t.Helper()
	defer ev.Close()
	var d drained
	for {
		e, err := ev.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				d.err = err
			}
			return d
		}
		d.events++
		if e.HasUsage {
			d.usage = e.Usage
		}
		c := gjson.GetBytes(e.Choices, "0")
		d.text += c.Get("delta.content").Str
		d.reasoning += c.Get("delta.reasoning_content").Str
		if f := c.Get("finish_reason").Str; f != "" {
			d.finish = f
		}
		c.Get("delta.tool_calls").ForEach(func(_, tc gjson.Result) bool {
			i := int(tc.Get("index").Int())
			if i == len(d.ids) {
				d.ids, d.names, d.args = append(d.ids, ""), append(d.names, ""), append(d.args, "")
			}
			if i >= len(d.ids) {
				t.Fatalf("tool index %d out of order", i)
			}
			d.ids[i] += tc.Get("id").Str
			d.names[i] += tc.Get("function.name").Str
			d.args[i] += tc.Get("function.arguments").Str
			return true
		})
	}
}

func TestCompleteHeadersAndBody(t *testing.T) {
	up := anthropictest.New(anthropictest.Options{Answer: "Bonjour !", Key: "sk-ant-test", InputTokens: 14, OutputTokens: 6})
	defer up.Close()
	a := anthropic.New()
	ch := channel(up.BaseURL())
	req := chatRequest(`{"model":"alias","messages":[{"role":"system","content":"Reply in French."},{"role":"user","content":"Good morning"}]}`)
	req.UpstreamModel = "claude-3-5-haiku-20241022"
	comp, err := a.Complete(bounded(t), ch, req)
	if err != nil {
		t.Fatal(err)
	}
	g := gjson.ParseBytes(comp.Body)
	if g.Get("choices.0.message.content").Str != "Bonjour !" || g.Get("model").Str != "alias" || g.Get("object").Str != "chat.completion" ||
		g.Get("choices.0.finish_reason").Str != "stop" || !strings.HasPrefix(g.Get("id").Str, "chatcmpl-") {
		t.Fatalf("completion %s", comp.Body)
	}
	if comp.Usage != (adaptor.Usage{PromptTokens: 14, CompletionTokens: 6, TotalTokens: 20}) {
		t.Fatalf("usage %+v", comp.Usage)
	}
	h := up.Headers()[0]
	if h.Get("X-Api-Key") != "sk-ant-test" || h.Get("Authorization") != "" || h.Get("Anthropic-Version") != "2023-06-01" ||
		h.Get("Content-Type") != "application/json" || h.Get("Anthropic-Beta") != "" {
		t.Fatalf("headers %v", h)
	}
	b := up.Bodies()[0]
	if got, want := string(b), `{"model":"claude-3-5-haiku-20241022","max_tokens":4096,"messages":[{"role":"user","content":"Good morning"}],"system":"Reply in French."}`; got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
}

func TestChannelSettings(t *testing.T) {
	up := anthropictest.New(anthropictest.Options{})
	defer up.Close()
	ch := channel(up.BaseURL() + "/v1/") // a base URL that already names the version works too
	ch.Credentials = map[string]string{"version": "2024-01-01", "max_tokens": "777", "beta": "token-efficient-tools-2025-02-19"}
	req := chatRequest(`{"model":"claude-x","messages":[{"role":"user","content":"hi"}]}`)
	req.APIKey = "sk-ant-per-request"
	if _, err := anthropic.New().Complete(bounded(t), ch, req); err != nil {
		t.Fatal(err)
	}
	h := up.Headers()[0]
	if h.Get("Anthropic-Version") != "2024-01-01" || h.Get("Anthropic-Beta") != "token-efficient-tools-2025-02-19" || h.Get("X-Api-Key") != "sk-ant-per-request" {
		t.Fatalf("headers %v", h)
	}
	if n := gjson.GetBytes(up.Bodies()[0], "max_tokens").Int(); n != 777 {
		t.Fatalf("max_tokens %d", n)
	}
	// The client's own cap wins over the channel default.
	req = chatRequest(`{"model":"claude-x","max_tokens":12,"messages":[{"role":"user","content":"hi"}]}`)
	if _, err := anthropic.New().Complete(bounded(t), ch, req); err != nil {
		t.Fatal(err)
	}
	if n := gjson.GetBytes(up.Bodies()[1], "max_tokens").Int(); n != 12 {
		t.Fatalf("max_tokens %d", n)
	}
}

func TestValidate(t *testing.T) {
	a := anthropic.New()
	ok := channel("")
	if err := a.Validate(ok); err != nil {
		t.Fatalf("default base URL: %v", err)
	}
	for name, ch := range map[string]*adaptor.Channel{
		"no keys":        {Name: "c", Kind: "anthropic"},
		"bad base":       {Name: "c", Kind: "anthropic", BaseURL: "api.anthropic.com", Keys: []string{"k"}},
		"bad max_tokens": {Name: "c", Kind: "anthropic", Keys: []string{"k"}, Credentials: map[string]string{"max_tokens": "lots"}},
		"bad fetch":      {Name: "c", Kind: "anthropic", Keys: []string{"k"}, Credentials: map[string]string{"fetch_images": "maybe"}},
	} {
		if err := a.Validate(ch); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var _ adaptor.Validator = a
	var _ adaptor.Adaptor = a
}

func TestStreamText(t *testing.T) {
	up := anthropictest.New(anthropictest.Options{Answer: "Paris is the capital. 巴黎是首都。", Chunks: 7, Thinking: "easy one", InputTokens: 21, CacheReadTokens: 4})
	defer up.Close()
	ev, err := anthropic.New().Stream(bounded(t), channel(up.BaseURL()), chatRequest(`{"model":"claude-x","stream":true,"messages":[{"role":"user","content":"capital of France?"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := drain(t, ev)
	if d.err != nil || d.text != "Paris is the capital. 巴黎是首都。" || d.reasoning != "easy one" || d.finish != "stop" {
		t.Fatalf("%+v", d)
	}
	// 7 text deltas + 1 thinking delta; the placeholder output_tokens:1 of message_start is not added.
	if d.usage != (adaptor.Usage{PromptTokens: 25, CompletionTokens: 8, TotalTokens: 33}) {
		t.Fatalf("usage %+v", d.usage)
	}
	if h := up.Headers()[0]; h.Get("Accept") != "text/event-stream" || !gjson.GetBytes(up.Bodies()[0], "stream").Bool() {
		t.Fatalf("stream request: %v %s", h, up.Bodies()[0])
	}
}

func TestStreamToolCalls(t *testing.T) {
	tools := []anthropictest.ToolCall{
		{ID: "toolu_01A", Name: "get_tide", Input: `{"port":"Brest","day":"demain","note":"marée \"haute\""}`},
		{ID: "toolu_01B", Name: "get_weather", Input: `{"city":"Brest"}`},
	}
	up := anthropictest.New(anthropictest.Options{Answer: "Let me look.", ToolCalls: tools, AnswerWithTools: true, ArgChunks: 5})
	defer up.Close()
	body := `{"model":"claude-x","stream":true,"tools":[{"type":"function","function":{"name":"get_tide","parameters":{"type":"object"}}},{"type":"function","function":{"name":"get_weather"}}],"messages":[{"role":"user","content":"tides?"}]}`
	ev, err := anthropic.New().Stream(bounded(t), channel(up.BaseURL()), chatRequest(body))
	if err != nil {
		t.Fatal(err)
	}
	d := drain(t, ev)
	if d.err != nil || d.text != "Let me look." || d.finish != "tool_calls" || len(d.ids) != 2 {
		t.Fatalf("%+v", d)
	}
	for i, tc := range tools {
		if d.ids[i] != tc.ID || d.names[i] != tc.Name || d.args[i] != tc.Input {
			t.Fatalf("tool %d: id %q name %q args %q", i, d.ids[i], d.names[i], d.args[i])
		}
	}
	// Non-stream: the same calls.
	comp, err := anthropic.New().Complete(bounded(t), channel(up.BaseURL()), chatRequest(strings.Replace(body, `"stream":true,`, "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	g := gjson.ParseBytes(comp.Body)
	if g.Get("choices.0.finish_reason").Str != "tool_calls" || g.Get("choices.0.message.tool_calls.#").Int() != 2 ||
		g.Get("choices.0.message.tool_calls.0.function.arguments").Str != tools[0].Input || g.Get("choices.0.message.tool_calls.1.id").Str != "toolu_01B" {
		t.Fatalf("completion %s", comp.Body)
	}
}

func TestUpstreamErrors(t *testing.T) {
	cases := []struct {
		status    int
		typ       string
		want      int
		wantType  string
		retryable bool
	}{
		{400, "invalid_request_error", 400, adaptor.TypeInvalidRequest, false},
		{401, "authentication_error", 401, adaptor.TypeAuthentication, false},
		{403, "permission_error", 403, adaptor.TypePermission, false},
		{404, "not_found_error", 404, adaptor.TypeNotFound, false},
		{413, "request_too_large", 413, adaptor.TypeInvalidRequest, false},
		{429, "rate_limit_error", 429, adaptor.TypeRateLimit, true},
		{500, "api_error", 500, adaptor.TypeServer, true},
		{529, "overloaded_error", 503, adaptor.TypeServer, true},
	}
	for _, c := range cases {
		for _, stream := range []bool{false, true} {
			up := anthropictest.New(anthropictest.Options{Status: c.status, ErrorType: c.typ, ErrorMessage: "mock says " + c.typ})
			a, ch := anthropic.New(), channel(up.BaseURL())
			var err error
			if stream {
				_, err = a.Stream(bounded(t), ch, chatRequest(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
			} else {
				_, err = a.Complete(bounded(t), ch, chatRequest(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
			}
			up.Close()
			var ae *adaptor.Error
			if !errors.As(err, &ae) || ae.Status != c.want || ae.Type != c.wantType || ae.Code != c.typ || ae.Retryable != c.retryable ||
				!strings.Contains(ae.Message, "mock says "+c.typ) || !strings.Contains(ae.Message, "req_mock01") || strings.Contains(ae.Message, "sk-ant") {
				t.Errorf("%d (stream %v): got %#v", c.status, stream, err)
			}
		}
	}
	// A wrong key is the upstream's 401, with its message.
	up := anthropictest.New(anthropictest.Options{Key: "sk-ant-right"})
	defer up.Close()
	_, err := anthropic.New().Complete(bounded(t), channel(up.BaseURL()), chatRequest(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	var ae *adaptor.Error
	if !errors.As(err, &ae) || ae.Status != 401 || !strings.Contains(ae.Message, "invalid x-api-key") {
		t.Fatalf("bad key: %v", err)
	}
}

func TestParseErrorOddBodies(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		want   int
		code   string
	}{
		{502, `<html>bad gateway</html>`, 502, ""},
		{529, ``, 503, ""},
		{200, `{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}`, 429, "rate_limit_error"},
		{200, `{"type":"error","error":{"type":"something_new","message":"?"}}`, 502, "something_new"},
		{418, `{"error":"plain string"}`, 418, ""},
	} {
		e := anthropic.ParseError(c.status, []byte(c.body))
		if e == nil || e.Status != c.want || e.Code != c.code || e.Message == "" {
			t.Errorf("%d %s: %#v", c.status, c.body, e)
		}
	}
}

func TestStreamFailures(t *testing.T) {
	req := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	t.Run("early close", func(t *testing.T) {
		up := anthropictest.New(anthropictest.Options{Chunks: 6, CloseAfter: 3})
		defer up.Close()
		ev, err := anthropic.New().Stream(bounded(t), channel(up.BaseURL()), chatRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		d := drain(t, ev)
		var ae *adaptor.Error
		if !errors.As(d.err, &ae) || ae.Code != "upstream_stream_broken" || ae.Status != 502 || d.text == "" {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("error event", func(t *testing.T) {
		up := anthropictest.New(anthropictest.Options{Chunks: 6, ErrorAfter: 2})
		defer up.Close()
		ev, err := anthropic.New().Stream(bounded(t), channel(up.BaseURL()), chatRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		d := drain(t, ev)
		var ae *adaptor.Error
		if !errors.As(d.err, &ae) || ae.Code != "overloaded_error" || ae.Status != 503 || !ae.Retryable || d.text == "" {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("timeout before the answer", func(t *testing.T) {
		up := anthropictest.New(anthropictest.Options{Delay: 5 * time.Second})
		defer up.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := anthropic.New().Stream(ctx, channel(up.BaseURL()), chatRequest(req))
		var ae *adaptor.Error
		if !errors.As(err, &ae) || ae.Status != 504 || time.Since(start) > 3*time.Second {
			t.Fatalf("%v after %v", err, time.Since(start))
		}
		select {
		case <-up.CancelSeen:
		case <-time.After(3 * time.Second):
			t.Fatal("the mock did not see the cancel")
		}
	})
	t.Run("client cancels mid-stream", func(t *testing.T) {
		up := anthropictest.New(anthropictest.Options{Chunks: 50, ChunkDelay: 50 * time.Millisecond})
		defer up.Close()
		ctx, cancel := context.WithCancel(bounded(t))
		ev, err := anthropic.New().Stream(ctx, channel(up.BaseURL()), chatRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		defer ev.Close()
		for i := 0; i < 3; i++ {
			if _, err := ev.Next(); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		var ae *adaptor.Error
		for {
			_, err := ev.Next()
			if err != nil {
				if !errors.As(err, &ae) || ae.Status != 499 {
					t.Fatalf("got %v", err)
				}
				break
			}
		}
		select {
		case <-up.CancelSeen:
		case <-time.After(3 * time.Second):
			t.Fatal("the mock did not see the cancel")
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		_, err := anthropic.New().Stream(bounded(t), channel("http://127.0.0.1:1"), chatRequest(req))
		var ae *adaptor.Error
		if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "upstream_unreachable" {
			t.Fatalf("got %v", err)
		}
	})
}

func TestImages(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\nfake")
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	}))
	defer img.Close()
	up := anthropictest.New(anthropictest.Options{})
	defer up.Close()
	body := `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},{"type":"image_url","image_url":{"url":"` + img.URL + `/a.png"}},{"type":"image_url","image_url":{"url":"data:image/gif;base64,R0lGOD=="}}]}]}`

	// By default an http(s) URL is passed as a url source; the relay fetches nothing.
	if _, err := anthropic.New().Complete(bounded(t), channel(up.BaseURL()), chatRequest(body)); err != nil {
		t.Fatal(err)
	}
	c := gjson.GetBytes(up.Bodies()[0], "messages.0.content")
	if c.Get("1.source.type").Str != "url" || c.Get("1.source.url").Str != img.URL+"/a.png" ||
		c.Get("2.source.type").Str != "base64" || c.Get("2.source.media_type").Str != "image/gif" || c.Get("2.source.data").Str != "R0lGOD==" {
		t.Fatalf("content %s", c.Raw)
	}

	// With fetch_images the relay downloads it (through the guarded shared fetcher) and inlines it.
	ch := channel(up.BaseURL())
	ch.Credentials["fetch_images"] = "true"
	if _, err := anthropic.New().Complete(bounded(t), ch, chatRequest(body)); !errors.As(err, new(*adaptor.Error)) || adaptor.AsError(err).Status != 400 {
		t.Fatalf("a loopback image must be refused: %v", err)
	}
	adaptor.Images.AllowPrivate = true
	defer func() { adaptor.Images.AllowPrivate = false }()
	if _, err := anthropic.New().Complete(bounded(t), ch, chatRequest(body)); err != nil {
		t.Fatal(err)
	}
	c = gjson.GetBytes(up.Bodies()[1], "messages.0.content")
	if c.Get("1.source.type").Str != "base64" || c.Get("1.source.media_type").Str != "image/png" || c.Get("1.source.data").Str != base64.StdEncoding.EncodeToString(png) {
		t.Fatalf("content %s", c.Raw)
	}
}
