package relay

import (
	"context"
	"runtime"
	rtmetrics "runtime/metrics"
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

func TestGCPercentFor(t *testing.T) {
	const MiB = 1 << 20
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{0, 64 * MiB, 1600},       // before the first cycle: the runtime's 4 MiB floor, scaled to 64 MiB
		{1 * MiB, 64 * MiB, 1600}, // a live heap under the floor counts as the floor
		{8 * MiB, 64 * MiB, 800},  // 8 MiB live + 64 MiB of garbage
		{6 * MiB, 32 * MiB, 533},
		{64 * MiB, 64 * MiB, 100},
		{500 * MiB, 64 * MiB, 100}, // a large heap keeps the default
	} {
		if got := gcPercentFor(c.live, c.headroom); got != c.want {
			t.Errorf("gcPercentFor(%d MiB, %d MiB) = %d, want %d", c.live/MiB, c.headroom/MiB, got, c.want)
		}
	}
}

// gcState reads the runtime's current GOGC and its count of completed cycles.
func gcState() (percent, cycles uint64) {
	s := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/cycles/total:gc-cycles"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// waitGOGC collects until the cleanup that follows a cycle has set GOGC as wanted. A cleanup that runs
// while the next cycle is marking sees the heap of the cycle before, so the percent can lag one cycle.
func waitGOGC(t *testing.T, ok func(uint64) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		time.Sleep(time.Millisecond)
		p, _ := gcState()
		if ok(p) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d", p)
		}
	}
}

// With headroom the heap gathers that much garbage between cycles, the percent follows every cycle,
// and stop gives the runtime its GOGC back.
func TestGCHeadroom(t *testing.T) {
	orig, _ := gcState()
	const headroom = 64 << 20
	stop := StartGCHeadroom(headroom)
	defer stop()
	waitGOGC(t, func(p uint64) bool { return p >= 400 }) // the live heap of a test binary is well under 16 MiB

	_, before := gcState()
	for i := 0; i < 4096; i++ { // 256 MiB of short-lived garbage: dozens of cycles at GOGC=100
		memorySink = append(memorySink[:0], make([]byte, 64<<10))
	}
	memorySink = nil
	if _, after := gcState(); after-before > 6 {
		t.Errorf("%d GC cycles while 256 MiB of garbage gathered with %d MiB of headroom", after-before, headroom>>20)
	}

	// A live heap larger than the headroom brings the percent down to the default.
	big := make([][]byte, 0, 128)
	for i := 0; i < cap(big); i++ {
		big = append(big, make([]byte, 1<<20))
	}
	waitGOGC(t, func(p uint64) bool { return p == 100 })
	runtime.KeepAlive(big)
	big = nil

	stop()
	runtime.GC()
	if p, _ := gcState(); p != orig {
		t.Errorf("GOGC %d after stop, want %d back", p, orig)
	}
}

// An operator's GOGC wins: the headroom leaves the runtime alone.
func TestGCHeadroomYieldsToGOGC(t *testing.T) {
	t.Setenv("GOGC", "100")
	orig, _ := gcState()
	stop := StartGCHeadroom(64 << 20)
	defer stop()
	runtime.GC()
	time.Sleep(20 * time.Millisecond) // time for a cleanup, had one been registered
	if p, _ := gcState(); p != orig {
		t.Errorf("GOGC %d with GOGC set in the environment, want %d", p, orig)
	}
}
