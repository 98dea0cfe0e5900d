package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// counterIDs makes ids prefix1, prefix2, ... so golden files are stable: the returned function makes
// the adaptor's completion ids, and tool-call ids (adaptor.NewToolCallID, until the test ends) share its
// count.
func counterIDs(t testing.TB) func(string) string {
	n := 0
	ids := func(prefix string) string {
		n++
		return prefix + strconv.Itoa(n)
	}
	old := adaptor.NewToolCallID
	adaptor.NewToolCallID = func() string { return ids("call_") }
	t.Cleanup(func() { adaptor.NewToolCallID = old })
	return ids
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// sent is what a fake upstream received.
type sent struct {
	req  *http.Request
	body []byte
}

// fakeChannel answers every request with status and body, recording what it was sent.
func fakeChannel(status int, body string) (*adaptor.Channel, *sent) {
	s := &sent{}
	ch := &adaptor.Channel{Name: "ol", Kind: "ollama", HTTP: &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		s.req = r
		s.body, _ = io.ReadAll(r.Body)
		return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}},
			Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	})}}
	return ch, s
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("invalid JSON %v: %s", err, b)
	}
	return buf.String()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// golden request files: {"openai": client body, "ollama": expected upstream body, "credentials",
// "stream", "upstream_model"}.
func TestRequestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/request/*.json")
	if len(files) == 0 {
		t.Fatal("no golden request files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			g := gjson.ParseBytes(raw)
			req := &adaptor.Request{Body: []byte(g.Get("openai").Raw), Model: g.Get("openai.model").Str,
				UpstreamModel: g.Get("upstream_model").Str, Stream: g.Get("stream").Bool()}
			ch := &adaptor.Channel{Name: "ol", Credentials: map[string]string{}}
			g.Get("credentials").ForEach(func(k, v gjson.Result) bool {
				ch.Credentials[k.Str] = v.Str
				return true
			})
			if err := New().Validate(ch); err != nil {
				t.Fatal(err)
			}
			a := &Adaptor{newID: counterIDs(t)}
			got, err := a.buildBody(ctxT(t), ch, req, req.Stream)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			if want := compact(t, []byte(g.Get("ollama").Raw)); compact(t, got) != want {
				t.Fatalf("body\n got %s\nwant %s", got, want)
			}
		})
	}
}

// The wire doc's §2 example goes out byte for byte, to POST {base}/api/chat, with no Authorization
// header when the channel has no key.
func TestRequestOnTheWire(t *testing.T) {
	ch, got := fakeChannel(200, `{"model":"llama3.2","created_at":"2024-11-05T09:12:44.123456789Z","message":{"role":"assistant","content":"Hot."},"done":true,"done_reason":"stop","prompt_eval_count":24,"eval_count":3}`)
	req := &adaptor.Request{Body: []byte(`{"model":"llama3.2","messages":[{"role":"system","content":"Answer with one word."},{"role":"user","content":"Opposite of cold?"}],"temperature":0.2,"max_tokens":16,"seed":7}`),
		Model: "llama3.2", UpstreamModel: "llama3.2"}
	if _, err := New().Complete(ctxT(t), ch, req); err != nil {
		t.Fatal(err)
	}
	const want = `{"model":"llama3.2","stream":false,"messages":[{"role":"system","content":"Answer with one word."},{"role":"user","content":"Opposite of cold?"}],"options":{"temperature":0.2,"num_predict":16,"seed":7}}`
	if string(got.body) != want {
		t.Fatalf("body\n got %s\nwant %s", got.body, want)
	}
	if got.req.Method != "POST" || got.req.URL.String() != "http://127.0.0.1:11434/api/chat" {
		t.Fatalf("sent %s %s", got.req.Method, got.req.URL)
	}
	if got.req.Header.Get("Content-Type") != "application/json" || got.req.Header.Get("Authorization") != "" {
		t.Fatalf("headers %v", got.req.Header)
	}

	// With a key (and a base URL with a trailing slash), the key goes as a Bearer token.
	ch.BaseURL, ch.Keys = "https://ollama.example.com/", []string{"sk-ol"}
	if _, err := New().Complete(ctxT(t), ch, req); err != nil {
		t.Fatal(err)
	}
	if got.req.URL.String() != "https://ollama.example.com/api/chat" || got.req.Header.Get("Authorization") != "Bearer sk-ol" {
		t.Fatalf("sent %s with %v", got.req.URL, got.req.Header)
	}
}

func TestRequestErrors(t *testing.T) {
	cases := []struct{ name, body, param string }{
		{"arguments not an object", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1,2]"}}]}]}`, "messages[0].tool_calls[0].function.arguments"},
		{"arguments not JSON", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}`, "messages[1].tool_calls[0].function.arguments"},
		{"audio part", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}]}`, "messages[0].content[1]"},
		{"image not image", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:text/plain;base64,AAA"}}]}]}`, "messages[0].content[0].image_url.url"},
		{"image no url", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`, "messages[0].content[0].image_url.url"},
		{"image private address", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://127.0.0.1:1/x.png"}}]}]}`, "messages[0].content[0].image_url.url"},
		{"bad role", `{"model":"m","messages":[{"role":"wizard","content":"x"}]}`, "messages[0].role"},
		{"content number", `{"model":"m","messages":[{"role":"user","content":5}]}`, "messages[0].content"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, got := fakeChannel(200, "")
			_, err := New().Complete(ctxT(t), ch, &adaptor.Request{Body: []byte(c.body), Model: "m"})
			var ae *adaptor.Error
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Param != c.param || ae.Retryable {
				t.Fatalf("err %#v, want 400 on %s", err, c.param)
			}
			if got.req != nil {
				t.Fatal("a bad request reached the upstream")
			}
		})
	}
}

// An http(s) image URL is fetched by the relay and sent as raw base64.
func TestRequestFetchesImageURL(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\nfake")
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	}))
	defer img.Close()
	a := &Adaptor{images: &adaptor.ImageFetcher{MaxBytes: 1 << 20, Timeout: 5 * time.Second, AllowPrivate: true}}
	req := &adaptor.Request{Model: "llava", Body: []byte(`{"model":"llava","messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},{"type":"image_url","image_url":{"url":"` + img.URL + `/a.png"}}]}]}`)}
	got, err := a.buildBody(ctxT(t), &adaptor.Channel{}, req, false)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"llava","stream":false,"messages":[{"role":"user","content":"what is it?","images":["iVBORw0KGgpmYWtl"]}]}`
	if string(got) != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
}

// golden response files: {"ollama": the non-stream answer, "openai": the expected chat.completion}.
func TestResponseGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/response/*.json")
	if len(files) == 0 {
		t.Fatal("no golden response files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			g := gjson.ParseBytes(raw)
			ch, _ := fakeChannel(200, compact(t, []byte(g.Get("ollama").Raw))+"\n")
			model := g.Get("openai.model").Str
			a := &Adaptor{newID: counterIDs(t)}
			comp, err := a.Complete(ctxT(t), ch, &adaptor.Request{Body: []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`), Model: model})
			if err != nil {
				t.Fatal(err)
			}
			if want := compact(t, []byte(g.Get("openai").Raw)); compact(t, comp.Body) != want {
				t.Fatalf("completion\n got %s\nwant %s", comp.Body, want)
			}
			u := g.Get("openai.usage")
			if comp.Usage.PromptTokens != int(u.Get("prompt_tokens").Int()) || comp.Usage.CompletionTokens != int(u.Get("completion_tokens").Int()) ||
				comp.Usage.TotalTokens != int(u.Get("total_tokens").Int()) || comp.Usage.Estimated {
				t.Fatalf("usage %+v", comp.Usage)
			}
		})
	}
}

// Without eval counts the usage is estimated; without created_at the time is now.
func TestResponseWithoutUsage(t *testing.T) {
	ch, _ := fakeChannel(200, `{"model":"m","message":{"role":"assistant","content":"Hello there, friend."},"done":true}`)
	before := time.Now().Unix()
	comp, err := New().Complete(ctxT(t), ch, &adaptor.Request{Body: []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`), Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if !comp.Usage.Estimated || comp.Usage.PromptTokens == 0 || comp.Usage.CompletionTokens == 0 {
		t.Fatalf("usage %+v", comp.Usage)
	}
	g := gjson.ParseBytes(comp.Body)
	if g.Get("created").Int() < before || !strings.HasPrefix(g.Get("id").Str, "chatcmpl-") || g.Get("usage.total_tokens").Int() != int64(comp.Usage.TotalTokens) ||
		g.Get("choices.0.finish_reason").Str != "stop" {
		t.Fatalf("completion %s", comp.Body)
	}
}

// A server that streams although "stream": false was asked still gives a correct completion.
func TestCompleteFromNDJSON(t *testing.T) {
	data, err := os.ReadFile("testdata/stream/doc_text.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := fakeChannel(200, string(data))
	comp, err := New().Complete(ctxT(t), ch, chatReq("llama3.2", false))
	if err != nil {
		t.Fatal(err)
	}
	g := gjson.ParseBytes(comp.Body)
	if g.Get("choices.0.message.content").Str != "Hot." || comp.Usage.TotalTokens != 27 || g.Get("created").Int() != 1730797964 {
		t.Fatalf("completion %s", comp.Body)
	}
}
