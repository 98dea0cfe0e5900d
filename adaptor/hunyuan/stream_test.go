package hunyuan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// trickle hands out data a few bytes per Read (sizes cycle through pattern), so frames, CRLFs and
// multi-byte characters get split across reads.
type trickle struct {
	data    []byte
	pattern []int
	n       int
}

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := min(r.pattern[r.n%len(r.pattern)], len(p), len(r.data))
	r.n++
	copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

// renderStream drains a stream into one line per event plus its end; it also checks that the end is
// sticky (Next keeps returning it).
func renderStream(t *testing.T, r io.Reader) string {
	t.Helper()
	ev := newEvents(context.Background(), io.NopCloser(r), "hdr-req-1")
	defer ev.Close()
	var b strings.Builder
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("stream does not end")
		}
		e, err := ev.Next()
		if err != nil {
			end := "EOF"
			if !errors.Is(err, io.EOF) {
				end = renderError(err)
			}
			b.WriteString(end + "\n")
			if _, again := ev.Next(); again != err && !(errors.Is(again, io.EOF) && errors.Is(err, io.EOF)) {
				t.Errorf("after %v, Next returned %v", err, again)
			}
			return b.String()
		}
		if !gjson.ValidBytes(e.Choices) {
			t.Errorf("invalid choices JSON: %s", e.Choices)
		}
		b.Write(e.Choices)
		if e.HasUsage {
			fmt.Fprintf(&b, " usage %d/%d/%d", e.Usage.PromptTokens, e.Usage.CompletionTokens, e.Usage.TotalTokens)
		}
		b.WriteString("\n")
	}
}

// Each testdata/stream/NAME.sse (a Hunyuan stream body) becomes exactly NAME.golden, read whole and
// read 1-3 bytes at a time.
func TestStreamGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/stream/*.sse")
	if len(files) == 0 {
		t.Fatal("no stream cases")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sse")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got := renderStream(t, bytes.NewReader(in))
			isErr := strings.HasPrefix(got, "error ") || strings.Contains(got, "\nerror ")
			if strings.HasPrefix(name, "err_") != isErr {
				t.Errorf("case %s ended as:\n%s", name, got)
			}
			golden(t, strings.TrimSuffix(f, ".sse")+".golden", []byte(got))
			for _, pattern := range [][]int{{1}, {2}, {3}, {1, 2, 3}, {3, 1, 2, 2}} {
				split := renderStream(t, &trickle{data: in, pattern: pattern})
				if split != got {
					t.Errorf("reads of %v bytes give\n%s\nwhole read gives\n%s", pattern, split, got)
				}
			}
		})
	}
}

// Streamed tool-call fragments fold, through the shared accumulator, into whole calls.
func TestStreamToolCallsAccumulate(t *testing.T) {
	in, _ := os.ReadFile("testdata/stream/tool_calls.sse")
	c, err := adaptor.Collect(newEvents(context.Background(), io.NopCloser(&trickle{data: in, pattern: []int{2, 1, 3}}), ""),
		testReq(), "chatcmpl-x", 1)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"my-model","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"巴黎\"}"}},{"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":20,"completion_tokens":11,"total_tokens":31}}`
	if string(c.Body) != want {
		t.Fatalf("got  %s\nwant %s", c.Body, want)
	}
}

// Fragments without Id fall back to Index, then to the latest call; a call without any Id gets one.
func TestStreamToolCallsWithoutID(t *testing.T) {
	in := "data: {\"Choices\":[{\"Delta\":{\"ToolCalls\":[{\"Function\":{\"Name\":\"f\",\"Arguments\":\"\"}}]},\"FinishReason\":\"\"}]}\n\n" +
		"data: {\"Choices\":[{\"Delta\":{\"ToolCalls\":[{\"Index\":0,\"Function\":{\"Arguments\":\"{\\\"a\\\":\"}}]},\"FinishReason\":\"\"}]}\n\n" +
		"data: {\"Choices\":[{\"Delta\":{\"ToolCalls\":[{\"Function\":{\"Arguments\":\"1}\"}}]},\"FinishReason\":\"tool_calls\"}]}\n\n"
	ev := newEvents(context.Background(), io.NopCloser(strings.NewReader(in)), "")
	var acc adaptor.Accumulator
	for {
		e, err := ev.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		acc.Add(e)
	}
	c := acc.Completion("id", 1, "m")
	call := gjson.GetBytes(c.Body, "choices.0.message.tool_calls.0")
	if id := call.Get("id").String(); !strings.HasPrefix(id, "call_") || len(id) != 29 {
		t.Errorf("generated id %q", id)
	}
	if got := call.Get("function.name").String() + " " + call.Get("function.arguments").String(); got != `f {"a":1}` {
		t.Errorf("got %s", got)
	}
}

// A cancelled client context while reading maps to the client-closed error, not a broken stream.
func TestStreamReadErrorAfterCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ev := newEvents(ctx, io.NopCloser(errReader{}), "")
	_, err := ev.Next()
	var ae *adaptor.Error
	if !errors.As(err, &ae) || ae.Status != 499 {
		t.Fatalf("got %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, context.Canceled }
