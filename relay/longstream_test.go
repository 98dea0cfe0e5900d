package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A long stream (100,000 chunks, 6 MB of answer) does not grow the relay's memory: nothing keeps
// the whole answer (the copy kept for accounting stops at server.max_answer_bytes). The heap in use is
// compared after 10,000 and after 100,000 chunks, with a GC before each reading; mock, relay and client
// share the process, so the bound is loose (4 MiB), yet a leak of 50 bytes per chunk would fail it. The
// upstream reports its usage, as OpenAI does: without it the relay estimates it with the tokenizer,
// whose one-time load (about 11 MiB) would be counted here as growth.
func TestLongStreamMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 100,000 chunks")
	}
	const chunks = 100_000
	frame := `data: {"id":"chatcmpl-long","object":"chat.completion.chunk","created":1731000000,"model":"m1","choices":[{"index":0,"delta":{"content":"a long answer, %06d, padded to sixty bytes of text........ "},"finish_reason":null}]}` + "\n\n"
	// The upstream holds the stream open after its last chunk until the client has measured, so the
	// relay is still in the middle of it (its socket buffers would otherwise let it finish first).
	measured := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		bw := bufio.NewWriterSize(w, 32<<10)
		for i := 0; i < chunks; i++ {
			fmt.Fprintf(bw, frame, i)
		}
		bw.Flush()
		select {
		case <-measured:
		case <-r.Context().Done():
			return
		}
		io.WriteString(bw, `data: {"id":"chatcmpl-long","object":"chat.completion.chunk","created":1731000000,"model":"m1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":600000,"total_tokens":600003}}`+"\n\ndata: [DONE]\n\n")
		bw.Flush()
	}))
	defer up.Close()
	tr := newTestRelay(t, nil, openaiChannel("up", up.URL+"/v1", "m1"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a stall fails the test, not the suite
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tr.URL+"/chat/completions",
		strings.NewReader(`{"model":"m1","stream":true,"messages":[{"role":"user","content":"go on"}]}`))
	req.Header.Set("Authorization", "Bearer "+tr.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	br := bufio.NewReader(resp.Body)
	n := 0
	var at10k, atEnd uint64
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d chunks: %v", n, err)
		}
		if strings.HasPrefix(line, "data: [DONE]") {
			break
		}
		if strings.Contains(line, `"a long answer, `) {
			n++
			switch n {
			case 10_000:
				at10k = heap()
			case chunks:
				atEnd = heap()
				close(measured)
			}
		}
	}
	if n != chunks {
		t.Fatalf("%d chunks reached the client, want %d", n, chunks)
	}
	t.Logf("heap in use after 10,000 chunks %d KiB, after 100,000 %d KiB", at10k>>10, atEnd>>10)
	if atEnd > at10k+4<<20 {
		t.Fatalf("the heap grew %d KiB over 90,000 chunks", (atEnd-at10k)>>10)
	}
}
