package relay_test

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
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
func BenchmarkLoopbackStream21(b *testing.B) { loopback(b, streamBody, 1) }

// BenchmarkLoopbackNonStream is the same for a non-stream request.
func BenchmarkLoopbackNonStream(b *testing.B) { loopback(b, nonStreamBody, 1) }

// The C32 variants keep 32 requests in flight, as relaybench's concurrency-32 cells do.
func BenchmarkLoopbackStream21C32(b *testing.B)  { loopback(b, streamBody, 32) }
func BenchmarkLoopbackNonStreamC32(b *testing.B) { loopback(b, nonStreamBody, 32) }

const (
	streamBody    = `{"model":"bench","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"What animal is on this sign?"}]}`
	nonStreamBody = `{"model":"bench","messages":[{"role":"user","content":"What animal is on this sign?"}]}`
)

func loopback(b *testing.B, body string, conc int) {
	mock := openaitest.New(openaitest.Options{Answer: strings.Repeat("word ", 200), Chunks: 21})
	defer mock.Close()
	tr := relaytest.Start(b, testKinds(), func(c *relay.Config) { c.Auth.KeyCacheTTL = time.Minute }, openaiChannel("mock", mock.BaseURL(), "bench"))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	one := func() error {
		req, _ := http.NewRequest(http.MethodPost, tr.URL+"/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tr.Key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n < 1000 {
			return fmt.Errorf("status %d, %d bytes", resp.StatusCode, n)
		}
		return nil
	}
	b.ReportAllocs()
	b.ResetTimer()
	if conc == 1 {
		for i := 0; i < b.N; i++ {
			if err := one(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism((conc + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := one(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
