package anthropic

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"relay/adaptor"
)

// transcript decodes a whole stream and renders every event, then how it ended, one JSON line each.
func transcript(t testing.TB, r io.Reader) []byte {
	t.Helper()
	ev := NewEvents(context.Background(), io.NopCloser(r))
	defer ev.Close()
	var out []byte
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatal("stream does not end")
		}
		e, err := ev.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				out = append(out, `{"end":"EOF"}`+"\n"...)
			} else {
				var ae *adaptor.Error
				if !errors.As(err, &ae) {
					t.Fatalf("error %T %v is not an *adaptor.Error", err, err)
				}
				out = append(out, `{"error":{"status":`...)
				out = strconv.AppendInt(out, int64(ae.Status), 10)
				out = append(out, `,"type":`...)
				out = adaptor.AppendJSONString(out, ae.Type)
				out = append(out, `,"code":`...)
				out = adaptor.AppendJSONString(out, ae.Code)
				out = append(out, `,"message":`...)
				out = adaptor.AppendJSONString(out, ae.Message)
				out = append(out, `,"retryable":`...)
				out = strconv.AppendBool(out, ae.Retryable)
				out = append(out, "}}\n"...)
			}
			// The end is sticky.
			if _, again := ev.Next(); again == nil || again.Error() != err.Error() {
				t.Fatalf("after %v, Next returned %v", err, again)
			}
			return out
		}
		out = append(out, `{"choices":`...)
		if len(e.Choices) == 0 {
			out = append(out, "null"...)
		} else {
			out = append(out, e.Choices...)
		}
		if e.HasUsage {
			out = append(out, `,"usage":`...)
			out = adaptor.AppendUsage(out, e.Usage)
		}
		out = append(out, "}\n"...)
	}
}

// chunkReader returns its input in reads of the given sizes, cycling.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := c.sizes[c.i%len(c.sizes)]
	c.i++
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func streamFixtures(t testing.TB) []string {
	files, _ := filepath.Glob("testdata/stream/*.sse")
	if len(files) == 0 {
		t.Fatal("no stream fixtures")
	}
	return files
}

func TestStreamGolden(t *testing.T) {
	for _, in := range streamFixtures(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".sse")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := transcript(t, bytes.NewReader(data))
			checkGolden(t, strings.TrimSuffix(in, ".sse")+".golden.jsonl", got, false)
			for _, line := range bytes.Split(bytes.TrimSpace(got), []byte("\n")) {
				if !gjsonValid(line) {
					t.Fatalf("transcript line is not JSON: %s", line)
				}
			}
		})
	}
}

// Frames split at every byte boundary (so inside event names, JSON, \r\n pairs and multi-byte UTF-8
// sequences), one byte at a time, and in odd-sized reads all decode to the same events.
func TestStreamSplitReads(t *testing.T) {
	for _, in := range streamFixtures(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".sse")
		t.Run(name, func(t *testing.T) {
			data, _ := os.ReadFile(in)
			want := transcript(t, bytes.NewReader(data))
			check := func(how string, r io.Reader) {
				t.Helper()
				if got := transcript(t, r); !bytes.Equal(got, want) {
					t.Fatalf("%s: got\n%s\nwant\n%s", how, got, want)
				}
			}
			check("one byte", iotest.OneByteReader(bytes.NewReader(data)))
			check("half", iotest.HalfReader(bytes.NewReader(data)))
			check("data+EOF", iotest.DataErrReader(bytes.NewReader(data)))
			check("odd sizes", &chunkReader{data: data, sizes: []int{1, 2, 3, 5, 7, 11, 13}})
			for k := 1; k < len(data); k++ {
				check("split at "+strconv.Itoa(k), io.MultiReader(bytes.NewReader(data[:k]), bytes.NewReader(data[k:])))
			}
		})
	}
}

// A multi-byte character split across reads comes out whole, and the accumulated text is exact.
func TestStreamUTF8AcrossReads(t *testing.T) {
	data, _ := os.ReadFile("testdata/stream/utf8_crlf.sse")
	i := bytes.Index(data, []byte("巴黎是"))
	if i < 0 {
		t.Fatal("fixture changed")
	}
	for cut := i + 1; cut < i+3; cut++ { // inside 巴 (3 bytes)
		ev := NewEvents(context.Background(), io.NopCloser(io.MultiReader(bytes.NewReader(data[:cut]), bytes.NewReader(data[cut:]))))
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
		if got, want := acc.Text(), "巴黎是首都。 🗼 \"Été\"\n"; got != want {
			t.Fatalf("cut %d: text %q, want %q", cut, got, want)
		}
		if acc.FinishReason() != "length" || acc.Usage != (adaptor.Usage{PromptTokens: 120, CompletionTokens: 9, TotalTokens: 129}) {
			t.Fatalf("finish %q usage %+v", acc.FinishReason(), acc.Usage)
		}
	}
}

// Collect over the tool stream rebuilds the calls with OpenAI indexes 0 and 1 (not the block indexes 1
// and 2), and usage is input from message_start plus the last output_tokens, without the placeholder.
func TestStreamToolCallsCollect(t *testing.T) {
	data, _ := os.ReadFile("testdata/stream/tool_use.sse")
	req := &adaptor.Request{Model: "client-model", Body: []byte(`{"messages":[]}`)}
	// cloning works around adaptor.Accumulator keeping tool call id/name strings that alias the event's
	// reused bytes (reported; see cloningEvents).
	comp, err := adaptor.Collect(cloningEvents{NewEvents(context.Background(), io.NopCloser(bytes.NewReader(data)))}, req, "chatcmpl-x", 1)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"client-model","choices":[{"index":0,"message":{"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_01A","type":"function","function":{"name":"get_tide","arguments":"{\"port\": \"Brest\"}"}},{"id":"toolu_01B","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Brest\"}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":120,"completion_tokens":48,"total_tokens":168}}`
	if string(comp.Body) != want {
		t.Fatalf("got  %s\nwant %s", comp.Body, want)
	}
}

func TestStreamMalformed(t *testing.T) {
	for name, body := range map[string]string{
		"bad json":   "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\n\n",
		"empty body": "",
		"only ping":  "event: ping\ndata: {\"type\":\"ping\"}\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			ev := NewEvents(context.Background(), io.NopCloser(strings.NewReader(body)))
			_, err := ev.Next()
			var ae *adaptor.Error
			if !errors.As(err, &ae) || ae.Status != 502 {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// A read error after the context was cancelled is the client going away (499), not a broken upstream.
func TestStreamCancelledRead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ev := NewEvents(ctx, io.NopCloser(iotest.ErrReader(context.Canceled)))
	_, err := ev.Next()
	var ae *adaptor.Error
	if !errors.As(err, &ae) || ae.Status != 499 {
		t.Fatalf("got %v", err)
	}
}

// cloningEvents hands out copies of each event's bytes. adaptor.Accumulator.addToolDelta keeps the
// id, type and name strings it reads from ev.Choices without copying them, although an Event's bytes are
// only valid until the next call to Next; with a decoder that reuses its chunk buffer (as ChunkBuilder
// does) the names come out garbled. This wrapper keeps the test independent of that shared bug.
type cloningEvents struct{ adaptor.Events }

func (c cloningEvents) Next() (*adaptor.Event, error) {
	ev, err := c.Events.Next()
	if ev != nil {
		cp := *ev
		cp.Choices = bytes.Clone(ev.Choices)
		cp.Data = bytes.Clone(ev.Data)
		return &cp, err
	}
	return ev, err
}
