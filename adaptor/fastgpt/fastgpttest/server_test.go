package fastgpttest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func post(t *testing.T, s *Server, auth, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+Path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const msgs = `"messages":[{"role":"user","content":"hi"}]`

// The detail stream follows the wire reference's order: node status, answers, final chunk,
// `event: answer` [DONE], flowResponses, end.
func TestDetailStreamBytes(t *testing.T) {
	s := NewServer(Options{Pieces: []string{"Hi", " 你好"}, Nodes: []Node{{NodeID: "n1", Name: "AI chat", Type: "chatNode", InputTokens: 3, OutputTokens: 2}}})
	defer s.Close()
	resp, got := post(t, s, "Bearer k", `{"stream":true,"detail":true,`+msgs+`}`)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream;charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	want := "event: flowNodeStatus\ndata: {\"name\":\"AI chat\",\"status\":\"running\"}\n\n" +
		"event: answer\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hi\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0}],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\"}\n\n" +
		"event: answer\ndata: {\"choices\":[{\"delta\":{\"content\":\" 你好\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0}],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\"}\n\n" +
		"event: answer\ndata: {\"choices\":[{\"delta\":{\"content\":null,\"role\":\"assistant\"},\"finish_reason\":\"stop\",\"index\":0}],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\"}\n\n" +
		"event: answer\ndata: [DONE]\n\n" +
		"event: flowResponses\ndata: [{\"id\":\"respA\",\"inputTokens\":3,\"moduleName\":\"AI chat\",\"moduleType\":\"chatNode\",\"nodeId\":\"n1\",\"outputTokens\":2,\"runningTime\":0}]\n\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if r := s.LastRequest(); r.Authorization != "Bearer k" || !strings.Contains(string(r.Body), `"detail":true`) || r.Canceled {
		t.Errorf("recorded %+v", r)
	}
}

// Without detail: no event lines, no named events, no flowResponses.
func TestPlainStreamBytes(t *testing.T) {
	s := NewServer(Options{Answer: "a b", UpdateVariables: []byte(`{"x":1}`)})
	defer s.Close()
	_, got := post(t, s, "", `{"stream":true,`+msgs+`}`)
	want := "data: {\"choices\":[{\"delta\":{\"content\":\"a\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0}],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\"}\n\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":\" b\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0}],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\"}\n\n" +
		"data: {\"choices\":[{\"delta\":{\"content\":null,\"role\":\"assistant\"},\"finish_reason\":\"stop\",\"index\":0}],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\"}\n\n" +
		"data: [DONE]\n\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestJSONAnswers(t *testing.T) {
	s := NewServer(Options{Key: "k", Answer: "ok"})
	defer s.Close()
	resp, got := post(t, s, "Bearer k", `{"chatId":"c1",`+msgs+`}`)
	want := `{"choices":[{"finish_reason":"stop","index":0,"message":{"content":"ok","role":"assistant"}}],"id":"c1","model":"","usage":{"completion_tokens":1,"prompt_tokens":1,"total_tokens":1}}`
	if resp.StatusCode != 200 || got != want {
		t.Errorf("%d %s\nwant %s", resp.StatusCode, got, want)
	}
	resp, got = post(t, s, "Bearer bad", `{`+msgs+`}`)
	if want := `{"code":514,"data":null,"message":"Api Key 不合法","statusText":"unAuthApiKey"}`; resp.StatusCode != 500 || got != want {
		t.Errorf("%d %s\nwant %s", resp.StatusCode, got, want)
	}
	resp, got = post(t, s, "Bearer bad", `{"stream":true,`+msgs+`}`)
	if want := "event: error\ndata: {\"code\":514,\"data\":null,\"message\":\"Api Key 不合法\",\"statusText\":\"unAuthApiKey\"}\n\n"; resp.StatusCode != 200 || got != want {
		t.Errorf("%d %q\nwant %q", resp.StatusCode, got, want)
	}
	resp, got = post(t, s, "Bearer k", `{"stream":true,"messages":[]}`)
	if want := "event: error\ndata: {\"message\":\"messages is empty\"}\n\n"; resp.StatusCode != 200 || got != want {
		t.Errorf("%d %q\nwant %q", resp.StatusCode, got, want)
	}
	if n := len(s.Requests()); n != 4 {
		t.Errorf("%d requests recorded", n)
	}
}
