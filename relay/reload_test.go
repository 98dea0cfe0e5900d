package relay_test

import (
	"io"
	"strings"
	"testing"

	"relay/adaptor/openai/openaitest"
	"relay/relay"
)

// A reload swaps channels and models while a stream started on the old config finishes on it.
func TestReloadSwapsChannelsKeepsInFlight(t *testing.T) {
	slow := demoChannel()
	slow.Credentials = map[string]string{"chunk_delay": "40ms"}
	tr := newTestRelay(t, nil, slow)
	resp := tr.post(tr.Key, `{"model":"demo","stream":true,"messages":[{"role":"user","content":"one two three four five six"}]}`)
	buf := make([]byte, 8)
	if _, err := io.ReadAtLeast(resp.Body, buf, 1); err != nil {
		t.Fatal(err)
	}

	up := openaitest.New(openaitest.Options{Answer: "from the new channel"})
	defer up.Close()
	cfg, err := relay.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Channels = []relay.ChannelConfig{openaiChannel("fresh", up.BaseURL(), "m2")}
	chans, err := cfg.BuildChannels(testKinds())
	if err != nil {
		t.Fatal(err)
	}
	tr.Server.Reload(cfg, chans)

	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("in-flight stream did not finish on the old config: %v %q", err, rest)
	}
	r := tr.post(tr.Key, `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`)
	r.Body.Close()
	if r.StatusCode != 404 {
		t.Fatalf("removed model answered %d", r.StatusCode)
	}
	r = tr.post(tr.Key, `{"model":"m2","messages":[{"role":"user","content":"hi"}]}`)
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(b), "from the new channel") {
		t.Fatalf("new model: %d %s", r.StatusCode, b)
	}
}
