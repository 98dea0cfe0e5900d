package adaptor

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " back \ slash`, "ctl \x00\x01\x1f \t\n\r", "<>&", "中文 émoji 😀", "\u2028\u2029", "bad \xff utf8"} {
		got := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q: invalid JSON %s", s, got)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if back != want {
			t.Fatalf("%q round-trips to %q", s, back)
		}
	}
}

func readAllEvents(t *testing.T, r io.Reader) []string {
	t.Helper()
	s := NewSSEReader(r)
	var out []string
	for {
		ev, data, err := s.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(ev)+"|"+string(data))
	}
}

func TestSSEReader(t *testing.T) {
	long := strings.Repeat("x", 1<<20) // a 1 MiB single line must pass
	in := ": comment\n\ndata: {\"a\":1}\n\nevent: answer\ndata:no-space\n\ndata: line1\r\ndata: line2\r\n\r\nevent: lonely\n\ndata: " + long + "\n\ndata: 中文字符\n\ndata: tail-without-blank-line"
	want := []string{"|{\"a\":1}", "answer|no-space", "|line1\nline2", "|" + long, "|中文字符", "|tail-without-blank-line"}
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader(in),
		"one byte": iotest.OneByteReader(strings.NewReader(in)),
		"half":     iotest.HalfReader(strings.NewReader(in)),
	} {
		got := readAllEvents(t, r)
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d", name, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: event %d = %.60q, want %.60q", name, i, got[i], want[i])
			}
		}
	}
}

func TestLineReader(t *testing.T) {
	r := NewLineReader(iotest.OneByteReader(strings.NewReader("{\"a\":1}\n\n  \r\n{\"b\":\"中\"}\r\n{\"c\":3}")))
	var got []string
	for {
		l, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(l))
	}
	if strings.Join(got, ",") != `{"a":1},{"b":"中"},{"c":3}` {
		t.Fatalf("%q", got)
	}
}

func TestChunkBuilder(t *testing.T) {
	var b ChunkBuilder
	cases := []struct {
		d    Delta
		want string
	}{
		{Delta{Content: "Hi"}, `[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]`},
		{Delta{Content: "\"x\"\n"}, `[{"index":0,"delta":{"content":"\"x\"\n"},"finish_reason":null}]`},
		{Delta{ReasoningContent: "hmm"}, `[{"index":0,"delta":{"reasoning_content":"hmm"},"finish_reason":null}]`},
		{Delta{ToolCalls: []byte(`[{"index":0,"function":{"arguments":"{}"}}]`)}, `[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":null}]`},
		{Delta{FinishReason: "stop"}, `[{"index":0,"delta":{},"finish_reason":"stop"}]`},
		{Delta{}, `[{"index":0,"delta":{"content":""},"finish_reason":null}]`},
	}
	for i, c := range cases {
		if got := string(b.Choices(c.d)); got != c.want {
			t.Fatalf("case %d: %s\nwant %s", i, got, c.want)
		}
	}
}

type sliceEvents struct {
	evs []Event
	err error
}

func (s *sliceEvents) Next() (*Event, error) {
	if len(s.evs) == 0 {
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	ev := s.evs[0]
	s.evs = s.evs[1:]
	return &ev, nil
}
func (s *sliceEvents) Close() error { return nil }

func TestCollect(t *testing.T) {
	req := &Request{Model: "m", Body: []byte(`{"messages":[{"role":"user","content":"hello there"}]}`)}
	comp, err := Collect(&sliceEvents{evs: []Event{
		{Choices: []byte(`[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]`)},
		{Name: "flowResponses", Data: []byte(`[{"x":1}]`)},
		{Choices: []byte(`[{"index":0,"delta":{"content":"lo"},"finish_reason":"length"}]`)},
	}}, req, "chatcmpl-1", 7)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello","refusal":null},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":`
	if !strings.HasPrefix(string(comp.Body), want) || !comp.Usage.Estimated || comp.Usage.CompletionTokens == 0 || string(comp.Extra["flowResponses"]) != `[{"x":1}]` {
		t.Fatalf("%s %+v", comp.Body, comp.Usage)
	}
	if !json.Valid(comp.Body) {
		t.Fatal("invalid JSON")
	}
	// A stream that fails is an error, not a partial answer.
	if _, err := Collect(&sliceEvents{evs: []Event{{Choices: []byte(`[{"index":0,"delta":{"content":"x"}}]`)}}, err: StreamBroken("test")}, req, "id", 1); err == nil {
		t.Fatal("broken stream collected as complete")
	}
}

func TestCountTokensUsesTokenizer(t *testing.T) {
	// cl100k_base: "hello world" is two tokens.
	if n := CountTokens("hello world"); n != 2 {
		t.Fatalf("CountTokens = %d", n)
	}
}

func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{"data: x\n\n", "event: a\ndata: b\r\n\r\n", ":c\n", "data", "\n\n\n", "data: " + strings.Repeat("y", 40000)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewSSEReader(strings.NewReader(string(b)))
		for i := 0; i < len(b)+2; i++ {
			if _, _, err := r.Next(); err != nil {
				return
			}
		}
		t.Fatal("reader did not end")
	})
}

func BenchmarkAppendJSONString(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendJSONString(buf[:0], "It is a heron, standing in the shallow water. 它是一只鹭。")
	}
}
