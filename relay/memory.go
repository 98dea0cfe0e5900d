package relay

import (
	"context"
	"runtime/debug"
	rtmetrics "runtime/metrics"
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
