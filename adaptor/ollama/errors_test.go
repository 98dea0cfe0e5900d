package ollama

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"relay/adaptor"
	"relay/adaptor/ollama/ollamatest"
)

func mockChannel(up *ollamatest.Server, keys ...string) *adaptor.Channel {
	return &adaptor.Channel{Name: "ol", Kind: "ollama", BaseURL: up.URL, Keys: keys}
}

func chatReq(model string, stream bool) *adaptor.Request {
	s := "false"
	if stream {
		s = "true"
	}
	return &adaptor.Request{Model: model, UpstreamModel: model, Stream: stream,
		Body: []byte(`{"model":"` + model + `","stream":` + s + `,"messages":[{"role":"user","content":"hi"}]}`)}
}

func asError(t *testing.T, err error) *adaptor.Error {
	t.Helper()
	var ae *adaptor.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *adaptor.Error", err, err)
	}
	return ae
}

// HTTP error answers keep their status; model-not-found is 404 model_not_found; a plain 404 (wrong path)
// says how to fix base_url; only 408/429/5xx are retryable.
func TestHTTPErrors(t *testing.T) {
	cases := []struct {
		name      string
		opts      ollamatest.Options
		base      string // appended to the mock URL
		model     string
		status    int
		typ, code string
		msg       string
		retryable bool
	}{
		{"400", ollamatest.Options{Status: 400, ErrorMessage: "option \"num_predict\" must be of type integer"}, "", "m", 400, adaptor.TypeInvalidRequest, "", "num_predict", false},
		{"401 signin", ollamatest.Options{Status: 401, ErrorMessage: "unauthorized", SigninURL: "https://ollama.com/connect?key=abc"}, "", "m", 401, adaptor.TypeAuthentication, "unauthorized", "https://ollama.com/connect", false},
		{"401 wrong key", ollamatest.Options{Key: "right"}, "", "m", 401, adaptor.TypeAuthentication, "unauthorized", "unauthorized", false},
		{"404 model", ollamatest.Options{Models: []string{"llama3.2"}}, "", "llama9", 404, adaptor.TypeInvalidRequest, "model_not_found", `model "llama9" not found`, false},
		{"404 path", ollamatest.Options{}, "/v1", "m", 404, adaptor.TypeNotFound, "not_found", "base_url must be the server root", false},
		{"429", ollamatest.Options{Status: 429, ErrorMessage: "too many requests"}, "", "m", 429, adaptor.TypeRateLimit, "rate_limit_exceeded", "too many requests", true},
		{"500", ollamatest.Options{Status: 500, ErrorMessage: "model requires more system memory (9.1 GiB) than is available (4.0 GiB)"}, "", "m", 500, adaptor.TypeServer, "", "more system memory", true},
		{"502 cloud", ollamatest.Options{Status: 502, ErrorMessage: "cloud model unreachable"}, "", "m", 502, adaptor.TypeServer, "", "unreachable", true},
		{"503 no body", ollamatest.Options{Status: 503, ErrorMessage: " "}, "", "m", 503, adaptor.TypeServer, "", "upstream answered HTTP 503", true},
	}
	for _, c := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(c.name+map[bool]string{false: " complete", true: " stream"}[stream], func(t *testing.T) {
				up := ollamatest.New(c.opts)
				defer up.Close()
				ch := mockChannel(up, "wrong")
				ch.BaseURL += c.base
				var err error
				if stream {
					var ev adaptor.Events
					ev, err = New().Stream(ctxT(t), ch, chatReq(c.model, true))
					if ev != nil {
						ev.Close()
					}
				} else {
					_, err = New().Complete(ctxT(t), ch, chatReq(c.model, false))
				}
				ae := asError(t, err)
				if ae.Status != c.status || ae.Type != c.typ || ae.Code != c.code || ae.Retryable != c.retryable || !strings.Contains(ae.Message, c.msg) {
					t.Fatalf("got %+v", ae)
				}
				if strings.Contains(ae.Message, "wrong") {
					t.Fatalf("message leaks the key: %q", ae.Message)
				}
			})
		}
	}
}

// Failures after the stream opened: an error object, a clean early close, a cut connection.
func TestStreamFailures(t *testing.T) {
	cases := []struct {
		name   string
		opts   ollamatest.Options
		chunks int
		code   string
	}{
		{"error object", ollamatest.Options{Chunks: 5, ErrorAfter: 2}, 2, "upstream_error"},
		{"error object not found", ollamatest.Options{Chunks: 5, ErrorAfter: 3, ErrorMessage: `model "x" not found`}, 3, "model_not_found"},
		{"early close", ollamatest.Options{Chunks: 5, CloseAfter: 3}, 3, codeStreamBroken},
		{"abort", ollamatest.Options{Chunks: 5, CloseAfter: 2, Abort: true}, 2, codeStreamBroken},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := ollamatest.New(c.opts)
			defer up.Close()
			ev, err := New().Stream(ctxT(t), mockChannel(up), chatReq("m", true))
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
			if ae := asError(t, err); n != c.chunks || ae.Code != c.code {
				t.Fatalf("%d chunks then %+v", n, ae)
			}
		})
	}
	// A non-stream answer that is an error object (status 200) fails the completion.
	up := ollamatest.New(ollamatest.Options{ErrorAfter: 1})
	defer up.Close()
	_, err := New().Complete(ctxT(t), mockChannel(up), chatReq("m", false))
	if ae := asError(t, err); ae.Status != 502 || !strings.Contains(ae.Message, "running the model") {
		t.Fatalf("complete: %+v", ae)
	}
	// A non-stream answer without done:true is a bad response.
	up2 := ollamatest.New(ollamatest.Options{Raw: `{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}`})
	defer up2.Close()
	_, err = New().Complete(ctxT(t), mockChannel(up2), chatReq("m", false))
	if ae := asError(t, err); ae.Status != 502 || ae.Code != "bad_response" {
		t.Fatalf("complete without done: %+v", ae)
	}
}

