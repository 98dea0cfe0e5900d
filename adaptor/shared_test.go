package adaptor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"relay/adaptor/streamtest"
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
	// The SSE spec's three line endings: the same stream with every line ending a bare CR, and mixed.
	bareCR := strings.ReplaceAll(strings.ReplaceAll(in, "\r\n", "\n"), "\n", "\r")
	mixed := ": comment\r\rdata: {\"a\":1}\r\n\nevent: answer\rdata:no-space\n\r\ndata: line1\rdata: line2\n\revent: lonely\r\n\r\ndata: " + long + "\r\r\ndata: 中文字符\n\rdata: tail-without-blank-line\r"
	for _, input := range []struct{ name, in string }{{"LF", in}, {"CR", bareCR}, {"mixed", mixed}} {
		for name, r := range map[string]io.Reader{
			"whole":    strings.NewReader(input.in),
			"one byte": iotest.OneByteReader(strings.NewReader(input.in)), // every CR at a read boundary
			"half":     iotest.HalfReader(strings.NewReader(input.in)),
		} {
			got := readAllEvents(t, r)
			if len(got) != len(want) {
				t.Fatalf("%s %s: %d events, want %d", input.name, name, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s %s: event %d = %.60q, want %.60q", input.name, name, i, got[i], want[i])
				}
			}
		}
	}
	// Line endings as the SSE spec reads them: CRLF is one line end, CR CR two, LF CR two.
	for in, want := range map[string]string{
		"data: a\r\rdata: b\r\n\r\n":             "|a,|b",
		"data: a\r\r\ndata: b\n\r":               "|a,|b",
		"data: a\rdata: b\r\r\n\r\n":             "|a\nb",
		"event: e\rdata: a\n\rdata: b\r":         "e|a,|b",
		"data: a\r\n\r\n\r\n\r\n\r\ndata: b\r\r": "|a,|b",
	} {
		for name, r := range map[string]io.Reader{
			"whole":    strings.NewReader(in),
			"one byte": iotest.OneByteReader(strings.NewReader(in)),
		} {
			if got := strings.Join(readAllEvents(t, r), ","); got != want {
				t.Fatalf("%q (%s): %q, want %q", in, name, got, want)
			}
		}
	}
}

