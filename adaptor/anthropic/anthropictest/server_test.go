package anthropictest

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, s *Server, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.BaseURL()+"/v1/messages", strings.NewReader(body))
	req.Header.Set("Anthropic-Version", "2023-06-01")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The mock rejects what the real API rejects, so adaptor tests catch malformed bodies.
func TestChecks(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	for name, c := range map[string]struct {
		body string
		want string
	}{
		"no max_tokens":    {`{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		"system role":      {`{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"},{"role":"user","content":"hi"}]}`, "role"},
		"not alternating":  {`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`, "alternate"},
		"starts with asst": {`{"model":"m","max_tokens":5,"messages":[{"role":"assistant","content":"a"}]}`, "first message"},
		"empty text":       {`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":""}]}]}`, "non-empty"},
		"orphan result":    {`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t2"}]}]}`, "tool_use_id"},
		"input not object": {`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":"{}"}]}]}`, "tool_use"},
	} {
		status, body := post(t, s, c.body, nil)
		if status != 400 || !strings.Contains(body, `"invalid_request_error"`) || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s", name, status, body)
		}
	}
	ok := `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"r"}]}]}`
	if status, body := post(t, s, ok, nil); status != 200 || !strings.Contains(body, `"type":"message"`) {
		t.Fatalf("valid request: %d %s", status, body)
	}
	req, _ := http.NewRequest(http.MethodPost, s.BaseURL()+"/v1/messages", strings.NewReader(ok))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("missing anthropic-version: %d", resp.StatusCode)
	}
}

func TestStreamShape(t *testing.T) {
	s := New(Options{Answer: "abc", Chunks: 3, ToolCalls: []ToolCall{{Name: "f", Input: `{"a":1}`}}, AnswerWithTools: true})
	defer s.Close()
	status, body := post(t, s, `{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil)
	if status != 200 {
		t.Fatal(status, body)
	}
	var names []string
	for _, line := range strings.Split(body, "\n") {
		if n, ok := strings.CutPrefix(line, "event: "); ok {
			names = append(names, n)
		}
	}
	want := "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_stop " +
		"content_block_start content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(body, `"id":"toolu_mock_1"`) || !strings.Contains(body, `"output_tokens":6`) {
		t.Fatalf("body %s", body)
	}
}
