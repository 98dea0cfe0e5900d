package gemini

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/gemini/geminitest"
)

const testKey = "AIzaSy-test-secret-key"

func channel(base string) *adaptor.Channel {
	return &adaptor.Channel{Name: "gem", Kind: "gemini", BaseURL: base, Keys: []string{testKey}, Credentials: map[string]string{}}
}

func chatReq(body string, stream bool) *adaptor.Request {
	return &adaptor.Request{Body: []byte(body), Model: "gemini-2.0-flash", UpstreamModel: "gemini-2.0-flash", Stream: stream}
}

const hiBody = `{"model":"gemini-2.0-flash","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestValidate(t *testing.T) {
	a := New()
	ok := channel("")
	if err := a.Validate(ok); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]*adaptor.Channel{
		"no keys":          {Name: "g", Keys: nil},
		"bad base":         {Name: "g", Keys: []string{"k"}, BaseURL: "ftp://x"},
		"base with query":  {Name: "g", Keys: []string{"k"}, BaseURL: "https://x/v1beta?key=abc"},
		"max_tokens word":  {Name: "g", Keys: []string{"k"}, Credentials: map[string]string{"max_tokens": "lots"}},
		"max_tokens zero":  {Name: "g", Keys: []string{"k"}, Credentials: map[string]string{"max_tokens": "0"}},
		"base not a URL":   {Name: "g", Keys: []string{"k"}, BaseURL: "generativelanguage.googleapis.com"},
		"max_tokens float": {Name: "g", Keys: []string{"k"}, Credentials: map[string]string{"max_tokens": "1.5"}},
	} {
		if err := a.Validate(ch); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := a.Validate(&adaptor.Channel{Keys: []string{"k"}, Credentials: map[string]string{"max_tokens": "2048"}}); err != nil {
		t.Fatal(err)
	}
}

func TestEndpoint(t *testing.T) {
	ch := channel("")
	for model, want := range map[string]string{
		"gemini-2.0-flash":        DefaultBaseURL + "/models/gemini-2.0-flash:generateContent",
		"models/gemini-1.5-pro":   DefaultBaseURL + "/models/gemini-1.5-pro:generateContent",
		"tunedModels/my-model-1":  DefaultBaseURL + "/tunedModels/my-model-1:generateContent",
		"weird/../name?x=1#frag ": DefaultBaseURL + "/models/weird%2F..%2Fname%3Fx=1%23frag%20:generateContent",
	} {
		if got := endpoint(ch, model, "generateContent"); got != want {
			t.Errorf("%s: %s, want %s", model, got, want)
		}
	}
	ch.BaseURL = "https://proxy.example/gemini/v1beta/"
	if got := endpoint(ch, "g", "streamGenerateContent"); got != "https://proxy.example/gemini/v1beta/models/g:streamGenerateContent" {
		t.Fatal(got)
	}
}

func TestCompleteAgainstMock(t *testing.T) {
	up := geminitest.New(geminitest.Options{Answer: "Paris. 巴黎。", Key: testKey})
	defer up.Close()
	ch := channel(up.BaseURL())
	ch.Credentials["max_tokens"] = "256"
	comp, err := New().Complete(ctxT(t), ch, chatReq(hiBody, false))
	if err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(comp.Body, "choices.0.message.content").Str; got != "Paris. 巴黎。" {
		t.Fatalf("content %q in %s", got, comp.Body)
	}
	if comp.Usage.PromptTokens != 11 || comp.Usage.CompletionTokens != 3 || comp.Usage.TotalTokens != 14 || comp.Usage.Estimated {
		t.Fatalf("usage %+v", comp.Usage)
	}
	r := up.Last()
	if r.Path != "/v1beta/models/gemini-2.0-flash:generateContent" || r.RawQuery != "" || r.Method != "POST" {
		t.Fatalf("request %s %s?%s", r.Method, r.Path, r.RawQuery)
	}
	if r.Header.Get("x-goog-api-key") != testKey || r.Header.Get("Authorization") != "" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", r.Header)
	}
	if gjson.GetBytes(r.Body, "systemInstruction.parts.0.text").Str != "be brief" || gjson.GetBytes(r.Body, "generationConfig.maxOutputTokens").Int() != 256 {
		t.Fatalf("body %s", r.Body)
	}
	// The client's own cap wins over the channel default.
	if _, err := New().Complete(ctxT(t), ch, chatReq(`{"model":"m","max_tokens":7,"messages":[{"role":"user","content":"hi"}]}`, false)); err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(up.Last().Body, "generationConfig.maxOutputTokens").Int(); got != 7 {
		t.Fatalf("maxOutputTokens %d", got)
	}
}

func TestStreamAgainstMock(t *testing.T) {
	for _, crlf := range []bool{false, true} {
		up := geminitest.New(geminitest.Options{Answer: "one two three four", Chunks: 4, CRLF: crlf, Thought: "hmm"})
		ev, err := New().Stream(ctxT(t), channel(up.BaseURL()), chatReq(hiBody, true))
		if err != nil {
			t.Fatal(err)
		}
		comp, err := adaptor.Collect(ev, chatReq(hiBody, true), "chatcmpl-x", 1)
		if err != nil {
			t.Fatal(err)
		}
		b := gjson.ParseBytes(comp.Body)
		if b.Get("choices.0.message.content").Str != "one two three four" || b.Get("choices.0.message.reasoning_content").Str != "hmm" ||
			b.Get("choices.0.finish_reason").Str != "stop" || comp.Usage.TotalTokens != 15 {
			t.Fatalf("crlf=%v: %s", crlf, comp.Body)
		}
		r := up.Last()
		if r.Path != "/v1beta/models/gemini-2.0-flash:streamGenerateContent" || r.RawQuery != "alt=sse" || r.Query.Has("key") {
			t.Fatalf("request %s?%s", r.Path, r.RawQuery)
		}
		if r.Header.Get("x-goog-api-key") != testKey {
			t.Fatalf("key header %q", r.Header.Get("x-goog-api-key"))
		}
		up.Close()
	}
}

func TestToolsAgainstMock(t *testing.T) {
	fixedIDs(t)
	up := geminitest.New(geminitest.Options{FunctionCalls: []geminitest.FunctionCall{{Name: "get_tide", Args: `{"port":"Brest"}`}, {Name: "now"}}})
	defer up.Close()
	body := `{"model":"m","tools":[{"type":"function","function":{"name":"get_tide","parameters":{"type":"object","properties":{"port":{"type":"string"}}}}}],"messages":[{"role":"user","content":"tide?"}]}`
	for _, stream := range []bool{false, true} {
		a := New()
		var comp *adaptor.Completion
		var err error
		if stream {
			var ev adaptor.Events
			if ev, err = a.Stream(ctxT(t), channel(up.BaseURL()), chatReq(body, true)); err == nil {
				comp, err = adaptor.Collect(ev, chatReq(body, true), "x", 1)
			}
		} else {
			comp, err = a.Complete(ctxT(t), channel(up.BaseURL()), chatReq(body, false))
		}
		if err != nil {
			t.Fatal(err)
		}
		m := gjson.GetBytes(comp.Body, "choices.0")
		if m.Get("finish_reason").Str != "tool_calls" || m.Get("message.content").Type != gjson.Null ||
			m.Get("message.tool_calls.0.function.arguments").Str != `{"port":"Brest"}` || m.Get("message.tool_calls.1.function.name").Str != "now" ||
			m.Get("message.tool_calls.1.function.arguments").Str != `{}` || !strings.HasPrefix(m.Get("message.tool_calls.0.id").Str, "call_") {
			t.Fatalf("stream=%v: %s", stream, comp.Body)
		}
	}
}

func TestErrorsAgainstMock(t *testing.T) {
	cases := []struct {
		name   string
		opts   geminitest.Options
		key    string
		status int
		code   string
	}{
		{"invalid key", geminitest.Options{Key: "right"}, "wrong", 401, "invalid_api_key"},
		{"quota", geminitest.Options{Status: 429, RetryDelay: "12s", ErrorMessage: "quota"}, testKey, 429, "rate_limit_exceeded"},
		{"overloaded", geminitest.Options{Status: 503, ErrorMessage: "overloaded"}, testKey, 503, "unavailable"},
		{"internal", geminitest.Options{Status: 500}, testKey, 500, "internal"},
		{"not found", geminitest.Options{Status: 404, ErrorMessage: "models/x is not found"}, testKey, 404, "not_found"},
		{"no key", geminitest.Options{}, "", 403, "permission_denied"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := geminitest.New(c.opts)
			defer up.Close()
			ch := channel(up.BaseURL())
			ch.Keys = []string{c.key}
			if c.key == "" {
				ch.Keys = nil
			}
			for _, stream := range []bool{false, true} {
				var err error
				if stream {
					_, err = New().Stream(ctxT(t), ch, chatReq(hiBody, true))
				} else {
					_, err = New().Complete(ctxT(t), ch, chatReq(hiBody, false))
				}
				var ae *adaptor.Error
				if !errors.As(err, &ae) || ae.Status != c.status || ae.Code != c.code {
					t.Fatalf("stream=%v: %v", stream, err)
				}
				if c.key != "" && strings.Contains(ae.Message, c.key) {
					t.Fatalf("key leaked: %s", ae.Message)
				}
			}
		})
	}
}

func TestStreamFailuresAgainstMock(t *testing.T) {
	for name, c := range map[string]struct {
		opts geminitest.Options
		code string
	}{
		"early close":      {geminitest.Options{Chunks: 4, CloseAfter: 2}, "upstream_stream_broken"},
		"mid-stream error": {geminitest.Options{Chunks: 4, ErrorAfter: 2}, "internal"},
	} {
		t.Run(name, func(t *testing.T) {
			up := geminitest.New(c.opts)
			defer up.Close()
			ev, err := New().Stream(ctxT(t), channel(up.BaseURL()), chatReq(hiBody, true))
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()
			n := 0
			for {
				_, err = ev.Next()
				if err != nil {
					break
				}
				n++
			}
			var ae *adaptor.Error
			if n != 2 || !errors.As(err, &ae) || ae.Code != c.code || !ae.Retryable {
				t.Fatalf("%d events then %v", n, err)
			}
		})
	}
}

func TestPromptBlockedAgainstMock(t *testing.T) {
	up := geminitest.New(geminitest.Options{BlockReason: "SAFETY"})
	defer up.Close()
	comp, err := New().Complete(ctxT(t), channel(up.BaseURL()), chatReq(hiBody, false))
	if err != nil || gjson.GetBytes(comp.Body, "choices.0.finish_reason").Str != "content_filter" {
		t.Fatalf("%v %s", err, comp.Body)
	}
	ev, err := New().Stream(ctxT(t), channel(up.BaseURL()), chatReq(hiBody, true))
	if err != nil {
		t.Fatal(err)
	}
	comp, err = adaptor.Collect(ev, chatReq(hiBody, true), "x", 1)
	if err != nil || gjson.GetBytes(comp.Body, "choices.0.finish_reason").Str != "content_filter" || comp.Usage.PromptTokens != 11 {
		t.Fatalf("%v %s", err, comp.Body)
	}
}

// A stream answered with JSON (no alt=sse honoured, or an error with status 200) is an error, not a hang.
func TestStreamAnsweredWithJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, "err") {
			io.WriteString(w, `{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}`)
			return
		}
		io.WriteString(w, `[{"candidates":[]}]`)
	}))
	defer srv.Close()
	for model, code := range map[string]string{"err": "unavailable", "array": "bad_response"} {
		req := chatReq(hiBody, true)
		req.UpstreamModel = model
		_, err := New().Stream(ctxT(t), channel(srv.URL), req)
		var ae *adaptor.Error
		if !errors.As(err, &ae) || ae.Code != code {
			t.Fatalf("%s: %v", model, err)
		}
	}
}

func TestCancelDuringDelay(t *testing.T) {
	up := geminitest.New(geminitest.Options{Delay: 5 * time.Second})
	defer up.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := New().Stream(ctx, channel(up.BaseURL()), chatReq(hiBody, true))
	var ae *adaptor.Error
	if !errors.As(err, &ae) || ae.Status != 499 || time.Since(start) > 3*time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	select {
	case <-up.CancelSeen:
	case <-time.After(3 * time.Second):
		t.Fatal("the mock did not see the cancel")
	}
}

func TestCancelMidStream(t *testing.T) {
	up := geminitest.New(geminitest.Options{Chunks: 20, Answer: strings.Repeat("word ", 20), ChunkDelay: 200 * time.Millisecond})
	defer up.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev, err := New().Stream(ctx, channel(up.BaseURL()), chatReq(hiBody, true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = ev.Next()
	var ae *adaptor.Error
	if !errors.As(err, &ae) || ae.Status != 499 {
		t.Fatalf("%v", err)
	}
	ev.Close()
	select {
	case <-up.CancelSeen:
	case <-time.After(3 * time.Second):
		t.Fatal("the mock did not see the cancel")
	}
}

func TestRequestErrors(t *testing.T) {
	cases := []struct{ body, param string }{
		{`{"messages":[{"role":"tool","tool_call_id":"nope","content":"x"}]}`, "messages[0].tool_call_id"},
		{`{"messages":[{"role":"user","content":[{"type":"video","video":{}}]}]}`, "messages[0].content[0].type"},
		{`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}`, "messages[0].content[0].image_url.url"},
		{`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:text/plain;base64,aGk="}}]}]}`, "messages[0].content[0].image_url.url"},
		{`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`, "messages[0].content[0].image_url.url"},
		{`{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}`, "messages[0].content[0].file"},
		{`{"messages":[{"role":"system","content":"only a system prompt"}]}`, "messages"},
		{`{"messages":[{"role":"user","content":""}]}`, "messages"},
		{`{"messages":"hi"}`, "messages"},
		{`{"response_format":{"type":"grammar"},"messages":[{"role":"user","content":"x"}]}`, "response_format.type"},
		{`{"messages":[{"role":"wizard","content":"x"}]}`, "messages[0].role"},
	}
	for _, c := range cases {
		_, err := buildRequest(ctxT(t), []byte(c.body), "")
		var ae *adaptor.Error
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Param != c.param {
			t.Errorf("%s: %v (%+v)", c.body, err, ae)
		}
	}
	// A private image URL is refused by the shared fetcher.
	_, err := buildRequest(ctxT(t), []byte(`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://127.0.0.1:1/x.png"}}]}]}`), "")
	var ae *adaptor.Error
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "private") {
		t.Fatalf("%v", err)
	}
}

