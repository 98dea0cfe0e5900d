package relay_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"relay/adaptor"
	"relay/adaptor/demo"
	openaiadaptor "relay/adaptor/openai"
	"relay/relay"
	"relay/relay/relaytest"
	"relay/store"
)

// testKinds are the adaptors the relay tests use (the others have their own end-to-end tests).
func testKinds() map[string]adaptor.Adaptor {
	return map[string]adaptor.Adaptor{"demo": demo.New(), "openai": openaiadaptor.New()}
}

// testRelay is a relay serving on a loopback port with a fresh SQLite store and one key.
type testRelay struct{ *relaytest.Relay }

func demoChannel() relay.ChannelConfig {
	return relay.ChannelConfig{Name: "demo", Kind: "demo", Enabled: "true", Models: []string{"demo"}}
}

func openaiChannel(name, baseURL string, models ...string) relay.ChannelConfig {
	return relay.ChannelConfig{Name: name, Kind: "openai", Enabled: "true", BaseURL: baseURL, Keys: []string{"sk-upstream-secret-" + name}, Models: models}
}

// newTestRelay starts a relay with the given channels; mutate may adjust the config first.
func newTestRelay(t *testing.T, mutate func(*relay.Config), channels ...relay.ChannelConfig) *testRelay {
	return &testRelay{relaytest.Start(t, testKinds(), mutate, channels...)}
}

func (tr *testRelay) newKey(name string, models []string) string { return tr.NewKey(name, models) }
func (tr *testRelay) logs() []store.LogRow                       { return tr.Logs() }
func (tr *testRelay) post(key, body string) *http.Response       { return tr.Post(key, body) }

func (tr *testRelay) sdk(opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{option.WithBaseURL(tr.URL), option.WithAPIKey(tr.Key), option.WithMaxRetries(0)}, opts...)...)
}

func sseFrames(t *testing.T, r io.Reader) []string { return relaytest.SSEFrames(t, r) }

// errorBody decodes an OpenAI error body and checks its shape (all four keys present).
func errorBody(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Error == nil {
		t.Fatalf("not an OpenAI error body: %s", b)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := v.Error[k]; !ok {
			t.Fatalf("error body lacks %q: %s", k, b)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type %q", ct)
	}
	return v.Error
}
