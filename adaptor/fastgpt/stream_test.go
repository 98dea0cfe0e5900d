package fastgpt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"relay/adaptor"
)

// transcript drains events into one line per event, ending with EOF or the error.
func transcript(ev adaptor.Events) string {
	var sb strings.Builder
	for {
		e, err := ev.Next()
		if errors.Is(err, io.EOF) {
			sb.WriteString("EOF\n")
			return sb.String()
		}
		if err != nil {
			var ae *adaptor.Error
			if errors.As(err, &ae) {
				fmt.Fprintf(&sb, "error %d %s %s: %s\n", ae.Status, ae.Type, ae.Code, ae.Message)
			} else {
				fmt.Fprintf(&sb, "error %T %v\n", err, err)
			}
			return sb.String()
		}
		if e.Name == "" {
			sb.WriteString("chunk " + string(e.Choices))
		} else {
			sb.WriteString("event " + e.Name + " " + string(e.Data))
		}
		if e.HasUsage {
			fmt.Fprintf(&sb, " usage=%d/%d/%d", e.Usage.PromptTokens, e.Usage.CompletionTokens, e.Usage.TotalTokens)
		}
		sb.WriteByte('\n')
	}
}

// dribble returns 1, 2, 3, 1, 2, 3, ... bytes per Read, so frames, lines and multi-byte characters
// arrive cut at every kind of boundary.
type dribble struct {
	s string
	n int
}

func (d *dribble) Read(p []byte) (int, error) {
	if d.s == "" {
		return 0, io.EOF
	}
	k := min(d.n%3+1, len(d.s), len(p))
	d.n++
	copy(p, d.s[:k])
	d.s = d.s[k:]
	return k, nil
}

// split returns s in two reads cut at i.
type split struct {
	parts []string
}

func (r *split) Read(p []byte) (int, error) {
	for len(r.parts) > 0 && r.parts[0] == "" {
		r.parts = r.parts[1:]
	}
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	r.parts[0] = r.parts[0][n:]
	return n, nil
}

func decodeWith(r io.Reader) string {
	return transcript(NewEvents(context.Background(), io.NopCloser(r)))
}

