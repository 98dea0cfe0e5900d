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
	"sync"
	"testing"
	"time"

	"relay/relay/relaytest"
)

// BenchmarkOpenStreamMemory is what one open, idle stream holds in the relay: goroutine stacks, live heap
// and goroutines, per stream. Each iteration opens openStreams streams at once through the relay to an
// upstream that sends one chunk and then stays silent, and reads the runtime's figures once every stream
// has delivered that chunk. The same streams opened directly to the upstream give what the client and
// upstream sides hold in this process; the difference is the relay's. relaybench's memory test measures
// the relay process's RSS from outside; this one says how much of it is stacks and how much heap. (For
// what the heap holds, take a heap profile of a relay under relaybench through server.debug_listen.)
func BenchmarkOpenStreamMemory(b *testing.B) {
	const openStreams = 50
	up := httptest.NewServer(http.HandlerFunc(silentStream))
	defer up.Close()
	r := relaytest.Start(b, testKinds(), nil, openaiChannel("up", up.URL+"/v1", "m"))
	defer r.Close()
	key := r.NewKey("bench", nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: openStreams}}
	defer client.CloseIdleConnections()

	// Each lane runs once before timing starts, so that neither pays for first use (the relay's key
	// cache, lazily built tables).
	direct := func() memFigures {
		return openStreamsFigures(b, client, up.URL+"/v1/chat/completions", "", openStreams)
	}
	relayed := func() memFigures {
		return openStreamsFigures(b, client, r.URL+"/chat/completions", key, openStreams)
	}
	direct()
	relayed()
	var sum memFigures
	b.ResetTimer()
	for range b.N {
		d, rl := direct(), relayed()
		sum.stack += rl.stack - d.stack
		sum.heap += rl.heap - d.heap
		sum.goroutines += rl.goroutines - d.goroutines
	}
	n := float64(b.N * openStreams)
	b.ReportMetric(sum.stack/n, "stack-B/stream")
	b.ReportMetric(sum.heap/n, "heap-B/stream")
	b.ReportMetric(sum.goroutines/n, "goroutines/stream")
}

// silentStream is an OpenAI-compatible upstream that answers a stream with one chunk and then waits
// until the client goes away.
func silentStream(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",`+
		`"choices":[{"index":0,"delta":{"role":"assistant","content":"Thinking"},"finish_reason":null}]}`+"\n\n")
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

type memFigures struct{ stack, heap, goroutines float64 }

// openStreamsFigures opens n streams to url at once, waits until each has delivered its first event,
// and returns how much the stacks, the live heap and the goroutine count grew; then it closes them and
// waits until the goroutines they had are gone.
func openStreamsFigures(b *testing.B, client *http.Client, url, key string, n int) memFigures {
	b.Helper()
	before := settledMem()
	g0 := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	opened := make(chan error, n) // one value per stream: nil once its first event arrived
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", url,
				strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Content-Type", "application/json")
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := client.Do(req)
			if err != nil {
				opened <- err
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			if resp.StatusCode != 200 || err != nil || !strings.HasPrefix(line, "data: ") {
				opened <- fmt.Errorf("status %d, first line %q", resp.StatusCode, line)
				return
			}
			opened <- nil
			io.Copy(io.Discard, br) // until cancel
		}()
	}
	for range n {
		if err := <-opened; err != nil {
			b.Fatalf("opening a stream to %s: %v", url, err)
		}
	}
	during := settledMem()
	g1 := runtime.NumGoroutine()
	cancel()
	wg.Wait()
	// The servers' goroutines for these streams end soon after their clients left.
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > g0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	return memFigures{
		stack:      float64(during.StackInuse) - float64(before.StackInuse),
		heap:       float64(during.HeapAlloc) - float64(before.HeapAlloc),
		goroutines: float64(g1 - g0),
	}
}

// settledMem is the memory statistics right after two GCs: the second empties the sync.Pools (net/http
// keeps the buffers of closed connections in them), so that what a lane holds does not depend on what
// the lane before it left there. A GC also shrinks stacks that are mostly unused.
func settledMem() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}
