package ollama

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

var update = flag.Bool("update", false, "rewrite testdata/stream/*.golden")

// chunked hands out data in reads of at most n bytes (splitting objects and UTF-8 sequences).
type chunked struct {
	data []byte
	n    int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(c.n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// render drains events into one line per step: the chunk's choices and usage, then EOF or the error.
// It also checks the sticky end: after EOF or an error, Next keeps saying the same.
func render(t testing.TB, ev adaptor.Events) string {
	var sb strings.Builder
	for range 10000 {
		e, err := ev.Next()
		if errors.Is(err, io.EOF) {
			if _, again := ev.Next(); !errors.Is(again, io.EOF) {
				t.Errorf("after EOF Next said %v", again)
			}
			sb.WriteString("EOF\n")
			return sb.String()
		}
		if err != nil {
			var ae *adaptor.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an *adaptor.Error", err)
			}
			if _, again := ev.Next(); again != err {
				t.Errorf("after an error Next said %v", again)
			}
			fmt.Fprintf(&sb, "error %d %s %s retryable=%v: %s\n", ae.Status, ae.Type, ae.Code, ae.Retryable, ae.Message)
			return sb.String()
		}
		if !gjson.ValidBytes(e.Choices) {
			t.Fatalf("invalid choices %s", e.Choices)
		}
		sb.WriteString("chunk ")
		sb.Write(e.Choices)
		if e.HasUsage {
			fmt.Fprintf(&sb, " usage=%d/%d/%d", e.Usage.PromptTokens, e.Usage.CompletionTokens, e.Usage.TotalTokens)
		}
		sb.WriteByte('\n')
	}
	t.Fatal("stream did not end")
	return ""
}

func decodeAll(t testing.TB, data []byte, readSize int) string {
	a := &Adaptor{newID: counterIDs(t)}
	ev := a.newEvents(context.Background(), io.NopCloser(&chunked{data: data, n: readSize}))
	defer ev.Close()
	return render(t, ev)
}

// Golden streams: every testdata/stream/*.ndjson decodes to its .golden, whatever the read sizes (objects
// and multi-byte characters split across reads give the same chunks).
func TestStreamGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/stream/*.ndjson")
	if len(files) == 0 {
		t.Fatal("no golden streams")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeAll(t, data, len(data)+1)
			for _, n := range []int{1, 2, 3, 5, 7, 13, 64} {
				if split := decodeAll(t, data, n); split != got {
					t.Fatalf("reads of %d bytes give\n%s\nwhole reads give\n%s", n, split, got)
				}
			}
			golden := strings.TrimSuffix(file, ".ndjson") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// The SDK-side view of a golden stream: the shared accumulator rebuilds text, tool calls and usage.
func TestStreamAccumulates(t *testing.T) {
	data, err := os.ReadFile("testdata/stream/tool_calls.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	a := &Adaptor{newID: counterIDs(t)}
	ev := a.newEvents(context.Background(), io.NopCloser(&chunked{data: data, n: 3}))
	comp, err := adaptor.Collect(ev, &adaptor.Request{Model: "qwen3", Body: []byte(`{"messages":[]}`)}, "chatcmpl-x", 1)
	if err != nil {
		t.Fatal(err)
	}
	g := gjson.ParseBytes(comp.Body)
	calls := g.Get("choices.0.message.tool_calls").Array()
	if len(calls) != 3 || g.Get("choices.0.message.content").Str != "Checking." || g.Get("choices.0.finish_reason").Str != "tool_calls" {
		t.Fatalf("completion %s", comp.Body)
	}
	want := [][3]string{
		{"call_1", "get_tide", `{"port":"Brest"}`},
		{"call_from_ollama", "get_weather", `{"city":"Brest","units":["c"],"note":"a \"b\""}`},
		{"call_2", "now", `{}`},
	}
	for i, w := range want {
		c := calls[i]
		if c.Get("id").Str != w[0] || c.Get("function.name").Str != w[1] || c.Get("function.arguments").Str != w[2] || c.Get("type").Str != "function" {
			t.Errorf("call %d: %s, want %v", i, c.Raw, w)
		}
	}
	if comp.Usage.TotalTokens != 150 {
		t.Fatalf("usage %+v", comp.Usage)
	}
}

// A stream whose first line is an error fails Stream itself (before any byte reaches the client), and a
// body that ends at once is a broken stream.
func TestStreamPrime(t *testing.T) {
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`
	ch, _ := fakeChannel(200, `{"error":"model \"llama9\" not found, try pulling it first"}`+"\n")
	_, err := New().Stream(ctxT(t), ch, &adaptor.Request{Body: []byte(body), Model: "m", Stream: true})
	var ae *adaptor.Error
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "model_not_found" {
		t.Fatalf("first-line error: %v", err)
	}
	ch, _ = fakeChannel(200, "")
	if _, err := New().Stream(ctxT(t), ch, &adaptor.Request{Body: []byte(body), Model: "m", Stream: true}); !errors.As(err, &ae) || ae.Code != codeStreamBroken {
		t.Fatalf("empty body: %v", err)
	}
	ch, _ = fakeChannel(200, `{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}`+"\n"+`{"model":"m","message":{"role":"assistant","content":""},"done":true,"prompt_eval_count":2,"eval_count":1}`+"\n")
	ev, err := New().Stream(ctxT(t), ch, &adaptor.Request{Body: []byte(body), Model: "m", Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	want := `chunk [{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]
chunk [{"index":0,"delta":{},"finish_reason":"stop"}] usage=2/1/3
EOF
`
	if got := render(t, ev); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}
