package sparktest

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The wire document's S1 URL (api_key= wording) and the same with S4's hmac username= wording.
const (
	s1URL = "http://spark-api.xf-yun.com/v1.1/chat?authorization=YXBpX2tleT0iYWRkZDIyNzJiNmQ4YjdjOGFiZGQ3OTUzMTQyMGNhM2IiLCBhbGdvcml0aG09ImhtYWMtc2hhMjU2IiwgaGVhZGVycz0iaG9zdCBkYXRlIHJlcXVlc3QtbGluZSIsIHNpZ25hdHVyZT0iejVnSGR1M3B4VlY0QURNeWs0Njd3T1dEUTlxNkJRelIzbmZNVGpjL0RhUT0i&date=Fri%2C+05+May+2023+10%3A43%3A39+GMT&host=spark-api.xf-yun.com"
	s4URL = "http://spark-api.xf-yun.com/v1.1/chat?authorization=aG1hYyB1c2VybmFtZT0iYWRkZDIyNzJiNmQ4YjdjOGFiZGQ3OTUzMTQyMGNhM2IiLCBhbGdvcml0aG09ImhtYWMtc2hhMjU2IiwgaGVhZGVycz0iaG9zdCBkYXRlIHJlcXVlc3QtbGluZSIsIHNpZ25hdHVyZT0iejVnSGR1M3B4VlY0QURNeWs0Njd3T1dEUTlxNkJRelIzbmZNVGpjL0RhUT0i&date=Fri%2C+05+May+2023+10%3A43%3A39+GMT&host=spark-api.xf-yun.com"
)

func vectorServer(t *testing.T, now time.Time) *Server {
	t.Helper()
	s := &Server{opts: Options{APIKey: APIKey, APISecret: APISecret, MaxSkew: 300 * time.Second, Now: func() time.Time { return now }}}
	return s
}

func TestAuthorizeVectors(t *testing.T) {
	signed, _ := time.Parse(http.TimeFormat, "Fri, 05 May 2023 10:43:39 GMT")
	for _, tc := range []struct {
		name   string
		url    string
		now    time.Time
		status int
		msg    string
	}{
		{"S1", s1URL, signed, 0, ""},
		{"S4 wording", s4URL, signed.Add(299 * time.Second), 0, ""},
		{"expired", s1URL, signed.Add(301 * time.Second), 401, MsgBadDate},
		{"other path", strings.Replace(s1URL, "/v1.1/chat", "/v3.5/chat", 1), signed, 403, MsgBadSignature},
		{"host mismatch", strings.Replace(s1URL, "host=spark-api", "host=evil", 1), signed, 403, MsgBadSignature},
		{"date tampered", strings.Replace(s1URL, "10%3A43%3A39", "10%3A43%3A40", 1), signed, 403, MsgBadSignature},
		{"UTC not GMT", strings.Replace(s1URL, "+GMT", "+UTC", 1), signed, 401, MsgBadDate},
		{"no authorization", "http://spark-api.xf-yun.com/v1.1/chat?date=Fri%2C+05+May+2023+10%3A43%3A39+GMT&host=spark-api.xf-yun.com", signed, 401, MsgUnknownKey},
		{"no query", "http://spark-api.xf-yun.com/v1.1/chat", signed, 401, MsgBadDate},
	} {
		s := vectorServer(t, tc.now)
		status, msg := s.authorize(httptest.NewRequest("GET", tc.url, nil))
		if status != tc.status || msg != tc.msg {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, msg, tc.status, tc.msg)
		}
	}
	s := vectorServer(t, signed)
	s.opts.APIKey = "someone-else"
	if status, msg := s.authorize(httptest.NewRequest("GET", s1URL, nil)); status != 401 || msg != MsgUnknownKey {
		t.Errorf("unknown key: %d %q", status, msg)
	}
}

func TestPieces(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want []string
	}{
		{"Eleven is also prime.", 4, []string{"Eleven", " is a", "lso p", "rime."}},
		{"你好，世界！星火大模型", 3, []string{"你好，世", "界！星火", "大模型"}},
		{"ab", 3, []string{"a", "b", ""}},
		{"abc", 0, []string{"abc"}},
	} {
		if got := Pieces(tc.in, tc.n); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Pieces(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestAnswerFrames(t *testing.T) {
	s := &Server{opts: Options{Answer: "Eleven is also prime.", Frames: 2, SID: SID}}
	var got []string
	for _, f := range s.answerFrames() {
		got = append(got, string(f))
	}
	want := []string{
		`{"header":{"code":0,"message":"Success","sid":"cht000a11@dx0000000001","status":0},"payload":{"choices":{"status":0,"seq":0,"text":[{"content":"Eleven is a","role":"assistant","index":0}]}}}`,
		`{"header":{"code":0,"message":"Success","sid":"cht000a11@dx0000000001","status":2},"payload":{"choices":{"status":2,"seq":1,"text":[{"content":"lso prime.","role":"assistant","index":0}]},"usage":{"text":{"question_tokens":4,"prompt_tokens":31,"completion_tokens":5,"total_tokens":36}}}}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
	if e := string(s.errorFrame(10013, "input content audit failed")); e != `{"header":{"code":10013,"message":"input content audit failed","sid":"cht000a11@dx0000000001","status":2}}` {
		t.Errorf("error frame %s", e)
	}
}

func TestCheckRequestFrame(t *testing.T) {
	s := &Server{opts: Options{AppID: AppID}}
	ok := `{"header":{"app_id":"5f2a9c1d"},"parameter":{"chat":{"domain":"lite","temperature":1,"max_tokens":8192,"top_k":6}},"payload":{"message":{"text":[{"role":"system","content":"s"},{"role":"user","content":"u"}]}}}`
	for _, tc := range []struct {
		name, frame string
		code        int
	}{
		{"ok", ok, 0},
		{"not json", `{`, 10003},
		{"wrong app", strings.Replace(ok, AppID, "x", 1), 10016},
		{"no domain", strings.Replace(ok, `"domain":"lite",`, "", 1), 10004},
		{"temperature 0", strings.Replace(ok, `"temperature":1`, `"temperature":0`, 1), 10005},
		{"max_tokens 0", strings.Replace(ok, `"max_tokens":8192`, `"max_tokens":0`, 1), 10005},
		{"top_k 7", strings.Replace(ok, `"top_k":6`, `"top_k":7`, 1), 10005},
		{"system not first", strings.Replace(ok, `{"role":"system","content":"s"},{"role":"user","content":"u"}`, `{"role":"user","content":"u"},{"role":"system","content":"s"}`, 1), 10004},
		{"content parts", strings.Replace(ok, `"content":"u"`, `"content":[{"type":"text","text":"u"}]`, 1), 10004},
		{"empty content", strings.Replace(ok, `"content":"u"`, `"content":""`, 1), 10004},
		{"tool role", strings.Replace(ok, `"role":"user"`, `"role":"tool"`, 1), 10004},
	} {
		if code, msg := s.check([]byte(tc.frame)); code != tc.code {
			t.Errorf("%s: code %d (%s), want %d", tc.name, code, msg, tc.code)
		}
	}
}