func TestToolChoice(t *testing.T) {
	tools := `"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}]`
	for choice, want := range map[string]string{
		`"auto"`:     `{"functionCallingConfig":{"mode":"AUTO"}}`,
		`"none"`:     `{"functionCallingConfig":{"mode":"NONE"}}`,
		`"required"`: `{"functionCallingConfig":{"mode":"ANY"}}`,
		`{"type":"function","function":{"name":"f"}}`: `{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["f"]}}`,
		`null`: ``,
	} {
		out, err := buildRequest(ctxT(t), []byte(`{`+tools+`,"tool_choice":`+choice+`,"messages":[{"role":"user","content":"x"}]}`), "")
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(out, "toolConfig").Raw; got != want {
			t.Errorf("%s: %s, want %s", choice, got, want)
		}
	}
	// No tools: no toolConfig either.
	out, _ := buildRequest(ctxT(t), []byte(`{"tool_choice":"required","messages":[{"role":"user","content":"x"}]}`), "")
	if gjson.GetBytes(out, "toolConfig").Exists() || gjson.GetBytes(out, "tools").Exists() || gjson.GetBytes(out, "generationConfig").Exists() {
		t.Fatalf("%s", out)
	}
}

func TestHTTPImageFetched(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\nfake")
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	}))
	defer img.Close()
	old := adaptor.Images.AllowPrivate
	adaptor.Images.AllowPrivate = true
	defer func() { adaptor.Images.AllowPrivate = old }()
	out, err := buildRequest(ctxT(t), []byte(`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"`+img.URL+`/cat.png"}}]}]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(out, "contents.0.parts.0.inlineData").Raw; got != `{"mimeType":"image/png","data":"iVBORw0KGgpmYWtl"}` {
		t.Fatalf("%s", out)
	}
}
