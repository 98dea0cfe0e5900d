package relay

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
	"time"
)

// Memory after a burst. Go returns freed heap to the OS only in the background scavenger's own time,
// and an idle process runs a GC only every two minutes, so after a burst of streams the relay's RSS
// stays near its peak for minutes. Once no request has been in flight for a whole check interval and
// the heap holds noticeably more than after the last release, the relay collects and returns the
// memory at once. The check reads runtime/metrics (no stop-the-world); the release costs one GC,
// paid only when idle.
const (
	memoryCheckInterval = 5 * time.Second
	memoryReleaseSlack  = 16 << 20 // bytes of retained heap above the last release worth a release
)

var memorySamples = []rtmetrics.Sample{
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
}

// retainedMemory is the memory the Go runtime holds from the OS (mapped minus released).
func retainedMemory() uint64 {
	rtmetrics.Read(memorySamples)
	total, released := memorySamples[0].Value, memorySamples[1].Value
	if total.Kind() != rtmetrics.KindUint64 || released.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return total.Uint64() - released.Uint64()
}

// releaseMemoryWhenIdle checks every interval until ctx ends. idle reports whether no request is in
// flight; busy reports whether any request was seen since the last call (a request that came and went
// between two checks counts as activity). On a quiet check it releases when the runtime holds
// memoryReleaseSlack more than after the last release (a burst just ended), or, at most every twelve
// intervals (a minute), when it holds that much more than the least it has held after a release: memory
// that became garbage later, such as upstream connections closed when their idle timeout passed, goes
// back too.
func releaseMemoryWhenIdle(ctx context.Context, every time.Duration, idle func() bool, busy func() bool) {
	t := time.NewTicker(every)
	defer t.Stop()
	afterLast := retainedMemory()
	low := afterLast
	sinceRelease := 0 // checks since the last release
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sinceRelease++
		if busy() || !idle() {
			continue // wait for a whole quiet interval
		}
		r := retainedMemory()
		if r > afterLast+memoryReleaseSlack || (sinceRelease >= 12 && r > low+memoryReleaseSlack) {
			debug.FreeOSMemory()
			afterLast, sinceRelease = retainedMemory(), 0
			low = min(low, afterLast)
		} else if r < afterLast {
			afterLast = r
			low = min(low, r)
		}
	}
}

// GC headroom. With the default GOGC=100 the runtime collects each time the heap has grown by as much as
// was live after the last cycle. A relay's live heap is small (a few MiB) while every request leaves
// about 10 KiB of garbage, most of it net/http's, so under load a cycle starts every few hundred requests
// (about 9 a second at 3,000 requests/s), and the requests it overlaps pay for its mark assists and its
// share of the CPUs. A fixed floor of headroom makes cycles rare while the live heap is small and changes
// nothing once it is large: GOGC becomes max(100, headroom ÷ live heap × 100), set again after every
// cycle by a cleanup that runs after it (so it may lag by one cycle; the heap goal it sets is never more
// than a recent live heap plus the larger of headroom and itself). The cost is memory: up to headroom
// bytes of garbage between cycles, which the idle release above returns once the load ends.

// gcHeapMinimum is the runtime's heap floor at GOGC=100 (its heapMinimum, 4 MiB, scaled by GOGC/100):
// before the first cycle, and while the live heap is smaller than this, the goal is this floor scaled,
// not the live heap doubled.
const gcHeapMinimum = 4 << 20

// gcPercentFor is the GOGC that lets a heap with live bytes grow by at least headroom before the next
// cycle, and never less than the default 100.
func gcPercentFor(live, headroom uint64) int {
	live = max(live, gcHeapMinimum)
	return int(max(headroom*100/live, 100))
}

// gcSentinel is allocated for each cycle; its cleanup runs once the cycle has found it unreachable. It is
// larger than the runtime's 16-byte tiny-allocation blocks, which would tie its life to its neighbours'.
type gcSentinel struct{ _ [32]byte }

// StartGCHeadroom keeps GOGC at gcPercentFor(live heap, headroom) after every GC cycle until stop is
// called, which restores the GOGC it found. It does nothing when headroom is 0 or when the GOGC
// environment variable is set: an operator's explicit choice wins. GOMEMLIMIT still bounds the heap.
func StartGCHeadroom(headroom uint64) (stop func()) {
	if headroom == 0 || os.Getenv("GOGC") != "" {
		return func() {}
	}
	var mu sync.Mutex
	stopped := false
	live := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}} // as marked by the last cycle
	orig := debug.SetGCPercent(100)
	current := 100
	var arm func()
	retune := func(struct{}) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		rtmetrics.Read(live)
		if live[0].Value.Kind() == rtmetrics.KindUint64 {
			if p := gcPercentFor(live[0].Value.Uint64(), headroom); p != current {
				debug.SetGCPercent(p)
				current = p
			}
		}
		arm()
	}
	arm = func() { runtime.AddCleanup(new(gcSentinel), retune, struct{}{}) }
	retune(struct{}{}) // the heap as of the last cycle, and the first sentinel
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			stopped = true
			debug.SetGCPercent(orig)
		}
	}
}
