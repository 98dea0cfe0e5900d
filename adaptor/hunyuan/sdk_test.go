package hunyuan

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"

	"relay/adaptor"
)

type captured struct {
	header http.Header
	host   string
	body   []byte
}

// captureServer records one request and answers a minimal successful completion.
func captureServer(t *testing.T) (*httptest.Server, func() captured) {
	var mu sync.Mutex
	var got captured
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = captured{header: r.Header.Clone(), host: r.Host, body: b}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"Response":{"RequestId":"r1","Id":"r1","Created":1700000001,"Choices":[{"Index":0,"Message":{"Role":"assistant","Content":"Hi"},"FinishReason":"stop"}],"Usage":{"PromptTokens":1,"CompletionTokens":1,"TotalTokens":2}}}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func() captured { mu.Lock(); defer mu.Unlock(); return got }
}

// What Tencent's own Go SDK sends must be what the relay's signer computes for the same inputs.
func TestSignerMatchesOfficialSDK(t *testing.T) {
	const id, key = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
	srv, get := captureServer(t)
	prof := profile.NewClientProfile()
	prof.HttpProfile.Endpoint = strings.TrimPrefix(srv.URL, "http://")
	prof.HttpProfile.Scheme = "http"
	client := common.NewCommonClient(common.NewCredential(id, key), "ap-guangzhou", prof)

	for _, body := range []string{
		`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"Hello"}],"Stream":false}`,
		`{"Model":"hunyuan-pro","Messages":[{"Role":"system","Content":"简短回答"},{"Role":"user","Content":"1 < 2 & \"ok\"?"}],"Temperature":0.5,"Stop":["\n"]}`,
	} {
		req := tchttp.NewCommonRequest("hunyuan", "2023-09-01", "ChatCompletions")
		if err := req.SetActionParameters(body); err != nil {
			t.Fatal(err)
		}
		req.SetHeader(map[string]string{"X-TC-Timestamp": "1700000000"}) // pins the signing time
		if err := client.Send(req, tchttp.NewCommonResponse()); err != nil {
			t.Fatalf("sdk send: %v", err)
		}
		got := get()
		if ts := got.header.Get("X-TC-Timestamp"); ts != "1700000000" {
			t.Fatalf("timestamp not pinned: %q", ts)
		}
		want := got.header.Get("Authorization")
		mine := Authorization(SignInput{
			SecretID: id, SecretKey: key, Service: "hunyuan", Host: got.host,
			ContentType: got.header.Get("Content-Type"), Timestamp: 1700000000, Payload: got.body,
		})
		if mine != want {
			t.Errorf("body %s\nsdk   %s\nrelay %s", got.body, want, mine)
		}
		if ct := got.header.Get("Content-Type"); ct != contentType {
			t.Errorf("sdk Content-Type %q, relay sends %q", ct, contentType)
		}
	}
}

// The relay's request for the simplest chat is byte for byte the wire reference's §3 example
// (vector C): same body, same headers, same Authorization.
func TestRequestMatchesVectorC(t *testing.T) {
	var got *http.Request
	var body []byte
	ch := &adaptor.Channel{Name: "hy", Credentials: map[string]string{
		CredSecretID: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", CredSecretKey: "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"},
		HTTP: &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			got = r
			body, _ = io.ReadAll(r.Body)
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(strings.NewReader(`{"Response":{"Id":"x","Created":1,"Choices":[{"Message":{"Content":"Hi"},"FinishReason":"stop"}],"Usage":{"PromptTokens":1,"CompletionTokens":1,"TotalTokens":2}}}`))}, nil
		})}}
	a := &Adaptor{now: func() time.Time { return time.Unix(1700000000, 0) }}
	req := &adaptor.Request{Body: []byte(`{"model":"hunyuan-lite","messages":[{"role":"user","content":"Hello"}]}`),
		Model: "hunyuan-lite", UpstreamModel: "hunyuan-lite"}
	if _, err := a.Complete(context.Background(), ch, req); err != nil {
		t.Fatal(err)
	}
	if got.URL.String() != DefaultBaseURL || got.Method != "POST" {
		t.Errorf("sent %s %s", got.Method, got.URL)
	}
	if want := `{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"Hello"}],"Stream":false}`; string(body) != want {
		t.Errorf("body\n got %s\nwant %s", body, want)
	}
	want := map[string]string{
		"Content-Type":   "application/json",
		"X-Tc-Action":    "ChatCompletions",
		"X-Tc-Version":   "2023-09-01",
		"X-Tc-Timestamp": "1700000000",
		"Authorization":  "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2023-11-14/hunyuan/tc3_request, SignedHeaders=content-type;host, Signature=aa2e28bc8b722a7a51cd5e842cdbca62e8c398689d5230167e46104b332e5a35",
	}
	for k, v := range want {
		if g := got.Header.Values(k); len(g) != 1 || g[0] != v {
			t.Errorf("%s: got %q want %q", k, g, v)
		}
	}
	if len(got.Header) != len(want) {
		t.Errorf("unexpected headers: %v", got.Header)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
