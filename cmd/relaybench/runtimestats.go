package main

import (
	"bufio"
	"context"
	"fmt"
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

// runtimeMetrics maps the metric names read to the fields they fill.
var runtimeMetrics = map[string]func(*runtimeSample) *float64{
	"go_goroutines":                 func(s *runtimeSample) *float64 { return &s.goroutines },
	"go_memstats_stack_inuse_bytes": func(s *runtimeSample) *float64 { return &s.stack },
	"go_memstats_heap_inuse_bytes":  func(s *runtimeSample) *float64 { return &s.heapInuse },
	"go_memstats_heap_alloc_bytes":  func(s *runtimeSample) *float64 { return &s.heapAlloc },
}

// parseRuntimeSample reads those metrics from Prometheus text exposition; it fails when one is missing.
func parseRuntimeSample(body string) (runtimeSample, error) {
	var s runtimeSample
	seen := 0
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		field, known := runtimeMetrics[name]
		if !ok || !known {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return s, fmt.Errorf("metric %s: %w", name, err)
		}
		*field(&s) = v
		seen++
	}
	if seen != len(runtimeMetrics) {
		return s, fmt.Errorf("/metrics has %d of the %d runtime metrics read", seen, len(runtimeMetrics))
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
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		return runtimeSample{}, err
	}
	return parseRuntimeSample(b.String())
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