// An event that ends in a bare CR is returned as soon as that CR arrives, not when the next byte does;
// a LF that then follows belongs to the CR and does not end another line.
func TestSSEReaderBareCRDoesNotWait(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	s := NewSSEReader(pr)
	go pw.Write([]byte("data: x\r\r"))
	if _, data, err := s.Next(); err != nil || string(data) != "x" {
		t.Fatalf("%q %v", data, err)
	}
	go func() {
		pw.Write([]byte("\ndata: y\n"))
		pw.Write([]byte("\n"))
		pw.Close()
	}()
	if _, data, err := s.Next(); err != nil || string(data) != "y" {
		t.Fatalf("%q %v", data, err)
	}
	if _, _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

// Reading an event allocates nothing once the reader's buffers have grown, whatever the line endings.
func TestSSEReaderAllocs(t *testing.T) {
	for _, frame := range []string{"data: {\"a\":1}\n\n", "event: e\r\ndata: {\"a\":1}\r\n\r\n", "data: x\r\r", "data: " + strings.Repeat("y", 10000) + "\n\n"} {
		s := NewSSEReader(streamtest.NewLoop(frame))
		if allocs := testing.AllocsPerRun(100, func() {
			if _, _, err := s.Next(); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Fatalf("%.20q: %v allocs per event", frame, allocs)
		}
	}
}

// An open stream holds little: a thousand idle streams that each read an event stay within 8 MiB.
func TestSSEReaderIdleMemory(t *testing.T) {
	readers := make([]*SSEReader, 1000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range readers {
		readers[i] = NewSSEReader(strings.NewReader("data: {\"a\":1}\n\n"))
		if _, _, err := readers[i].Next(); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 8<<20 {
		t.Fatalf("1000 idle readers hold %d KiB", grown>>10)
	}
	runtime.KeepAlive(readers)
}

func TestLineReader(t *testing.T) {
	long := `{"l":"` + strings.Repeat("x", 1<<20) + `"}` // a 1 MiB record must pass
	in := "{\"a\":1}\n\n  \r\n{\"b\":\"中\"}\r\n" + long + "\r\n{\"cr\":\r1}\n{\"c\":3}\r"
	// A lone CR is JSON whitespace, not a record end.
	want := `{"a":1},{"b":"中"},` + long + ",{\"cr\":\r1},{\"c\":3}"
	for name, rd := range map[string]io.Reader{
		"whole":    strings.NewReader(in),
		"one byte": iotest.OneByteReader(strings.NewReader(in)),
		"half":     iotest.HalfReader(strings.NewReader(in)),
	} {
		r := NewLineReader(rd)
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
		if strings.Join(got, ",") != want {
			t.Fatalf("%s: %.80q", name, got)
		}
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

func TestAppendToolCall(t *testing.T) {
	b := []byte{'['}
	b = AppendToolCallStart(b, 0, "call_1", "get_tide", `{"port":"Brest"}`)
	b = append(b, ',')
	b = AppendToolCallStart(b, 1, "", "", "")
	b = append(b, ',')
	b = AppendToolCallDelta(b, 1, "late_name", `{"a":`)
	b = append(b, ',')
	b = AppendToolCallDelta(b, 1, "", "1}")
	b = append(b, ']')
	want := `[{"index":0,"id":"call_1","type":"function","function":{"name":"get_tide","arguments":"{\"port\":\"Brest\"}"}},` +
		`{"index":1,"id":"","type":"function","function":{"name":"","arguments":""}},` +
		`{"index":1,"function":{"name":"late_name","arguments":"{\"a\":"}},` +
		`{"index":1,"function":{"arguments":"1}"}}]`
	if string(b) != want {
		t.Fatalf("%s\nwant %s", b, want)
	}
	if id := NewToolCallID(); !strings.HasPrefix(id, "call_") || len(id) != len("call_")+24 {
		t.Fatalf("tool call id %q", id)
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

func TestErrorMessage(t *testing.T) {
	for body, want := range map[string][2]string{
		`{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}`: {"bad key", "invalid_api_key"},
		`{"error":{"message":"no model","type":"not_found_error","code":null}}`:                   {"no model", "not_found_error"},
		`{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}`:                  {"quota", "429"},
		`{"error":{"message":"m","status":"UNAVAILABLE"}}`:                                        {"m", "UNAVAILABLE"},
		`{"error":"model 'x' not found"}`:                                                         {"model 'x' not found", ""},
		`{"code":510,"statusText":"insufficientQuota","message":"余额不足"}`:                          {"余额不足", "510"},
		`{"code":"1001","msg":"token expired"}`:                                                   {"token expired", "1001"},
		`{"error":{"message":""},"message":"outer"}`:                                              {"outer", ""},
		`{"error":{"message":"inner"},"message":"outer"}`:                                         {"inner", ""},
		`{"error":null}`:               {"", ""},
		`<html>502 Bad Gateway</html>`: {"", ""},
		``:                             {"", ""},
		`{"error":{"message":"esc \"q\" \u00e9","code":""}}`: {`esc "q" é`, ""},
	} {
		msg, code := ErrorMessage([]byte(body))
		if msg != want[0] || code != want[1] {
			t.Errorf("%s: %q %q, want %q %q", body, msg, code, want[0], want[1])
		}
	}
	// What it returns does not point into the body, which may be a reused stream buffer.
	b := []byte(`{"error":{"message":"keep me","code":"keep"}}`)
	msg, code := ErrorMessage(b)
	copy(b, bytes.Repeat([]byte("x"), len(b)))
	if msg != "keep me" || code != "keep" {
		t.Fatalf("%q %q after the body changed", msg, code)
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

func BenchmarkSSEReader(b *testing.B) {
	frame := "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello\"}}]}\n\n"
	s := NewSSEReader(streamtest.NewLoop(frame))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSONString(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendJSONString(buf[:0], "It is a heron, standing in the shallow water. 它是一只鹭。")
	}
}

// A line longer than MaxLine ends the stream with a 502 instead of being buffered without end.
func TestLineReaderBoundsLineLength(t *testing.T) {
	endless := io.MultiReader(strings.NewReader("data: "), &repeatReader{b: 'x', n: MaxLine + 1<<20})
	_, _, err := NewSSEReader(endless).Next()
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "upstream_line_too_long" {
		t.Fatalf("err %v", err)
	}
	// A long line under the limit still passes.
	long := strings.Repeat("y", 5<<20)
	line, err := NewLineReader(strings.NewReader(long + "\n")).Next()
	if err != nil || string(line) != long {
		t.Fatalf("%d bytes, %v", len(line), err)
	}
}

// repeatReader yields n copies of b.
type repeatReader struct {
	b byte
	n int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n)
	for i := range p[:n] {
		p[i] = r.b
	}
	r.n -= n
	return n, nil
}

// chunkedReader returns one chunk per Read.
type chunkedReader struct{ chunks []string }

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// The wait hook runs before each read of the upstream, never while buffered events remain.
func TestSSEReaderOnWait(t *testing.T) {
	r := NewSSEReader(&chunkedReader{chunks: []string{"data: 1\n\ndata: 2\n\ndata: 3\n\n", "data: 4\n\ndata: 5\n\n"}})
	waits := 0
	if !r.OnWait(func() { waits++ }) {
		t.Fatal("SSEReader does not take a wait hook")
	}
	var at []int // waits seen when each event was returned
	for {
		_, data, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		at = append(at, waits)
		_ = data
	}
	// Reads: the first burst (1 wait), the second (2 waits), then the end (3).
	if want := []int{1, 1, 1, 2, 2}; fmt.Sprint(at) != fmt.Sprint(want) || waits != 3 {
		t.Fatalf("waits per event %v (total %d), want %v and 3", at, waits, want)
	}
}

// ReadBody returns the whole answer whether or not its length was declared, sized at once when it was,
// and refuses one over MaxAnswerBody.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("x", 3000)
	for _, tc := range []struct {
		name   string
		length int64
	}{{"declared", int64(len(body))}, {"unknown", -1}} {
		resp := &http.Response{Body: io.NopCloser(strings.NewReader(body)), ContentLength: tc.length}
		b, err := ReadBody(context.Background(), resp)
		if err != nil || string(b) != body {
			t.Fatalf("%s: %d bytes, %v", tc.name, len(b), err)
		}
		if tc.length > 0 && cap(b) != len(body)+1 {
			t.Errorf("%s: cap %d, want %d (no growth)", tc.name, cap(b), len(body)+1)
		}
	}
	// A server that declares less than it sends still gets read to the end.
	short := &http.Response{Body: io.NopCloser(strings.NewReader(body)), ContentLength: 10}
	if b, err := ReadBody(context.Background(), short); err != nil || len(b) != len(body) {
		t.Fatalf("short declaration: %d bytes, %v", len(b), err)
	}
	big := &http.Response{Body: io.NopCloser(&repeatReader{b: 'y', n: MaxAnswerBody + 10}), ContentLength: -1}
	if _, err := ReadBody(context.Background(), big); err == nil || AsError(err).Code != "upstream_answer_too_large" {
		t.Fatalf("oversized answer: %v", err)
	}
}
