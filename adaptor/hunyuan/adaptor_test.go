package hunyuan

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/hunyuan/hunyuantest"
)

var (
	_ adaptor.Adaptor   = (*Adaptor)(nil)
	_ adaptor.Validator = (*Adaptor)(nil)
)

const testID, testKey = "AKIDtestid", "testkey"

func mockChannel(srv *hunyuantest.Server) *adaptor.Channel {
	return &adaptor.Channel{Name: "hy", Kind: "hunyuan", BaseURL: srv.URL,
		Credentials: map[string]string{CredSecretID: testID, CredSecretKey: testKey}}
}

func signedMock(t *testing.T, o hunyuantest.Options) (*hunyuantest.Server, *adaptor.Channel) {
	o.VerifySignature, o.SecretID, o.SecretKey = true, testID, testKey
	srv := hunyuantest.NewServer(o)
	t.Cleanup(srv.Close)
	return srv, mockChannel(srv)
}

func chatReq(stream bool) *adaptor.Request {
	return &adaptor.Request{Body: []byte(`{"model":"my-model","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Capital of France?"}]}`),
		Model: "my-model", UpstreamModel: "hunyuan-lite", Stream: stream}
}

func asError(t *testing.T, err error) *adaptor.Error {
	t.Helper()
	var ae *adaptor.Error
	if !errors.As(err, &ae) {
		t.Fatalf("want *adaptor.Error, got %T %v", err, err)
	}
	return ae
}

func TestValidate(t *testing.T) {
	a := New()
	for _, tc := range []struct {
		ch   *adaptor.Channel
		want string
	}{
		{&adaptor.Channel{Name: "c", Credentials: map[string]string{"secret_key": "k"}}, `channel "c" (kind hunyuan): credentials.secret_id is required`},
		{&adaptor.Channel{Name: "c", Credentials: map[string]string{"secret_id": "i"}}, `channel "c" (kind hunyuan): credentials.secret_key is required`},
		{&adaptor.Channel{Name: "c"}, `channel "c" (kind hunyuan): credentials.secret_id is required`},
		{&adaptor.Channel{Name: "c", BaseURL: "ftp://x", Credentials: map[string]string{"secret_id": "i", "secret_key": "k"}}, `channel "c" (kind hunyuan): base_url "ftp://x" is not an http(s) URL`},
		{&adaptor.Channel{Name: "c", Credentials: map[string]string{"secret_id": "i", "secret_key": "k", "region": "ap-guangzhou"}}, ""},
	} {
		err := a.Validate(tc.ch)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("got %q want %q", got, tc.want)
		}
	}
}

func TestCompleteAgainstMock(t *testing.T) {
	srv, ch := signedMock(t, hunyuantest.Options{Answer: "Paris.", Chunks: 2, Models: []string{"hunyuan-lite"}})
	ch.Credentials[CredRegion] = "ap-guangzhou"
	ch.Credentials[CredToken] = "sts-token"
	a := New()
	c, err := a.Complete(context.Background(), ch, chatReq(false))
	if err != nil {
		t.Fatal(err)
	}
	created := gjson.GetBytes(c.Body, "created").Int()
	want := `{"id":"chatcmpl-mock-request-1","object":"chat.completion","created":` + strconv.FormatInt(created, 10) + `,"model":"my-model","choices":[{"index":0,"message":{"role":"assistant","content":"Paris.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}`
	if string(c.Body) != want {
		t.Errorf("got  %s\nwant %s", c.Body, want)
	}
	if c.Usage != (adaptor.Usage{PromptTokens: 9, CompletionTokens: 2, TotalTokens: 11}) {
		t.Errorf("usage %+v", c.Usage)
	}
	r := srv.Requests()[0]
	if string(r.Body) != `{"Model":"hunyuan-lite","Messages":[{"Role":"system","Content":"Be brief."},{"Role":"user","Content":"Capital of France?"}],"Stream":false}` {
		t.Errorf("sent %s", r.Body)
	}
	for k, v := range map[string]string{"X-TC-Region": "ap-guangzhou", "X-TC-Token": "sts-token", "Content-Type": "application/json"} {
		if g := r.Header.Get(k); g != v {
			t.Errorf("%s = %q", k, g)
		}
	}
}

