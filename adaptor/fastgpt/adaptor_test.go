package fastgpt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/fastgpt/fastgpttest"
)

const clientBody = `{"model":"support-bot","messages":[{"role":"user","content":"What is the refund window?"}]}`

func pinned() *Adaptor {
	a := New()
	a.now = func() time.Time { return time.Unix(1731000000, 0) }
	a.newID = func() string { return "chatcmpl-test" }
	return a
}

func channel(srv *fastgpttest.Server) *adaptor.Channel {
	return &adaptor.Channel{Name: "fg", Kind: "fastgpt", BaseURL: srv.URL, Keys: []string{"fastgpt-chan"}, HTTP: srv.Client()}
}

func request(detail, stream bool) *adaptor.Request {
	return &adaptor.Request{Body: []byte(clientBody), Model: "support-bot", UpstreamModel: "support-bot", Stream: stream,
		ChatID: "conv-7", ResponseChatItemID: "item-1", Variables: []byte(`{"customer_tier":"gold"}`), Detail: detail}
}

func TestCompletePlain(t *testing.T) {
	srv := fastgpttest.NewServer(fastgpttest.Options{Key: "fastgpt-chan"})
	defer srv.Close()
	req := request(false, false)
	c, err := pinned().Complete(context.Background(), channel(srv), req)
	if err != nil {
		t.Fatal(err)
	}
	// FastGPT's 1/1/1 placeholder is ignored: without detail data usage is estimated locally.
	u := adaptor.EstimateUsage(req.Body, fastgpttest.DefaultAnswer)
	if c.Usage != u || !c.Usage.Estimated || c.Usage.PromptTokens <= 1 {
		t.Fatalf("usage %+v, want estimate %+v", c.Usage, u)
	}
	want := `{"id":"chatcmpl-test","object":"chat.completion","created":1731000000,"model":"support-bot","choices":[{"index":0,"message":{"role":"assistant","content":"Refunds are accepted within 30 days.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":` +
		fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`, u.PromptTokens, u.CompletionTokens, u.TotalTokens)
	if string(c.Body) != want {
		t.Errorf("body\n got %s\nwant %s", c.Body, want)
	}
	if c.Extra != nil {
		t.Errorf("extra %v, want none without detail", c.Extra)
	}
	r := srv.LastRequest()
	if r.Path != "/api/v1/chat/completions" || r.Authorization != "Bearer fastgpt-chan" {
		t.Errorf("request %s with %q", r.Path, r.Authorization)
	}
	wantBody := `{"model":"support-bot","messages":[{"role":"user","content":"What is the refund window?"}],"stream":false,"detail":false,"chatId":"conv-7","responseChatItemId":"item-1","variables":{"customer_tier":"gold"}}`
	if string(r.Body) != wantBody {
		t.Errorf("sent\n %s\nwant %s", r.Body, wantBody)
	}
}

func TestCompleteDetail(t *testing.T) {
	srv := fastgpttest.NewServer(fastgpttest.Options{})
	defer srv.Close()
	req := request(true, false)
	req.APIKey = "fastgpt-workflow" // a per-workflow key wins over the channel's
	c, err := pinned().Complete(context.Background(), channel(srv), req)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"chatcmpl-test","object":"chat.completion","created":1731000000,"model":"support-bot","choices":[{"index":0,"message":{"role":"assistant","content":"Refunds are accepted within 30 days.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":41,"completion_tokens":16,"total_tokens":57}}`
	if string(c.Body) != want {
		t.Errorf("body\n got %s\nwant %s", c.Body, want)
	}
	if c.Usage != (adaptor.Usage{PromptTokens: 41, CompletionTokens: 16, TotalTokens: 57}) {
		t.Errorf("usage %+v", c.Usage)
	}
	wantData := `[{"id":"respA","moduleName":"Workflow start","moduleType":"workflowStart","nodeId":"workflowStartNodeId","runningTime":0},{"id":"respB","inputTokens":41,"model":"gpt-4o-mini","moduleName":"AI chat","moduleType":"chatNode","nodeId":"aiChatNode01","outputTokens":16,"runningTime":1.2,"tokens":57,"totalPoints":0.01}]`
	if got := string(c.Extra[ExtraResponseData]); got != wantData {
		t.Errorf("responseData\n got %s\nwant %s", got, wantData)
	}
	if got := string(c.Extra[ExtraNewVariables]); got != `{"customer_tier":"gold"}` {
		t.Errorf("newVariables %s", got)
	}
	if len(c.Extra) != 2 {
		t.Errorf("extra keys %d, want 2", len(c.Extra))
	}
	if r := srv.LastRequest(); r.Authorization != "Bearer fastgpt-workflow" || !gjson.GetBytes(r.Body, "detail").Bool() {
		t.Errorf("sent %q %s", r.Authorization, r.Body)
	}
}