// checkAllReaders decodes input whole, a byte at a time, dribbled, and cut in two at every byte, and
// requires the exact same transcript each time.
func checkAllReaders(t *testing.T, input, want string) {
	t.Helper()
	readers := map[string]func() io.Reader{
		"whole":   func() io.Reader { return strings.NewReader(input) },
		"onebyte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(input)) },
		"dribble": func() io.Reader { return &dribble{s: input} },
	}
	for name, mk := range readers {
		if got := decodeWith(mk()); got != want {
			t.Errorf("%s reader:\n got:\n%s\nwant:\n%s", name, got, want)
		}
	}
	for i := 1; i < len(input); i++ {
		if got := decodeWith(&split{parts: []string{input[:i], input[i:]}}); got != want {
			t.Fatalf("cut at byte %d (%q|%q):\n got:\n%s\nwant:\n%s", i, input[max(0, i-8):i], input[i:min(len(input), i+8)], got, want)
		}
	}
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "stream", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStreamPlain(t *testing.T) {
	// detail=false: unnamed chunks, choices passed through as FastGPT wrote them, then [DONE] and the
	// end of the body. No usage anywhere.
	want := `chunk [{"delta":{"role":"assistant","content":"退款"},"index":0,"finish_reason":null}]
chunk [{"delta":{"role":"assistant","content":"须在 30 天内 ✓ 🎉"},"index":0,"finish_reason":null}]
chunk [{"delta":{"role":"assistant","content":null},"index":0,"finish_reason":"stop"}]
EOF
`
	checkAllReaders(t, readFixture(t, "plain.sse"), want)
}

func TestStreamDetail(t *testing.T) {
	// detail=true: named events pass through in order, answer and fastAnswer become chunks, and the
	// flowResponses after [DONE] is still delivered, with the node tokens summed: tool-call model
	// 100/20, the nested chat node 30/7 (its total ignored as the split exists), a legacy node's 11
	// as prompt tokens, embedding tokens left out.
	want := `event flowNodeStatus {"status":"running","name":"工具调用"}
event toolCall {"tool":{"id":"call_x","toolName":"Weather","toolAvatar":"","functionName":"weather","params":"{\"city\":\"Oslo\"}","response":""}}
event toolParams {"tool":{"id":"call_x","toolName":"","toolAvatar":"","params":"{\"city\":"}}
event toolResponse {"tool":{"id":"call_x","toolName":"","toolAvatar":"","params":"","response":"4°C, 小雨"}}
chunk [{"delta":{"role":"assistant","content":"","reasoning_content":"User wants weather."},"index":0,"finish_reason":null}]
chunk [{"delta":{"role":"assistant","content":"Oslo: 4°C"},"index":0,"finish_reason":null}]
chunk [{"delta":{"role":"assistant","content":"，小雨 ☔"},"index":0,"finish_reason":null}]
event updateVariables {"city":"Oslo"}
event interactive {"interactive":{"type":"userSelect","params":{"description":"More?","userSelectOptions":[{"key":"option1","value":"Confirm"}]}}}
event workflowDuration {"durationSeconds":2.4}
chunk [{"delta":{"role":"assistant","content":null},"index":0,"finish_reason":"stop"}]
event flowResponses [{"nodeId":"start","moduleType":"workflowStart","runningTime":0},{"nodeId":"tools","moduleType":"tools","toolCallInputTokens":100,"toolCallOutputTokens":20,"toolDetail":[{"nodeId":"http","moduleType":"httpRequest468"},{"nodeId":"sub","moduleType":"chatNode","inputTokens":30,"outputTokens":7,"tokens":37}]},{"nodeId":"old","moduleType":"chatNode","tokens":11},{"nodeId":"ds","moduleType":"datasetSearchNode","embeddingTokens":900}] usage=141/27/168
EOF
`
	checkAllReaders(t, readFixture(t, "detail.sse"), want)
}

func TestStreamLegacy(t *testing.T) {
	// Older releases: the first delta has no role, so that chunk is rebuilt with it (escapes kept);
	// later chunks and the bare final delta pass through. CRLF and comments are handled.
	want := `chunk [{"index":0,"delta":{"role":"assistant","content":"Hi \"there\"\n"},"finish_reason":null}]
chunk [{"delta":{"content":"!"},"index":0,"finish_reason":null}]
chunk [{"delta":{},"index":0,"finish_reason":"stop"}]
EOF
`
	checkAllReaders(t, readFixture(t, "legacy.sse"), want)
}

const (
	c1   = `data: {"id":"","object":"","created":0,"model":"","choices":[{"delta":{"role":"assistant","content":"A"},"index":0,"finish_reason":null}]}` + "\n\n"
	c1d  = "event: answer\n" + c1
	done = "data: [DONE]\n\n"
	w1   = `chunk [{"delta":{"role":"assistant","content":"A"},"index":0,"finish_reason":null}]` + "\n"
)

func TestStreamCases(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"no [DONE] is a broken stream", c1,
			w1 + "error 502 upstream_error upstream_stream_broken: upstream stream ended early: no [DONE]\n"},
		{"empty body", "", "error 502 upstream_error upstream_stream_broken: upstream stream ended early: no [DONE]\n"},
		{"only [DONE]", done, "EOF\n"},
		{"free-text error mid-stream", c1 + "event: error\ndata: {\"message\":\"model timeout\"}\n\n",
			w1 + "error 502 server_error : upstream: model timeout\n"},
		{"fixed error object", "event: error\ndata: {\"code\":514,\"statusText\":\"unAuthApiKey\",\"message\":\"Api Key 不合法\",\"data\":null}\n\n",
			"error 401 authentication_error unAuthApiKey: upstream: Api Key 不合法\n"},
		{"balance", "event: error\ndata: {\"code\":510,\"statusText\":\"insufficientQuota\",\"message\":\"账号余额不足\",\"data\":null}\n\n",
			"error 429 rate_limit_error insufficientQuota: upstream: 账号余额不足\n"},
		{"error object without event line", c1 + "data: {\"message\":\"messages is empty\"}\n\n",
			w1 + "error 400 invalid_request_error invalid_messages: upstream: messages is empty\n"},
		{"malformed chunk", c1 + "data: {\"choices\":[\n\n",
			w1 + "error 502 server_error bad_chunk: upstream: malformed stream chunk\n"},
		{"chunk without choices and empty choices are skipped", `data: {"id":""}` + "\n\n" + `data: {"choices":[ ]}` + "\n\n" + c1 + done,
			w1 + "EOF\n"},
		{"answer frames after [DONE] are ignored, named events are not", c1d + "event: answer\ndata: [DONE]\n\n" + c1d +
			"event: flowResponses\ndata: []\n\n" + "event: somethingNew\ndata: {\"x\":1}\n\n",
			w1 + "event flowResponses []\nevent somethingNew {\"x\":1}\nEOF\n"},
		{"flowResponses without tokens carries no usage", c1d + "event: answer\ndata: [DONE]\n\nevent: flowResponses\ndata: [{\"nodeId\":\"a\",\"tokens\":0}]\n\n",
			w1 + "event flowResponses [{\"nodeId\":\"a\",\"tokens\":0}]\nEOF\n"},
		{"a non-JSON named payload is dropped", "event: flowNodeStatus\ndata: running\n\n" + c1d + "event: answer\ndata: [DONE]\n\n",
			w1 + "EOF\n"},
		{"flowNodeResponse usage is cumulative and flowResponses replaces it",
			"event: flowNodeResponse\ndata: {\"nodeId\":\"a\",\"inputTokens\":5,\"outputTokens\":1}\n\n" +
				"event: flowNodeResponse\ndata: {\"nodeId\":\"b\",\"inputTokens\":7,\"outputTokens\":2}\n\n" + c1d +
				"event: answer\ndata: [DONE]\n\nevent: flowResponses\ndata: [{\"inputTokens\":12,\"outputTokens\":3}]\n\n",
			"event flowNodeResponse {\"nodeId\":\"a\",\"inputTokens\":5,\"outputTokens\":1} usage=5/1/6\n" +
				"event flowNodeResponse {\"nodeId\":\"b\",\"inputTokens\":7,\"outputTokens\":2} usage=12/3/15\n" + w1 +
				"event flowResponses [{\"inputTokens\":12,\"outputTokens\":3}] usage=12/3/15\nEOF\n"},
		{"the first chunk is a bare final chunk", `data: {"choices":[{"delta":{},"index":0,"finish_reason":"stop"}]}` + "\n\n" + done,
			`chunk [{"index":0,"delta":{"role":"assistant"},"finish_reason":"stop"}]` + "\nEOF\n"},
		{"multi-line data joins with a newline (here an empty choices list)", "data: {\"choices\":\ndata: []}\n\n" + c1 + done,
			w1 + "EOF\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkAllReaders(t, c.in, c.want)
		})
	}
}

func TestStreamTerminalResultRepeats(t *testing.T) {
	ev := NewEvents(context.Background(), io.NopCloser(strings.NewReader(c1+done)))
	if _, err := ev.Next(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := ev.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("call %d: %v, want io.EOF", i, err)
		}
	}
	ev = NewEvents(context.Background(), io.NopCloser(strings.NewReader(c1)))
	ev.Next()
	_, e1 := ev.Next()
	_, e2 := ev.Next()
	if e1 == nil || e1 != e2 {
		t.Fatalf("errors %v, %v: want the same error twice", e1, e2)
	}
}

// A read failure before [DONE] is a transport error; after [DONE] the answer is complete and the
// stream ends quietly even though flowResponses was lost.
func TestStreamReadFailure(t *testing.T) {
	boom := errors.New("connection reset")
	got := decodeWith(io.MultiReader(strings.NewReader(c1), iotest.ErrReader(boom)))
	if want := w1 + "error 502 upstream_error upstream_unreachable: upstream unreachable: connection reset\n"; got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	got = decodeWith(io.MultiReader(strings.NewReader(c1d+"event: answer\ndata: [DONE]\n\n"), iotest.ErrReader(boom)))
	if want := w1 + "EOF\n"; got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
