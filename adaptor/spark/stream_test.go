package spark

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/spark/sparktest"
)

const chatBody = `{"model":"generalv3.5","stream":true,"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Name a prime."}]}`

func testChannel(srv *sparktest.Server, path string) *adaptor.Channel {
	return &adaptor.Channel{Name: "spark-test", Kind: "spark", BaseURL: srv.WSURL(path), Credentials: map[string]string{
		"app_id": sparktest.AppID, "api_key": sparktest.APIKey, "api_secret": sparktest.APISecret}}
}

func testRequest(body string) *adaptor.Request {
	m := gjson.Get(body, "model").Str
	return &adaptor.Request{Body: []byte(body), Model: m, UpstreamModel: m, Stream: true}
}

// testCtx bounds every test: nothing may hang.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type chunk struct {
	Choices  string
	Usage    adaptor.Usage
	HasUsage bool
}

// drain reads events until EOF or an error, copying each (events are only valid until the next call).
func drain(t *testing.T, ev adaptor.Events) ([]chunk, error) {
	t.Helper()
	var out []chunk
	for {
		e, err := ev.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if _, again := ev.Next(); !errors.Is(again, io.EOF) {
					t.Errorf("Next after EOF: %v, want io.EOF again", again)
				}
				return out, nil
			}
			return out, err
		}
		out = append(out, chunk{string(e.Choices), e.Usage, e.HasUsage})
	}
}

func content(first bool, text, finish string) string {
	role := ""
	if first {
		role = `"role":"assistant",`
	}
	f := "null"
	if finish != "" {
		f = `"` + finish + `"`
	}
	if text == "" && !first {
		return `[{"index":0,"delta":{},"finish_reason":` + f + `}]`
	}
	return `[{"index":0,"delta":{` + role + `"content":` + strconv.Quote(text) + `},"finish_reason":` + f + `}]`
}

var docUsage = adaptor.Usage{PromptTokens: 31, CompletionTokens: 5, TotalTokens: 36}

