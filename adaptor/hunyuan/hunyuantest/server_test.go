package hunyuantest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
)

const sdkID, sdkKey = "AKIDmockid", "mockkey"

func sdkClient(srv *Server, key string) *common.Client {
	prof := profile.NewClientProfile()
	prof.HttpProfile.Endpoint = strings.TrimPrefix(srv.URL, "http://")
	prof.HttpProfile.Scheme = "http"
	return common.NewCommonClient(common.NewCredential(sdkID, key), "ap-guangzhou", prof)
}

func sdkSend(c *common.Client, body string, ts string) (map[string]any, error) {
	req := tchttp.NewCommonRequest("hunyuan", "2023-09-01", "ChatCompletions")
	if err := req.SetActionParameters(body); err != nil {
		return nil, err
	}
	if ts != "" {
		req.SetHeader(map[string]string{"X-TC-Timestamp": ts})
	}
	resp := tchttp.NewCommonResponse()
	if err := c.Send(req, resp); err != nil {
		return nil, err
	}
	var out map[string]any
	err := json.Unmarshal(resp.GetBody(), &out)
	return out, err
}

func sdkCode(err error) string {
	var e *tcerr.TencentCloudSDKError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// The official SDK is the reference client: the mock's verifier must accept what it signs and reject
// a wrong key or a stale timestamp with Tencent's codes.
func TestSDKAgainstVerifyingMock(t *testing.T) {
	srv := NewServer(Options{VerifySignature: true, SecretID: sdkID, SecretKey: sdkKey, Answer: "Hi there"})
	defer srv.Close()
	body := `{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"Hello <&>"}]}`
	out, err := sdkSend(sdkClient(srv, sdkKey), body, "")
	if err != nil {
		t.Fatal(err)
	}
	choices := out["Response"].(map[string]any)["Choices"].([]any)
	if msg := choices[0].(map[string]any)["Message"].(map[string]any)["Content"]; msg != "Hi there" {
		t.Errorf("content %v", msg)
	}
	if _, err := sdkSend(sdkClient(srv, "bad"), body, ""); sdkCode(err) != "AuthFailure.SignatureFailure" {
		t.Errorf("wrong key: %v", err)
	}
	stale := time.Now().Add(-6 * time.Minute).Unix()
	if _, err := sdkSend(sdkClient(srv, sdkKey), body, strconv.FormatInt(stale, 10)); sdkCode(err) != "AuthFailure.SignatureExpire" {
		t.Errorf("stale: %v", err)
	}
}

func post(t *testing.T, srv *Server, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Action", "ChatCompletions")
	req.Header.Set("X-TC-Version", "2023-09-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The stream is exactly the documented framing: data-only frames, cumulative usage, no [DONE].
func TestStreamFrames(t *testing.T) {
	srv := NewServer(Options{Answer: "巴黎🙂", Chunks: 2, Now: func() time.Time { return time.Unix(1700000002, 0) }})
	defer srv.Close()
	resp, got := post(t, srv, `{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"Hi"}],"Stream":true}`)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("X-TC-RequestId") != "mock-request-1" {
		t.Errorf("headers %v", resp.Header)
	}
	frame := func(content, finish string, completion, total int) string {
		return `data: {"Choices":[{"Delta":{"Content":"` + content + `","Role":"assistant"},"FinishReason":"` + finish +
			`","Index":0}],"Created":1700000002,"Id":"mock-request-1","Note":"` + Note +
			`","Usage":{"PromptTokens":9,"CompletionTokens":` + strconv.Itoa(completion) + `,"TotalTokens":` + strconv.Itoa(total) + "}}\n\n"
	}
	want := frame("巴黎", "", 1, 10) + frame("🙂", "", 2, 11) + frame("", "stop", 2, 11)
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRequestRules(t *testing.T) {
	srv := NewServer(Options{Models: []string{"hunyuan-lite"}})
	defer srv.Close()
	for body, code := range map[string]string{
		`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"a"}]}`:                                                                       "",
		`{"Model":"hunyuan-x","Messages":[{"Role":"user","Content":"a"}]}`:                                                                          "InvalidParameterValue.Model",
		`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"a"}],"MaxTokens":5}`:                                                         "UnknownParameter",
		`{"Model":"hunyuan-lite","Messages":[{"role":"user","Content":"a"}]}`:                                                                       "UnknownParameter",
		`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"a"},{"Role":"assistant","Content":"b"}]}`:                                    "InvalidParameter",
		`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"a"},{"Role":"system","Content":"b"}]}`:                                       "InvalidParameter",
		`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":" "}]}`:                                                                       "InvalidParameter",
		`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"a"},{"Role":"user","Content":"b"}]}`:                                         "InvalidParameter",
		`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Contents":[{"Type":"image_url","ImageUrl":{"Url":"u"}}]}]}`:                            "InvalidParameter",
		`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"a"}],"Seed":0}`:                                                              "InvalidParameterValue",
		`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"a"}],"Tools":[{"Type":"function","Function":{"Name":"f","Parameters":{}}}]}`: "InvalidParameter",
	} {
		_, out := post(t, srv, body)
		var r struct {
			Response struct{ Error struct{ Code string } }
		}
		_ = json.Unmarshal([]byte(out), &r)
		if r.Response.Error.Code != code {
			t.Errorf("%s: got %q want %q (%s)", body, r.Response.Error.Code, code, out)
		}
	}
}

func TestErrorTimes(t *testing.T) {
	srv := NewServer(Options{ErrorCode: "LimitExceeded", ErrorTimes: 1, ErrorStatus: 429})
	defer srv.Close()
	body := `{"Model":"m","Messages":[{"Role":"user","Content":"a"}]}`
	resp, out := post(t, srv, body)
	if resp.StatusCode != 429 || !strings.Contains(out, `"Code":"LimitExceeded"`) || !strings.Contains(out, `"RequestId":"mock-request-1"`) {
		t.Errorf("first: %d %s", resp.StatusCode, out)
	}
	if resp, out = post(t, srv, body); resp.StatusCode != 200 || strings.Contains(out, "Error") {
		t.Errorf("second: %d %s", resp.StatusCode, out)
	}
	if n := len(srv.Requests()); n != 2 {
		t.Errorf("%d requests recorded", n)
	}
}

// Close must not hang on a stalled stream.
func TestCloseReleasesStall(t *testing.T) {
	srv := NewServer(Options{Fault: Stall})
	started := make(chan struct{})
	go func() {
		req, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader(`{"Model":"m","Messages":[{"Role":"user","Content":"a"}],"Stream":true}`))
		req.Header.Set("X-TC-Action", "ChatCompletions")
		req.Header.Set("X-TC-Version", "2023-09-01")
		resp, err := http.DefaultClient.Do(req)
		close(started)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-started
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close hangs on a stalled stream")
	}
}