// Cancelling the client's context ends the upstream call (499), a deadline gives 504, and the mock sees
// the cancel; a dead port gives 502 upstream_unreachable.
func TestCancelAndTimeout(t *testing.T) {
	up := ollamatest.New(ollamatest.Options{Chunks: 50, Answer: strings.Repeat("word ", 50), ChunkDelay: 50 * time.Millisecond})
	defer up.Close()
	ctx, cancel := context.WithCancel(ctxT(t))
	ev, err := New().Stream(ctx, mockChannel(up), chatReq("m", true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	for err == nil {
		_, err = ev.Next()
	}
	ev.Close()
	if ae := asError(t, err); ae.Status != 499 {
		t.Fatalf("after cancel: %+v", ae)
	}
	select {
	case <-up.CancelSeen:
	case <-time.After(3 * time.Second):
		t.Fatal("the upstream did not see the cancel")
	}

	slow := ollamatest.New(ollamatest.Options{Delay: 3 * time.Second})
	defer slow.Close()
	for _, stream := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		start := time.Now()
		var err error
		if stream {
			_, err = New().Stream(ctx, mockChannel(slow), chatReq("m", true))
		} else {
			_, err = New().Complete(ctx, mockChannel(slow), chatReq("m", false))
		}
		cancel()
		if ae := asError(t, err); ae.Status != 504 || time.Since(start) > 2*time.Second {
			t.Fatalf("timeout (stream=%v): %+v after %v", stream, ae, time.Since(start))
		}
	}

	_, err = New().Complete(ctxT(t), &adaptor.Channel{BaseURL: "http://127.0.0.1:1"}, chatReq("m", false))
	if ae := asError(t, err); ae.Status != 502 || ae.Code != "upstream_unreachable" || !ae.Retryable {
		t.Fatalf("unreachable: %+v", ae)
	}
}

// Through real HTTP with every line written a few bytes at a time (splitting multi-byte characters), the
// stream gives the same text as whole writes.
func TestSplitWritesOverHTTP(t *testing.T) {
	answer := "Paris — 巴黎 🌍 «ok» \"quoted\"\nnew line"
	var texts []string
	for _, split := range []int{0, 1, 3} {
		up := ollamatest.New(ollamatest.Options{Answer: answer, Chunks: 7, SplitWrites: split, Thinking: "ponder ü"})
		ev, err := New().Stream(ctxT(t), mockChannel(up), chatReq("m", true))
		if err != nil {
			t.Fatal(err)
		}
		comp, err := adaptor.Collect(ev, chatReq("m", true), "id", 1)
		up.Close()
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(comp.Body))
		if comp.Usage.TotalTokens != 11+14 || comp.Usage.Estimated {
			t.Fatalf("usage %+v", comp.Usage)
		}
	}
	for _, s := range texts[1:] {
		if s != texts[0] {
			t.Fatalf("split writes changed the answer:\n%s\n%s", s, texts[0])
		}
	}
	if !strings.Contains(texts[0], `"content":"Paris — 巴黎 🌍 «ok» \"quoted\"\nnew line"`) || !strings.Contains(texts[0], `"reasoning_content":"ponder ü"`) {
		t.Fatalf("completion %s", texts[0])
	}
}

func TestValidate(t *testing.T) {
	good := []*adaptor.Channel{
		{},
		{BaseURL: "http://gpu-box:11434"},
		{BaseURL: "https://ollama.example.com/", Credentials: map[string]string{"max_tokens": "512", "num_ctx": "8192", "keep_alive": "-1"}},
		{Credentials: map[string]string{"keep_alive": "30m"}},
	}
	for i := range good {
		if err := New().Validate(good[i]); err != nil {
			t.Errorf("channel %d: %v", i, err)
		}
	}
	bad := map[string]*adaptor.Channel{
		"base_url":    {BaseURL: "localhost:11434"},
		"server root": {BaseURL: "http://localhost:11434/v1/"},
		"kind openai": {BaseURL: "http://localhost:11434/api/chat"},
		"max_tokens":  {Credentials: map[string]string{"max_tokens": "lots"}},
		"num_ctx":     {Credentials: map[string]string{"num_ctx": "0"}},
		"keep_alive":  {Credentials: map[string]string{"keep_alive": "forever"}},
	}
	for want, ch := range bad {
		if err := New().Validate(ch); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
	}
}

var _ io.Closer = (*events)(nil)
