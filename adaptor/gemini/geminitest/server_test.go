package geminitest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("x-goog-api-key", key)
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

func TestMockChecksRequests(t *testing.T) {
	s := New(Options{Key: "k"})
	defer s.Close()
	gen := s.BaseURL() + "/models/g:generateContent"
	ok := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
	for _, c := range []struct {
		url, key, body string
		status         int
		has            string
	}{
		{gen, "k", ok, 200, `"finishReason":"STOP"`},
		{gen, "bad", ok, 400, "API_KEY_INVALID"},
		{gen, "", ok, 403, "PERMISSION_DENIED"},
		{gen, "k", `{"contents":[]}`, 400, "contents is not specified"},
		{gen, "k", `{"contents":[{"role":"assistant","parts":[{"text":"x"}]}]}`, 400, "valid role"},
		{gen, "k", `{"contents":[{"role":"user","parts":[]}]}`, 400, "must not be empty"},
		{gen, "k", `{"contents":[{"role":"user","parts":[{"text":""}]}]}`, 400, "empty text"},
		{s.BaseURL() + "/models/g:embed", "k", ok, 404, "NOT_FOUND"},
		{s.BaseURL() + "/models/g:streamGenerateContent", "k", ok, 200, `[{"candidates"`},
		{s.BaseURL() + "/models/g:streamGenerateContent?alt=sse", "k", ok, 200, "data: {"},
	} {
		status, body := post(t, c.url, c.key, c.body)
		if status != c.status || !strings.Contains(body, c.has) {
			t.Errorf("%s key %q %s: %d %s", c.url, c.key, c.body, status, body)
		}
	}
	if n := len(s.Requests()); n != 10 || s.Last().Model != "g" || !s.Last().Stream || s.Last().Query.Get("alt") != "sse" {
		t.Fatalf("recorded %d, last %+v", n, s.Last())
	}
}

func TestMockFunctionCallsThenAnswer(t *testing.T) {
	s := New(Options{FunctionCalls: []FunctionCall{{Name: "f", Args: `{"a":1}`}}, Answer: "done"})
	defer s.Close()
	url := s.BaseURL() + "/models/g:generateContent"
	_, body := post(t, url, "k", `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`)
	var r struct {
		Candidates []struct {
			Content struct {
				Parts []map[string]json.RawMessage `json:"parts"`
			} `json:"content"`
		} `json:"candidates"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || string(r.Candidates[0].Content.Parts[0]["functionCall"]) != `{"args":{"a":1},"name":"f"}` {
		t.Fatalf("%v %s", err, body)
	}
	_, body = post(t, url, "k", `{"contents":[{"role":"user","parts":[{"text":"hi"}]},{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":1}}}]},{"role":"user","parts":[{"functionResponse":{"name":"f","response":{"ok":true}}}]}]}`)
	if !strings.Contains(body, `"text":"done"`) {
		t.Fatal(body)
	}
}