func TestCompleteDetailArrayContent(t *testing.T) {
	// Several assistant outputs make the content an array: text joins, reasoning moves to
	// reasoning_content, the interactive item goes to Extra.
	inter := `{"type":"userSelect","params":{"description":"Refund now?","userSelectOptions":[{"key":"option1","value":"Confirm"}]}}`
	srv := fastgpttest.NewServer(fastgpttest.Options{Answer: "Sure.", Reasoning: "Policy is 30 days.", Interactive: json.RawMessage(inter),
		Nodes: []fastgpttest.Node{{NodeID: "n", Type: "chatNode", Tokens: 9}}})
	defer srv.Close()
	c, err := pinned().Complete(context.Background(), channel(srv), request(true, false))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"chatcmpl-test","object":"chat.completion","created":1731000000,"model":"support-bot","choices":[{"index":0,"message":{"role":"assistant","content":"Sure.","reasoning_content":"Policy is 30 days.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":0,"total_tokens":9}}`
	if string(c.Body) != want {
		t.Errorf("body\n got %s\nwant %s", c.Body, want)
	}
	if got := string(c.Extra[ExtraInteractive]); got != inter {
		t.Errorf("interactive %s", got)
	}
}

func TestCompletionBodies(t *testing.T) {
	// Bodies a deployment may send that the mock does not: node failure with no answer, older
	// text-item arrays, the generic envelope from a wrong route, junk.
	cases := []struct{ name, body, want string }{
		{"node error and no answer", `{"error":{"message":"AI model 'x' not found"},"id":"","model":"","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":1},"choices":[{"message":{"role":"assistant","content":""},"finish_reason":"stop","index":0}]}`,
			"error 502 workflow_error upstream: AI model 'x' not found"},
		{"node error as string", `{"error":"boom","choices":[{"message":{"role":"assistant","content":""},"finish_reason":"stop","index":0}]}`,
			"error 502 workflow_error upstream: boom"},
		{"node error but an answer", `{"error":{"message":"search failed"},"choices":[{"message":{"role":"assistant","content":"Fallback reply"},"finish_reason":"stop","index":0}]}`,
			`content "Fallback reply"`},
		{"text items", `{"choices":[{"message":{"role":"assistant","content":[{"type":"text","text":{"content":"a"}},{"type":"tool","tools":[]},{"type":"text","text":{"content":"b"}}]},"finish_reason":"stop","index":0}]}`,
			`content "a\nb"`},
		{"null content (plugin)", `{"choices":[{"message":{"role":"assistant","content":null},"finish_reason":"stop","index":0}],"responseData":[{"pluginOutput":{"x":1}}]}`,
			`content ""`},
		{"legacy 200 error object", `{"code":514,"statusText":"unAuthApiKey","message":"Api Key 不合法","data":null}`,
			"error 401 unAuthApiKey upstream: Api Key 不合法"},
		{"envelope", `{"code":200,"statusText":"","message":"","data":{}}`,
			"error 502 bad_response upstream: FastGPT answered without a chat completion"},
		{"not JSON", `<html>`, "error 502 bad_response upstream: answer is not JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			comp, err := pinned().completion(request(false, false), []byte(c.body))
			var got string
			var ae *adaptor.Error
			switch {
			case errors.As(err, &ae):
				got = fmt.Sprintf("error %d %s %s", ae.Status, ae.Code, ae.Message)
			case err != nil:
				got = err.Error()
			default:
				got = fmt.Sprintf("content %q", gjson.GetBytes(comp.Body, "choices.0.message.content").Str)
			}
			if got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestStreamThroughServer(t *testing.T) {
	srv := fastgpttest.NewServer(fastgpttest.Options{Pieces: []string{"Refunds ", "are accepted ", "within 30 天。"},
		UpdateVariables: json.RawMessage(`{"customer_tier":"gold","asked":true}`), WriteSize: 7})
	defer srv.Close()

	ev, err := pinned().Stream(context.Background(), channel(srv), request(true, true))
	if err != nil {
		t.Fatal(err)
	}
	got := transcript(ev)
	ev.Close()
	chunk := func(s string) string {
		return `chunk [{"delta":{"content":` + s + `,"role":"assistant"},"finish_reason":null,"index":0}]` + "\n"
	}
	want := `event flowNodeStatus {"name":"AI chat","status":"running"}` + "\n" +
		chunk(`"Refunds "`) + chunk(`"are accepted "`) + chunk(`"within 30 天。"`) +
		`event updateVariables {"customer_tier":"gold","asked":true}` + "\n" +
		`chunk [{"delta":{"content":null,"role":"assistant"},"finish_reason":"stop","index":0}]` + "\n" +
		`event flowResponses [{"id":"respA","moduleName":"Workflow start","moduleType":"workflowStart","nodeId":"workflowStartNodeId","runningTime":0},{"id":"respB","inputTokens":41,"model":"gpt-4o-mini","moduleName":"AI chat","moduleType":"chatNode","nodeId":"aiChatNode01","outputTokens":16,"runningTime":1.2,"tokens":57,"totalPoints":0.01}] usage=41/16/57` + "\n" +
		"EOF\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if r := srv.LastRequest(); !gjson.GetBytes(r.Body, "stream").Bool() || r.Header.Get("Accept") != "text/event-stream" {
		t.Errorf("sent %s", r.Body)
	}
}

func TestStreamCollect(t *testing.T) {
	// What the core does for a non-stream client on a stream: the shared accumulator gets the text,
	// the node usage (not an estimate) and the detail events.
	srv := fastgpttest.NewServer(fastgpttest.Options{Answer: "Within 30 days.", Interactive: json.RawMessage(`{"type":"userInput","params":{"inputForm":[]}}`)})
	defer srv.Close()
	req := request(true, true)
	ev, err := pinned().Stream(context.Background(), channel(srv), req)
	if err != nil {
		t.Fatal(err)
	}
	c, err := adaptor.Collect(ev, req, "chatcmpl-test", 1731000000)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"chatcmpl-test","object":"chat.completion","created":1731000000,"model":"support-bot","choices":[{"index":0,"message":{"role":"assistant","content":"Within 30 days.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":41,"completion_tokens":16,"total_tokens":57}}`
	if string(c.Body) != want {
		t.Errorf("body\n got %s\nwant %s", c.Body, want)
	}
	if string(c.Extra[EventInteractive]) != `{"interactive":{"type":"userInput","params":{"inputForm":[]}}}` || c.Extra[EventFlowResponses] == nil {
		t.Errorf("extra %q", c.Extra)
	}
}