// drain collects a stream's text and last usage, and its end error.
func drain(ev adaptor.Events) (text string, u adaptor.Usage, n int, err error) {
	defer ev.Close()
	var acc adaptor.Accumulator
	for {
		e, err := ev.Next()
		if err != nil {
			return acc.Text(), acc.Usage, n, err
		}
		n++
		acc.Add(e)
	}
}

func TestStreamAgainstMock(t *testing.T) {
	_, ch := signedMock(t, hunyuantest.Options{Answer: "巴黎是法国的首都。🙂", Chunks: 4})
	ev, err := New().Stream(context.Background(), ch, chatReq(true))
	if err != nil {
		t.Fatal(err)
	}
	text, u, n, err := drain(ev)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end %v", err)
	}
	if text != "巴黎是法国的首都。🙂" || n != 5 || u != (adaptor.Usage{PromptTokens: 9, CompletionTokens: 4, TotalTokens: 13}) {
		t.Errorf("text %q, %d events, usage %+v", text, n, u)
	}
}

func TestStreamToolCallsAgainstMock(t *testing.T) {
	_, ch := signedMock(t, hunyuantest.Options{ToolCalls: []hunyuantest.ToolCall{
		{ID: "call_1", Name: "get_weather", Arguments: `{"city":"巴黎"}`},
		{ID: "call_2", Name: "get_time", Arguments: `{}`},
	}})
	req := &adaptor.Request{Model: "m", UpstreamModel: "hunyuan-functioncall", Stream: true, Body: []byte(
		`{"model":"m","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":"weather?"}]}`)}
	ev, err := New().Stream(context.Background(), ch, req)
	if err != nil {
		t.Fatal(err)
	}
	c, err := adaptor.Collect(ev, req, "id", 1)
	if err != nil {
		t.Fatal(err)
	}
	got := gjson.GetBytes(c.Body, "choices.0").Raw
	want := `{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"巴黎\"}"}},{"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestSignatureFailures(t *testing.T) {
	srv, ch := signedMock(t, hunyuantest.Options{})
	ch.Credentials[CredSecretKey] = "wrong"
	_, err := New().Complete(context.Background(), ch, chatReq(false))
	if e := asError(t, err); e.Status != 401 || e.Code != "AuthFailure.SignatureFailure" || !strings.Contains(e.Message, "(RequestId mock-request-1)") {
		t.Errorf("complete: %+v", e)
	}
	// Stream requests get the error as a JSON body, not as SSE.
	_, err = New().Stream(context.Background(), ch, chatReq(true))
	if e := asError(t, err); e.Status != 401 || e.Code != "AuthFailure.SignatureFailure" {
		t.Errorf("stream: %+v", e)
	}
	// A clock more than 5 minutes off expires the signature.
	ch.Credentials[CredSecretKey] = testKey
	a := &Adaptor{now: func() time.Time { return time.Now().Add(-10 * time.Minute) }}
	_, err = a.Complete(context.Background(), ch, chatReq(false))
	if e := asError(t, err); e.Status != 401 || e.Code != "AuthFailure.SignatureExpire" {
		t.Errorf("expired: %+v", e)
	}
	if n := len(srv.Requests()); n != 3 {
		t.Errorf("%d requests", n)
	}
}

func TestUpstreamErrorsAgainstMock(t *testing.T) {
	for _, tc := range []struct {
		code   string
		status int
		want   int
	}{
		{"LimitExceeded", 200, 429},
		{"LimitExceeded", 500, 429}, // the body wins over the HTTP status
		{"InvalidParameterValue.Model", 200, 404},
		{"FailedOperation.EngineServerError", 200, 503},
	} {
		_, ch := signedMock(t, hunyuantest.Options{ErrorCode: tc.code, ErrorStatus: tc.status})
		for _, stream := range []bool{false, true} {
			var err error
			if stream {
				_, err = New().Stream(context.Background(), ch, chatReq(true))
			} else {
				_, err = New().Complete(context.Background(), ch, chatReq(false))
			}
			if e := asError(t, err); e.Status != tc.want {
				t.Errorf("%s/%d stream=%v: %+v", tc.code, tc.status, stream, e)
			}
		}
	}
}

func TestStreamFaultsAgainstMock(t *testing.T) {
	for _, tc := range []struct {
		fault   hunyuantest.Fault
		code    int
		events  int
		status  int
		errCode string
	}{
		{hunyuantest.CloseEarly, 0, 2, 502, "upstream_stream_broken"},
		{hunyuantest.Abort, 0, 2, 502, "upstream_stream_broken"},
		{hunyuantest.ErrorFrame, 4000, 2, 502, "upstream_error"},
		{hunyuantest.ErrorFrame, 4001, 1, 504, "upstream_timeout"},
		{hunyuantest.CloseEarly, 0, 0, 502, "upstream_stream_broken"},
	} {
		_, ch := signedMock(t, hunyuantest.Options{Chunks: 3, Fault: tc.fault, FaultAfter: tc.events, StreamErrorCode: tc.code})
		ev, err := New().Stream(context.Background(), ch, chatReq(true))
		if err != nil {
			t.Fatal(err)
		}
		_, _, n, err := drain(ev)
		if e := asError(t, err); e.Status != tc.status || e.Code != tc.errCode || n != tc.events {
			t.Errorf("fault %d/%d: %d events then %+v", tc.fault, tc.code, n, e)
		}
	}
}

func TestStreamStallTimesOut(t *testing.T) {
	_, ch := signedMock(t, hunyuantest.Options{Fault: hunyuantest.Stall, FaultAfter: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	ev, err := New().Stream(ctx, ch, chatReq(true))
	if err != nil {
		t.Fatal(err)
	}
	_, _, n, err := drain(ev)
	if e := asError(t, err); e.Status != 504 || n != 1 {
		t.Errorf("%d events then %+v", n, e)
	}
}

func TestBadRequestNeverReachesUpstream(t *testing.T) {
	srv, ch := signedMock(t, hunyuantest.Options{})
	req := &adaptor.Request{Model: "m", Body: []byte(`{"model":"m","messages":[{"role":"assistant","content":"hi"}]}`)}
	_, err := New().Complete(context.Background(), ch, req)
	if e := asError(t, err); e.Status != 400 || e.Param != "messages[0].role" {
		t.Errorf("%+v", e)
	}
	if len(srv.Requests()) != 0 {
		t.Error("a rejected request was sent")
	}
}

func TestMissingCredentialsAtRequestTime(t *testing.T) {
	ch := &adaptor.Channel{Name: "hy", BaseURL: "http://127.0.0.1:1"}
	_, err := New().Complete(context.Background(), ch, chatReq(false))
	if e := asError(t, err); e.Status != 500 || e.Code != "bad_channel" {
		t.Errorf("%+v", e)
	}
}

// Every translated golden body is a request the mock (which applies Hunyuan's documented rules
// independently) accepts.
func TestGoldenBodiesAcceptedByMock(t *testing.T) {
	srv := hunyuantest.NewServer(hunyuantest.Options{})
	defer srv.Close()
	files, _ := filepath.Glob("testdata/request/*.golden")
	for _, f := range files {
		body, _ := os.ReadFile(f)
		if strings.HasPrefix(string(body), "error ") {
			continue
		}
		hreq, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader(string(body)))
		hreq.Header.Set("Content-Type", "application/json")
		hreq.Header.Set("X-TC-Action", "ChatCompletions")
		hreq.Header.Set("X-TC-Version", "2023-09-01")
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if e := gjson.GetBytes(out, "Response.Error"); e.Exists() {
			t.Errorf("%s rejected: %s", filepath.Base(f), e.Raw)
		}
	}
}
