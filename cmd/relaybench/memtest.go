package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// memResult is one process's memory under many concurrent slow streams, and after them.
type memResult struct {
	name       string
	streams    int
	load       runStats
	startRSS   int64 // right after the process came up (relay only)
	before     int64 // just before the test: the baseline
	peak       int64 // highest VmRSS sampled during the test
	hwm        int64 // VmHWM after the test (the lifetime peak)
	after      []rssPoint
	returnedAt time.Duration // first sample within 10% of the baseline; -1 when none was
	// The relay's Go runtime before the test and when the most goroutines were alive (relay only; rtOK
	// false when its /metrics could not be read).
	rtBase, rtPeak runtimeSample
	rtOK           bool
}

type rssPoint struct {
	at  time.Duration
	rss int64
}

// relayQuiet is how long the relay is left idle before its baseline is read: two of its memory checks
// (relay.memoryCheckInterval, 5 s) and a second to spare.
const relayQuiet = 11 * time.Second

// afterSchedule is when RSS is sampled after the streams end, bounded by -rss-wait.
var afterSchedule = []time.Duration{0, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
	20 * time.Second, 30 * time.Second, time.Minute, 90 * time.Second, 2 * time.Minute, 150 * time.Second, 3 * time.Minute,
	4 * time.Minute, 5 * time.Minute, 6 * time.Minute}

// memTest opens cfg.streams slow streams at once through p (in front of the slow mock) and follows p's
// resident memory during and after them.
func (b *bench) memTest(ctx context.Context, name string, p *proc, key string) (memResult, error) {
	pid := p.pid()
	m := memResult{name: name, streams: b.cfg.streams, returnedAt: -1}
	if p == b.relay {
		m.startRSS = b.relayStartRSS
		// The throughput rounds leave garbage the relay may keep until it is idle (server.gc_headroom_bytes);
		// a baseline holding it would be reused by the streams and understate what they cost. Two of the
		// relay's 5 s idle checks pass first, so its idle release has run.
		b.logf("memory: %v of quiet for the relay's idle release before its baseline", relayQuiet)
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-time.After(relayQuiet):
		}
	}
	base, err := readMem(pid)
	if err != nil {
		return m, err
	}
	m.before = base.RSS
	b.logf("memory: %d concurrent streams through %s (%v between chunks), baseline RSS %s",
		m.streams, name, b.cfg.slowDelay, fmtBytes(m.before))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if mi, err := readMem(pid); err == nil {
				m.peak = max(m.peak, mi.RSS)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	client := newClient(m.streams + 8)
	var rt *runtimeFollower
	if p == b.relay {
		metricsClient := newClient(1)
		defer metricsClient.CloseIdleConnections()
		if base, err := scrapeRuntime(ctx, metricsClient, p.url); err != nil {
			b.logf("memory: the relay's runtime figures are not available: %v", err)
		} else {
			m.rtBase = base
			rt = followRuntime(metricsClient, p.url, 250*time.Millisecond)
		}
	}
	spec := loadSpec{stream: true, conc: m.streams, n: m.streams, max: 2 * time.Minute, body: chatBody("bench-slow", true)}
	r := runLoad(ctx, client, target{name: name, url: p.url + "/v1/chat/completions", key: key}, spec)
	// The clients are gone once the test ends: their idle keep-alive connections must not pin memory.
	client.CloseIdleConnections()
	close(stop)
	wg.Wait()
	if rt != nil {
		m.rtPeak, m.rtOK = rt.end()
	}
	m.load = reduce(r)
	end := time.Now()
	if mi, err := readMem(pid); err == nil {
		m.hwm = mi.HWM
	}
	if r.ok == 0 {
		return m, fmt.Errorf("memory test through %s: no stream succeeded: %s", name, r.firstErr)
	}

	for _, at := range afterSchedule {
		if at > b.cfg.rssWait {
			break
		}
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-time.After(time.Until(end.Add(at))):
		}
		mi, err := readMem(pid)
		if err != nil {
			return m, err
		}
		m.after = append(m.after, rssPoint{at: at, rss: mi.RSS})
		if float64(mi.RSS) <= 1.1*float64(m.before) {
			m.returnedAt = at
			break
		}
	}
	b.logf("memory: %s peak %s, %d/%d streams ok, gap p50 %s p99 %s", name, fmtBytes(m.peak),
		r.ok, m.streams, fmtMicros(m.load.gap50), fmtMicros(m.load.gap99))
	return m, nil
}