func TestStreamPlainThroughServer(t *testing.T) {
	srv := fastgpttest.NewServer(fastgpttest.Options{Answer: "Hi there", LegacyFinalDelta: true})
	defer srv.Close()
	ev, err := pinned().Stream(context.Background(), channel(srv), request(false, true))
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	want := `chunk [{"delta":{"content":"Hi","role":"assistant"},"finish_reason":null,"index":0}]
chunk [{"delta":{"content":" there","role":"assistant"},"finish_reason":null,"index":0}]
chunk [{"delta":{},"finish_reason":"stop","index":0}]
EOF
`
	if got := transcript(ev); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestStreamErrorsThroughServer(t *testing.T) {
	cases := []struct {
		name string
		opts fastgpttest.Options
		req  func(*adaptor.Request)
		// open is the error from Stream; events the transcript when Stream succeeded.
		open, events string
	}{
		{name: "bad key as the first SSE frame (HTTP 200, no content type)", opts: fastgpttest.Options{Key: "other"},
			open: "401 authentication_error unAuthApiKey upstream: Api Key 不合法"},
		{name: "empty messages", req: func(r *adaptor.Request) { r.Body = []byte(`{"messages":[]}`) },
			open: "400 invalid_request_error invalid_messages upstream: messages is empty"},
		{name: "messages not an array", req: func(r *adaptor.Request) { r.Body = []byte(`{"messages":"hi"}`) },
			open: "400 invalid_request_error invalid_messages upstream: messages is not array"},
		{name: "balance exhausted", opts: fastgpttest.Options{Fail: fastgpttest.FixedError(510)},
			open: "429 rate_limit_error insufficientQuota upstream: 账号余额不足"},
		{name: "key limit", opts: fastgpttest.Options{Fail: fastgpttest.FixedError(506002)},
			open: "429 rate_limit_error openapiExceedLimit upstream: common:code_error.openapi_error.exceed_limit"},
		{name: "app gone", opts: fastgpttest.Options{Fail: fastgpttest.MessageError("app is empty")},
			open: "404 not_found_error app_not_found upstream: app is empty"},
		{name: "account key", opts: fastgpttest.Options{Fail: fastgpttest.MessageError("Key is error. You need to use the app key rather than the account key.")},
			open: "401 authentication_error invalid_api_key upstream: Key is error. You need to use the app key rather than the account key."},
		{name: "old release: HTTP 200 JSON error to a stream request", opts: fastgpttest.Options{Fail: &fastgpttest.Failure{HTTPStatus: 200, Code: 403, StatusText: "unAuthorization", Message: "凭证错误"}},
			open: "401 authentication_error unAuthorization upstream: 凭证错误"},
		{name: "gateway 502 with HTML", opts: fastgpttest.Options{Fail: &fastgpttest.Failure{HTTPStatus: 502, Body: "<html>bad gateway</html>"}},
			open: "502 server_error  upstream: FastGPT answered HTTP 502"},
		{name: "gateway 429 text", opts: fastgpttest.Options{Fail: &fastgpttest.Failure{HTTPStatus: 429, Body: "Too Many Requests"}},
			open: "429 rate_limit_error  upstream: Too Many Requests"},
		{name: "current release HTTP 500 JSON for a free-text failure", opts: fastgpttest.Options{Fail: &fastgpttest.Failure{HTTPStatus: 500, Code: 500, StatusText: "error", Message: "您的工作流版本过低，请重新发布一次"}},
			open: "502 server_error  upstream: 您的工作流版本过低，请重新发布一次"},
		{name: "error after two pieces", opts: fastgpttest.Options{Pieces: []string{"a", "b", "c"}, Fail: &fastgpttest.Failure{AfterPieces: 2, Message: "LLM request failed"}},
			req: func(r *adaptor.Request) { r.Detail = false },
			events: `chunk [{"delta":{"content":"a","role":"assistant"},"finish_reason":null,"index":0}]
chunk [{"delta":{"content":"b","role":"assistant"},"finish_reason":null,"index":0}]
error 502 server_error : upstream: LLM request failed
`},
		{name: "stream cut before [DONE]", opts: fastgpttest.Options{Pieces: []string{"a"}, NoDone: true},
			req: func(r *adaptor.Request) { r.Detail = false },
			events: `chunk [{"delta":{"content":"a","role":"assistant"},"finish_reason":null,"index":0}]
error 502 upstream_error upstream_stream_broken: upstream stream ended early: no [DONE]
`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := fastgpttest.NewServer(c.opts)
			defer srv.Close()
			req := request(true, true)
			if c.req != nil {
				c.req(req)
			}
			ev, err := pinned().Stream(context.Background(), channel(srv), req)
			if c.open != "" {
				var ae *adaptor.Error
				if !errors.As(err, &ae) {
					t.Fatalf("Stream: %v, want an *adaptor.Error", err)
				}
				if got := fmt.Sprintf("%d %s %s %s", ae.Status, ae.Type, ae.Code, ae.Message); got != c.open {
					t.Errorf("got  %s\nwant %s", got, c.open)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()
			if got := transcript(ev); got != c.events {
				t.Errorf("got:\n%s\nwant:\n%s", got, c.events)
			}
		})
	}
}

func TestCompleteErrorsThroughServer(t *testing.T) {
	cases := []struct {
		name string
		opts fastgpttest.Options
		base string
		want string
	}{
		{"bad key: HTTP 500 with the fixed object", fastgpttest.Options{Key: "other"}, "",
			"401 authentication_error unAuthApiKey upstream: Api Key 不合法"},
		{"model permission", fastgpttest.Options{Fail: fastgpttest.FixedError(511)}, "",
			"403 permission_error unAuthModel upstream: 无权使用该模型"},
		{"key does not exist", fastgpttest.Options{Fail: fastgpttest.FixedError(506000)}, "",
			"401 authentication_error openapiUnExist upstream: common:code_error.openapi_error.api_key_not_exist"},
		{"legacy HTTP 200 error", fastgpttest.Options{Fail: &fastgpttest.Failure{HTTPStatus: 200, Code: 500, StatusText: "error", Message: "User question is empty"}}, "",
			"400 invalid_request_error invalid_messages upstream: User question is empty"},
		{"wrong path: the 404 page", fastgpttest.Options{}, "/nope",
			"404 not_found_error  upstream: FastGPT answered HTTP 404"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := fastgpttest.NewServer(c.opts)
			defer srv.Close()
			ch := channel(srv)
			ch.BaseURL += c.base
			_, err := pinned().Complete(context.Background(), ch, request(false, false))
			var ae *adaptor.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Complete: %v, want an *adaptor.Error", err)
			}
			if got := fmt.Sprintf("%d %s %s %s", ae.Status, ae.Type, ae.Code, ae.Message); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestMapError(t *testing.T) {
	cases := []struct {
		http       int
		code       int64
		statusText string
		msg        string
		want       string
	}{
		{500, 403, "unAuthorization", "凭证错误", "401 unAuthorization false"},
		{200, 514, "", "Api Key 不合法", "401 unAuthApiKey false"},
		{500, 506001, "openapiUnAuth", "x", "401 openapiUnAuth false"},
		{500, 510, "insufficientQuota", "x", "429 insufficientQuota true"},
		{500, 513, "unAuthFile", "x", "403 unAuthFile false"},
		{500, 500, "error", "messages is empty", "400 invalid_messages false"},
		{200, 0, "", "app is empty", "404 app_not_found false"},
		{401, 0, "", "unauthorized", "401  false"},
		{500, 429, "error", "too many", "429  true"},
		{500, 500, "error", "random failure", "502  true"},
		{200, 0, "", "", "502 bad_response true"},
		{503, 0, "", "", "503  true"},
	}
	for _, c := range cases {
		e := MapError(c.http, c.code, c.statusText, c.msg)
		if got := fmt.Sprintf("%d %s %v", e.Status, e.Code, e.Retryable); got != c.want {
			t.Errorf("MapError(%d, %d, %q, %q) = %s, want %s", c.http, c.code, c.statusText, c.msg, got, c.want)
		}
		if e.Type != adaptor.TypeForStatus(e.Status) || !strings.HasPrefix(e.Message, "upstream: ") {
			t.Errorf("MapError(%d, %d, %q, %q): type %s message %q", c.http, c.code, c.statusText, c.msg, e.Type, e.Message)
		}
	}
}

func TestStreamCancel(t *testing.T) {
	// A slow upstream: cancelling the client's context ends Next with 499 and the mock sees the
	// request go away.
	srv := fastgpttest.NewServer(fastgpttest.Options{Pieces: []string{"a", "b", "c", "d"}, Delay: 200 * time.Millisecond})
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req := request(false, true)
	ev, err := pinned().Stream(ctx, channel(srv), req)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	if e, err := ev.Next(); err != nil || !strings.Contains(string(e.Choices), `"a"`) {
		t.Fatalf("first chunk %v %v", e, err)
	}
	cancel()
	_, err = ev.Next()
	var ae *adaptor.Error
	if !errors.As(err, &ae) || ae.Status != 499 {
		t.Fatalf("after cancel: %v, want 499", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !srv.LastRequest().Canceled {
		if time.Now().After(deadline) {
			t.Fatal("the mock did not see the request cancelled")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStreamChannelTimeout(t *testing.T) {
	srv := fastgpttest.NewServer(fastgpttest.Options{Pieces: []string{"a", "b"}, Delay: time.Second})
	defer srv.Close()
	ch := channel(srv)
	ch.Timeout = 150 * time.Millisecond
	ev, err := pinned().Stream(context.Background(), ch, request(false, true))
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	ev.Next()
	_, err = ev.Next()
	var ae *adaptor.Error
	if !errors.As(err, &ae) || ae.Status != 504 {
		t.Fatalf("got %v, want 504", err)
	}
}

var _ io.Closer = (*Events)(nil)