func TestStreamAgainstMock(t *testing.T) {
	srv := sparktest.NewServer(sparktest.Options{Frames: 4, Domain: "generalv3.5"})
	defer srv.Close()
	ev, err := New().Stream(testCtx(t), testChannel(srv, "/v3.5/chat"), testRequest(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	got, err := drain(t, ev)
	if err != nil {
		t.Fatal(err)
	}
	ev.Close()
	// "Eleven is also prime." is 21 characters: pieces of 6, 5, 5, 5.
	want := []chunk{
		{Choices: content(true, "Eleven", "")},
		{Choices: content(false, " is a", "")},
		{Choices: content(false, "lso p", "")},
		{Choices: content(false, "rime.", "stop"), Usage: docUsage, HasUsage: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
	sess := srv.Sessions()
	if len(sess) != 1 {
		t.Fatalf("%d sessions, want 1", len(sess))
	}
	wantFrame := `{"header":{"app_id":"5f2a9c1d"},"parameter":{"chat":{"domain":"generalv3.5"}},"payload":{"message":{"text":[{"role":"system","content":"Be terse."},{"role":"user","content":"Name a prime."}]}}}`
	if sess[0].Path != "/v3.5/chat" || string(sess[0].Frame) != wantFrame {
		t.Errorf("session %s %s, want /v3.5/chat %s", sess[0].Path, sess[0].Frame, wantFrame)
	}
}

// Chinese text split between characters across frames, and each frame further cut into WebSocket
// fragments of 5 bytes (so inside characters): chunks still carry whole, exact text.
func TestStreamChineseFragmented(t *testing.T) {
	const answer = "你好，世界！星火大模型"
	srv := sparktest.NewServer(sparktest.Options{Answer: answer, Frames: 3, Fragment: 5})
	defer srv.Close()
	ev, err := New().Stream(testCtx(t), testChannel(srv, "/v3.5/chat"), testRequest(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	got, err := drain(t, ev)
	if err != nil {
		t.Fatal(err)
	}
	want := []chunk{
		{Choices: `[{"index":0,"delta":{"role":"assistant","content":"你好，世"},"finish_reason":null}]`},
		{Choices: `[{"index":0,"delta":{"content":"界！星火"},"finish_reason":null}]`},
		{Choices: `[{"index":0,"delta":{"content":"大模型"},"finish_reason":"stop"}]`, Usage: docUsage, HasUsage: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
}

var chatcmplID = regexp.MustCompile(`^chatcmpl-[0-9A-Za-z]{24}$`)

// normalize checks the generated id and created time and replaces them with fixed values.
func normalize(t *testing.T, body []byte) string {
	t.Helper()
	id, created := gjson.GetBytes(body, "id").Str, gjson.GetBytes(body, "created").Int()
	if !chatcmplID.MatchString(id) {
		t.Errorf("id %q", id)
	}
	if d := time.Since(time.Unix(created, 0)); d < -time.Minute || d > time.Minute {
		t.Errorf("created %d is not now", created)
	}
	s := strings.Replace(string(body), `"id":"`+id+`"`, `"id":"ID"`, 1)
	return strings.Replace(s, `"created":`+strconv.FormatInt(created, 10), `"created":0`, 1)
}

func TestCompleteAgainstMock(t *testing.T) {
	srv := sparktest.NewServer(sparktest.Options{Answer: "十一也是质数。", Frames: 3})
	defer srv.Close()
	req := testRequest(chatBody)
	req.Model = "my-spark" // the client's name for it comes back in the completion
	got, err := New().Complete(testCtx(t), testChannel(srv, "/v3.5/chat"), req)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"ID","object":"chat.completion","created":0,"model":"my-spark","choices":[{"index":0,"message":{"role":"assistant","content":"十一也是质数。","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":5,"total_tokens":36}}`
	if s := normalize(t, got.Body); s != want {
		t.Errorf("\n got %s\nwant %s", s, want)
	}
	if got.Usage != docUsage {
		t.Errorf("usage %+v", got.Usage)
	}
}

// Without usage on the last frame the completion's usage is estimated, and marked so.
func TestCompleteWithoutUsageEstimates(t *testing.T) {
	srv := sparktest.NewServer(sparktest.Options{NoUsage: true, Frames: 2})
	defer srv.Close()
	req := testRequest(chatBody)
	got, err := New().Complete(testCtx(t), testChannel(srv, "/v3.5/chat"), req)
	if err != nil {
		t.Fatal(err)
	}
	if want := adaptor.EstimateUsage(req.Body, sparktest.Answer); got.Usage != want || !want.Estimated {
		t.Errorf("usage %+v, want %+v", got.Usage, want)
	}
}

func TestFunctionCallAgainstMock(t *testing.T) {
	srv := sparktest.NewServer(sparktest.Options{FunctionCall: &sparktest.FunctionCall{Name: "get_weather", Arguments: `{"city":"巴黎"}`},
		Usage: &sparktest.Usage{PromptTokens: 60, CompletionTokens: 12, TotalTokens: 72}})
	defer srv.Close()
	body := `{"model":"generalv3.5","messages":[{"role":"user","content":"Weather in Paris?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}`
	got, err := New().Complete(testCtx(t), testChannel(srv, "/v3.5/chat"), testRequest(body))
	if err != nil {
		t.Fatal(err)
	}
	s := callID.ReplaceAllString(normalize(t, got.Body), `"call_ID"`)
	want := `{"id":"ID","object":"chat.completion","created":0,"model":"generalv3.5","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_ID","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"巴黎\"}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":60,"completion_tokens":12,"total_tokens":72}}`
	if s != want {
		t.Errorf("\n got %s\nwant %s", s, want)
	}
	if f := gjson.GetBytes(srv.Sessions()[0].Frame, "payload.functions.text.0.name").Str; f != "get_weather" {
		t.Errorf("functions not sent: %s", srv.Sessions()[0].Frame)
	}
}

func TestErrorFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts sparktest.Options
		// chunks before the error
		before []chunk
		want   error
	}{
		{"rate limit first", sparktest.Options{ErrorCode: 11202}, nil,
			&adaptor.Error{Status: 429, Type: adaptor.TypeRateLimit, Code: "11202", Retryable: true,
				Message: "upstream: per-second rate limit exceeded (spark code 11202, sid " + sparktest.SID + ")"}},
		{"chinese message mid-stream", sparktest.Options{Frames: 3, ErrorAfter: 1, ErrorCode: 10110, ErrorMessage: "服务繁忙，请稍后再试"},
			[]chunk{{Choices: content(true, "Eleven ", "")}},
			&adaptor.Error{Status: 503, Type: adaptor.TypeServer, Code: "10110", Retryable: true,
				Message: "upstream: 服务繁忙，请稍后再试 (spark code 10110, sid " + sparktest.SID + ")"}},
		{"input audit", sparktest.Options{ErrorCode: 10013}, nil,
			&adaptor.Error{Status: 400, Type: adaptor.TypeInvalidRequest, Code: "10013",
				Message: "upstream: input content audit failed (spark code 10013, sid " + sparktest.SID + ")"}},
		{"context too long", sparktest.Options{ErrorCode: 10907}, nil,
			&adaptor.Error{Status: 400, Type: adaptor.TypeInvalidRequest, Code: "10907",
				Message: "upstream: token count exceeds limit (spark code 10907, sid " + sparktest.SID + ")"}},
		{"app not authorised", sparktest.Options{AppID: "other"}, nil,
			&adaptor.Error{Status: 403, Type: adaptor.TypePermission, Code: "10016",
				Message: "upstream: appid authorization error (spark code 10016, sid " + sparktest.SID + ")"}},
		{"domain does not match URL", sparktest.Options{Domain: "4.0Ultra"}, nil,
			&adaptor.Error{Status: 400, Type: adaptor.TypeInvalidRequest, Code: "10005",
				Message: "upstream: invalid parameter value: domain generalv3.5 does not match this URL (spark code 10005, sid " + sparktest.SID + ")"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := sparktest.NewServer(tc.opts)
			defer srv.Close()
			ev, err := New().Stream(testCtx(t), testChannel(srv, "/v3.5/chat"), testRequest(chatBody))
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()
			got, err := drain(t, ev)
			if !reflect.DeepEqual(got, tc.before) || !reflect.DeepEqual(err, tc.want) {
				t.Errorf("\n got %+v, %#v\nwant %+v, %#v", got, err, tc.before, tc.want)
			}
			if _, again := ev.Next(); !reflect.DeepEqual(again, tc.want) {
				t.Errorf("Next after the error: %v", again)
			}
		})
	}
}

// An output audit stop after text ends the answer with finish_reason content_filter: the stream
// completes (io.EOF) and Complete returns the partial answer.
func TestContentFilterAfterText(t *testing.T) {
	opts := sparktest.Options{Frames: 3, ErrorAfter: 2, ErrorCode: 10014}
	srv := sparktest.NewServer(opts)
	defer srv.Close()
	ev, err := New().Stream(testCtx(t), testChannel(srv, "/v3.5/chat"), testRequest(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	got, err := drain(t, ev)
	ev.Close()
	want := []chunk{{Choices: content(true, "Eleven ", "")}, {Choices: content(false, "is also", "")},
		{Choices: `[{"index":0,"delta":{},"finish_reason":"content_filter"}]`}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("\n got %+v, %v\nwant %+v", got, err, want)
	}

	c, err := New().Complete(testCtx(t), testChannel(srv, "/v3.5/chat"), testRequest(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	if s := gjson.GetBytes(c.Body, "choices.0.message.content").Str + "|" + gjson.GetBytes(c.Body, "choices.0.finish_reason").Str; s != "Eleven is also|content_filter" {
		t.Errorf("completion %s", c.Body)
	}
}

func TestHandshakeRefused(t *testing.T) {
	base := time.Now()
	for _, tc := range []struct {
		name  string
		opts  sparktest.Options
		creds map[string]string
		now   time.Time
		want  *adaptor.Error
	}{
		{"wrong secret", sparktest.Options{}, map[string]string{"api_secret": "wrong"}, base,
			&adaptor.Error{Status: 403, Type: adaptor.TypePermission, Code: "handshake_refused", Message: "upstream: " + sparktest.MsgBadSignature}},
		{"unknown key", sparktest.Options{}, map[string]string{"api_key": "nobody"}, base,
			&adaptor.Error{Status: 401, Type: adaptor.TypeAuthentication, Code: "handshake_refused", Message: "upstream: " + sparktest.MsgUnknownKey}},
		{"expired date", sparktest.Options{}, nil, base.Add(-301 * time.Second),
			&adaptor.Error{Status: 401, Type: adaptor.TypeAuthentication, Code: "handshake_refused", Message: "upstream: " + sparktest.MsgBadDate}},
		{"date from the future", sparktest.Options{}, nil, base.Add(time.Hour),
			&adaptor.Error{Status: 401, Type: adaptor.TypeAuthentication, Code: "handshake_refused", Message: "upstream: " + sparktest.MsgBadDate}},
		{"gateway busy, no message", sparktest.Options{Refuse: 503}, nil, base,
			&adaptor.Error{Status: 503, Type: adaptor.TypeServer, Code: "handshake_refused", Retryable: true,
				Message: "upstream: Spark refused the WebSocket handshake with HTTP 503"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := sparktest.NewServer(tc.opts)
			defer srv.Close()
			ch := testChannel(srv, "/v3.5/chat")
			for k, v := range tc.creds {
				ch.Credentials[k] = v
			}
			a := New()
			a.now = func() time.Time { return tc.now }
			ev, err := a.Stream(testCtx(t), ch, testRequest(chatBody))
			if ev != nil || !reflect.DeepEqual(err, tc.want) {
				t.Errorf("got %v, %#v\nwant %#v", ev, err, tc.want)
			}
			if _, err := a.Complete(testCtx(t), ch, testRequest(chatBody)); !reflect.DeepEqual(err, tc.want) {
				t.Errorf("Complete: %#v", err)
			}
			if srv.Refused() != 2 || len(srv.Sessions()) != 0 {
				t.Errorf("refused %d, sessions %d", srv.Refused(), len(srv.Sessions()))
			}
		})
	}
}

// A socket that closes before the status-2 frame is a broken stream, never a complete answer.
func TestEarlyClose(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts sparktest.Options
		want *adaptor.Error
	}{
		{"normal close frame", sparktest.Options{Frames: 3, CloseBeforeEnd: true},
			adaptor.StreamBroken("Spark closed the WebSocket (status 1000) before the final frame")},
		{"connection dropped", sparktest.Options{Frames: 3, CloseBeforeEnd: true, Abrupt: true},
			adaptor.StreamBroken("Spark WebSocket lost before the final frame")},
		{"closed before any frame", sparktest.Options{Frames: 1, CloseBeforeEnd: true},
			adaptor.StreamBroken("Spark closed the WebSocket (status 1000) before the final frame")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := sparktest.NewServer(tc.opts)
			defer srv.Close()
			ev, err := New().Stream(testCtx(t), testChannel(srv, "/v3.5/chat"), testRequest(chatBody))
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()
			got, err := drain(t, ev)
			if len(got) != tc.opts.Frames-1 || !reflect.DeepEqual(err, tc.want) {
				t.Errorf("got %d chunks, %#v\nwant %d chunks, %#v", len(got), err, tc.opts.Frames-1, tc.want)
			}
			if c, err := New().Complete(testCtx(t), testChannel(srv, "/v3.5/chat"), testRequest(chatBody)); c != nil || !reflect.DeepEqual(err, tc.want) {
				t.Errorf("Complete: %v, %#v", c, err)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	ch := &adaptor.Channel{Name: "gone", BaseURL: "ws://" + addr + "/v3.5/chat", Credentials: map[string]string{
		"app_id": "a", "api_key": "k", "api_secret": "s"}}
	_, err = New().Stream(testCtx(t), ch, testRequest(chatBody))
	var ae *adaptor.Error
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "upstream_unreachable" || !ae.Retryable {
		t.Fatalf("got %#v", err)
	}
	if strings.Contains(ae.Message, "authorization") || strings.Contains(ae.Message, "signature") {
		t.Errorf("the error leaks the signed URL: %s", ae.Message)
	}
}

// Cancelling the client's context while Next waits closes the socket at once: Next returns 499 and
// the upstream sees the client go away.
func TestCancelClosesSocket(t *testing.T) {
	srv := sparktest.NewServer(sparktest.Options{Frames: 3, Hold: true})
	defer srv.Close()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	ev, err := New().Stream(ctx, testChannel(srv, "/v3.5/chat"), testRequest(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	for range 2 {
		if _, err := ev.Next(); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		ev  *adaptor.Event
		err error
	}
	done := make(chan result, 1)
	go func() { e, err := ev.Next(); done <- result{e, err} }() // blocks: the server holds the last frame
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case r := <-done:
		want := &adaptor.Error{Status: 499, Type: adaptor.TypeInvalidRequest, Code: "client_closed", Message: "client closed the request"}
		if r.ev != nil || !reflect.DeepEqual(r.err, want) {
			t.Errorf("Next after cancel: %v, %#v", r.ev, r.err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Next still blocked 2s after cancel")
	}
	select {
	case <-srv.ClientClosed():
	case <-time.After(2 * time.Second):
		t.Fatal("the upstream did not see the socket close")
	}
}

// Close mid-answer (the surface giving up) closes the socket too.
func TestCloseMidStream(t *testing.T) {
	srv := sparktest.NewServer(sparktest.Options{Frames: 5, Delay: 20 * time.Millisecond})
	defer srv.Close()
	ev, err := New().Stream(testCtx(t), testChannel(srv, "/v3.5/chat"), testRequest(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Next(); err != nil {
		t.Fatal(err)
	}
	ev.Close()
	ev.Close() // twice is fine
	select {
	case <-srv.ClientClosed():
	case <-time.After(2 * time.Second):
		t.Fatal("the upstream did not see the socket close")
	}
	if srv.ClientCloses() != 1 {
		t.Errorf("%d closes", srv.ClientCloses())
	}
	if _, err := ev.Next(); err == nil {
		t.Error("Next after Close returned an event")
	}
}

// The channel timeout bounds a stalled upstream: 504, and the socket is closed.
func TestChannelTimeout(t *testing.T) {
	srv := sparktest.NewServer(sparktest.Options{Frames: 2, Hold: true})
	defer srv.Close()
	ch := testChannel(srv, "/v3.5/chat")
	ch.Timeout = 200 * time.Millisecond
	ev, err := New().Stream(testCtx(t), ch, testRequest(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	got, err := drain(t, ev)
	want := &adaptor.Error{Status: 504, Type: adaptor.TypeTimeout, Code: "upstream_timeout", Message: "upstream timed out", Retryable: true}
	if len(got) != 1 || !reflect.DeepEqual(err, want) {
		t.Errorf("got %d chunks, %#v", len(got), err)
	}
	select {
	case <-srv.ClientClosed():
	case <-time.After(2 * time.Second):
		t.Fatal("the upstream did not see the socket close")
	}
}

// Delays between frames are waited out, not mistaken for an end.
func TestSlowFrames(t *testing.T) {
	srv := sparktest.NewServer(sparktest.Options{Frames: 3, Delay: 30 * time.Millisecond})
	defer srv.Close()
	start := time.Now()
	c, err := New().Complete(testCtx(t), testChannel(srv, "/v3.5/chat"), testRequest(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(c.Body, "choices.0.message.content").Str; got != sparktest.Answer {
		t.Errorf("content %q", got)
	}
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("finished in %v: delays not applied", d)
	}
}

// A base_url without a path takes the model's documented path; a client that reroutes the Spark host
// to the mock shows the relay dialled that path and signed it for that host.
func TestBaseURLWithoutPathTakesModelPath(t *testing.T) {
	srv := sparktest.NewServer(sparktest.Options{Domain: "max-32k"})
	defer srv.Close()
	target := strings.TrimPrefix(srv.URL, "http://")
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, target)
	}}
	defer tr.CloseIdleConnections()
	ch := &adaptor.Channel{Name: "spark", HTTP: &http.Client{Transport: tr}, Credentials: map[string]string{
		"app_id": sparktest.AppID, "api_key": sparktest.APIKey, "api_secret": sparktest.APISecret}}
	// The mock is plain HTTP, so point the channel at ws:// with the default host and no path.
	ch.BaseURL = "ws://spark-api.xf-yun.com"
	if _, err := New().Complete(testCtx(t), ch, testRequest(strings.Replace(chatBody, "generalv3.5", "Spark-Max-32K", 1))); err != nil {
		t.Fatal(err)
	}
	s := srv.Sessions()[0]
	if s.Path != "/chat/max-32k" || !strings.Contains(s.Query, "host=spark-api.xf-yun.com") {
		t.Errorf("dialled %s?%s", s.Path, s.Query)
	}
}
