package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runtimeSample is what the relay's /metrics says about its Go runtime at one moment.
type runtimeSample struct {
	goroutines float64 // go_goroutines
	stack      float64 // go_memstats_stack_inuse_bytes: goroutine stacks
	heapInuse  float64 // go_memstats_heap_inuse_bytes: heap spans in use (live objects and garbage not yet swept)
	heapAlloc  float64 // go_memstats_heap_alloc_bytes: allocated heap objects (live and not yet collected)
}

// parseRuntimeSample reads those metrics from Prometheus text exposition; it fails when one is missing.
func parseRuntimeSample(body string) (runtimeSample, error) {
	var s runtimeSample
	seen := 0
	for _, line := range strings.Split(body, "\n") {
		name, value, ok := strings.Cut(line, " ")
		var field *float64
		switch name {
		case "go_goroutines":
			field = &s.goroutines
		case "go_memstats_stack_inuse_bytes":
			field = &s.stack
		case "go_memstats_heap_inuse_bytes":
			field = &s.heapInuse
		case "go_memstats_heap_alloc_bytes":
			field = &s.heapAlloc
		}
		if !ok || field == nil {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return s, fmt.Errorf("metric %s: %w", name, err)
		}
		*field = v
		seen++
	}
	if seen != 4 {
		return s, fmt.Errorf("/metrics has %d of the 4 runtime metrics read", seen)
	}
	return s, nil
}

// scrapeRuntime reads the relay's runtime figures from its /metrics (served without a relay key).
func scrapeRuntime(ctx context.Context, client *http.Client, base string) (runtimeSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return runtimeSample{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return runtimeSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return runtimeSample{}, fmt.Errorf("/metrics: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return runtimeSample{}, err
	}
	return parseRuntimeSample(string(body))
}

// runtimeFollower samples the relay's runtime every interval until stopped and keeps the sample with
// the most goroutines: the moment the most streams were open. Reading /metrics makes the relay read its
// memory statistics (a short stop of the world), so it is sampled a few times a second, not every 20 ms
// like RSS.
type runtimeFollower struct {
	mu   sync.Mutex
	peak runtimeSample
	ok   bool
	stop chan struct{}
	done chan struct{}
}

func followRuntime(client *http.Client, base string, every time.Duration) *runtimeFollower {
	f := &runtimeFollower{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), every)
			s, err := scrapeRuntime(ctx, client, base)
			cancel()
			if err != nil {
				continue
			}
			f.mu.Lock()
			if !f.ok || s.goroutines > f.peak.goroutines {
				f.peak, f.ok = s, true
			}
			f.mu.Unlock()
		}
	}()
	return f
}

// end stops sampling and returns the busiest sample (ok false when none was read).
func (f *runtimeFollower) end() (runtimeSample, bool) {
	close(f.stop)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peak, f.ok
}
