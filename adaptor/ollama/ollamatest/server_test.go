package ollamatest

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, s *Server, body string) (*http.Response, []map[string]any) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post(s.URL+"/api/chat", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var objs []map[string]any
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		objs = append(objs, m)
	}
	return resp, objs
}

// Like Ollama, the mock streams unless told "stream": false, and ends a stream with done:true and the
// counts.
func TestMockShapes(t *testing.T) {
	s := New(Options{Answer: "abcdef", Chunks: 3, ToolCalls: []ToolCall{{Name: "f", Arguments: `{"a":1}`}}})
	defer s.Close()
	resp, objs := post(t, s, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if resp.Header.Get("Content-Type") != "application/x-ndjson" || len(objs) != 2 {
		t.Fatalf("stream by default: %v %v", resp.Header, objs)
	}
	if objs[0]["message"].(map[string]any)["tool_calls"] == nil || objs[1]["done"] != true || objs[1]["prompt_eval_count"] != 11.0 {
		t.Fatalf("tool stream %v", objs)
	}
	_, objs = post(t, s, `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"},{"role":"tool","content":"1"}]}`)
	if len(objs) != 1 || objs[0]["message"].(map[string]any)["content"] != "abcdef" || objs[0]["done"] != true || objs[0]["eval_count"] != 3.0 {
		t.Fatalf("non-stream after a tool result %v", objs)
	}
	resp, _ = post(t, s, `{"messages":[]}`)
	if resp.StatusCode != 400 {
		t.Fatalf("missing model: %d", resp.StatusCode)
	}
	if len(s.Bodies()) != 3 || !s.Contains(`"stream":false`) {
		t.Fatalf("recorded %d bodies", len(s.Bodies()))
	}
}
