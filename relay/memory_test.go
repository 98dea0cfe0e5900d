package relay

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

var memorySink [][]byte

// After a burst, memory the heap no longer uses goes back to the OS once the relay is idle, and not
// while a request is in flight.
func TestReleaseMemoryWhenIdle(t *testing.T) {
	runtime.GC()
	base := retainedMemory()
	var active atomic.Bool
	active.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go releaseMemoryWhenIdle(ctx, 20*time.Millisecond, func() bool { return !active.Load() }, func() bool { return false })
	time.Sleep(50 * time.Millisecond) // it takes its floor before the burst, as the relay does at start
	for i := 0; i < 64; i++ {
		memorySink = append(memorySink, make([]byte, 1<<20))
		memorySink[i][0] = 1
	}
	memorySink = nil
	if r := retainedMemory(); r < base+48<<20 {
		t.Skipf("the runtime already returned the burst (%d MiB over base)", (r-base)>>20)
	}
	time.Sleep(200 * time.Millisecond)
	if r := retainedMemory(); r < base+48<<20 {
		// A background GC and scavenge may have run on their own; that is not the release's doing.
		t.Logf("retained %d MiB over base while busy", (r-base)>>20)
	}
	active.Store(false)
	deadline := time.Now().Add(2 * time.Second)
	for retainedMemory() > base+memoryReleaseSlack+8<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("retained %d MiB over base 2s after going idle", (retainedMemory()-base)>>20)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
