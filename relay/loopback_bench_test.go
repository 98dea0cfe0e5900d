package relay_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"relay/adaptor/openai/openaitest"
	"relay/relay"
	"relay/relay/relaytest"
)

// BenchmarkLoopbackStream21 is one 21-chunk stream end to end over loopback TCP: client → relay (real
// listener, SQLite log) → OpenAI mock. The CPU it reports includes the mock's and the client's; its
// use is the profile (-cpuprofile), which shows where the relay's share goes next to net/http's.
func BenchmarkLoopbackStream21(b *testing.B) {
	loopback(b, `{"model":"bench","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"What animal is on this sign?"}]}`)
}

// BenchmarkLoopbackNonStream is the same for a non-stream request.
func BenchmarkLoopbackNonStream(b *testing.B) {
	loopback(b, `{"model":"bench","messages":[{"role":"user","content":"What animal is on this sign?"}]}`)
}

func loopback(b *testing.B, body string) {
	mock := openaitest.New(openaitest.Options{Answer: strings.Repeat("word ", 200), Chunks: 21})
	defer mock.Close()
	tr := relaytest.Start(b, testKinds(), func(c *relay.Config) { c.Auth.KeyCacheTTL = time.Minute }, openaiChannel("mock", mock.BaseURL(), "bench"))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest(http.MethodPost, tr.URL+"/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tr.Key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n < 1000 {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
}
