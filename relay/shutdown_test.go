package relay_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"relay/relay"
)

// A shutdown right after N requests leaves N log rows: the queue is drained before exit.
func TestShutdownAfterRequestsKeepsEveryRow(t *testing.T) {
	tr := newTestRelay(t, nil, demoChannel())
	const n = 60
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			stream := "false"
			if i%2 == 0 {
				stream = "true"
			}
			resp := tr.post(tr.Key, `{"model":"demo","stream":`+stream+`,"messages":[{"role":"user","content":"row `+strings.Repeat("x", i)+`"}]}`)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("request %d: %d", i, resp.StatusCode)
			}
		}(i)
	}
	wg.Wait()
	if rows := tr.logs(); len(rows) != n {
		t.Fatalf("%d rows after shutdown, want %d", len(rows), n)
	}
}

// In-flight streams finish during the grace period; the ones still running when it ends are cut with
// an error and logged as failed.
func TestShutdownDrainsInFlightStreams(t *testing.T) {
	slowDemo := demoChannel()
	slowDemo.Credentials = map[string]string{"chunk_delay": "40ms"}
	tr := newTestRelay(t, func(c *relay.Config) { c.Server.ShutdownGrace = 3 * time.Second }, slowDemo)
	resp := tr.post(tr.Key, `{"model":"demo","stream":true,"messages":[{"role":"user","content":"a b c d e f g h"}]}`)
	buf := make([]byte, 16)
	if _, err := io.ReadAtLeast(resp.Body, buf, 1); err != nil { // the stream is running
		t.Fatal(err)
	}
	shutdown := make(chan struct{})
	go func() { tr.Close(); close(shutdown) }()
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("stream cut during graceful shutdown: %v %q", err, rest)
	}
	<-shutdown
	rows := tr.logs()
	if len(rows) != 1 || rows[0].Status != 200 || rows[0].Error != "" {
		t.Fatalf("rows %+v", rows)
	}

	// Past the grace period the stream is cancelled, ends with an error event, and is logged failed.
	tr2 := newTestRelay(t, func(c *relay.Config) { c.Server.ShutdownGrace = 100 * time.Millisecond }, slowDemo)
	resp = tr2.post(tr2.Key, `{"model":"demo","stream":true,"messages":[{"role":"user","content":"`+strings.Repeat("w ", 200)+`"}]}`)
	if _, err := io.ReadAtLeast(resp.Body, buf, 1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	go tr2.Close()
	rest, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if time.Since(start) > 3*time.Second || strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("stream not cut at the end of grace: %v", time.Since(start))
	}
	time.Sleep(50 * time.Millisecond)
	rows = tr2.logs()
	if len(rows) != 1 || rows[0].Error == "" {
		t.Fatalf("rows %+v", rows)
	}
	_ = context.Background
}
