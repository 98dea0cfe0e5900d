package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"relay/adaptor/openai/openaitest"
	"relay/relay"
)

// The pump flushes when it is about to wait for the upstream, not after every chunk (pump_test.go counts
// the flushes). What must hold end to end: a chunk is never held back while the relay waits. The
// upstream here sends its second burst only once the client has seen the first chunk, so a relay that
// held it would stall until the upstream gives up.
func TestStreamFlushesBeforeWaiting(t *testing.T) {
	seen := make(chan struct{})
	chunk := func(i int, fin string) string {
		f := "null"
		if fin != "" {
			f = `"` + fin + `"`
		}
		return fmt.Sprintf(`data: {"id":"chatcmpl-w","object":"chat.completion.chunk","created":1731000000,"model":"m1","choices":[{"index":0,"delta":{"content":"c%d "},"finish_reason":%s}]}`+"\n\n", i, f)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		io.WriteString(w, chunk(0, ""))
		rc.Flush()
		select {
		case <-seen:
		case <-time.After(5 * time.Second):
			return // the relay held the first chunk: the client never saw it
		case <-r.Context().Done():
			return
		}
		var burst strings.Builder
		for i := 1; i <= 20; i++ {
			fin := ""
			if i == 20 {
				fin = "stop"
			}
			burst.WriteString(chunk(i, fin))
		}
		burst.WriteString("data: [DONE]\n\n")
		io.WriteString(w, burst.String())
		rc.Flush()
	}))
	defer up.Close()
	tr := newTestRelay(t, nil, openaiChannel("up", up.URL+"/v1", "m1"))
	start := time.Now()
	resp := tr.post(tr.Key, `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	for { // the role chunk, then c0
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("before c0: %v", err)
		}
		if strings.Contains(line, `"c0 "`) {
			break
		}
	}
	close(seen)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 4*time.Second {
		t.Fatalf("the first chunk reached the client only after the upstream gave up waiting for it")
	}
	for i := 1; i <= 20; i++ {
		if !strings.Contains(string(rest), fmt.Sprintf(`"c%d "`, i)) {
			t.Fatalf("chunk %d missing: %s", i, rest)
		}
	}
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("no [DONE] at the end: %q", rest[max(0, len(rest)-100):])
	}
}

// While the upstream is silent the stream gets SSE comments every server.stream_keepalive, which the
// OpenAI SDK skips: the answer it accumulates is unchanged.
func TestStreamKeepAliveComments(t *testing.T) {
	up := openaitest.New(openaitest.Options{Answer: "slow thinking answer", Chunks: 3, ChunkDelay: 350 * time.Millisecond})
	defer up.Close()
	tr := newTestRelay(t, func(c *relay.Config) { c.Server.StreamKeepAlive = 100 * time.Millisecond }, openaiChannel("up", up.BaseURL(), "m1"))
	resp := tr.post(tr.Key, `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(body), ": keep-alive\n\n"); n < 4 {
		t.Fatalf("%d keep-alive comments over two 350ms silences at 100ms: %s", n, body)
	}
	if !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
		t.Fatalf("stream end: %s", body)
	}
	client := tr.sdk()
	stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "m1", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil || acc.Choices[0].Message.Content != "slow thinking answer" {
		t.Fatalf("SDK through keep-alives: %v %q", err, acc.Choices[0].Message.Content)
	}
}
