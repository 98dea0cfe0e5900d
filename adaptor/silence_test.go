package adaptor

import (
	"sync/atomic"
	"testing"
	"time"
)

func countingSilence(d time.Duration) (*SilenceTimer, *atomic.Int64) {
	var n atomic.Int64
	return NewSilenceTimer(d, func() { n.Add(1) }), &n
}

// One long wait fires after d, then every d while it lasts.
func TestSilenceTimerFiresAndRepeats(t *testing.T) {
	const d = 50 * time.Millisecond
	s, n := countingSilence(d)
	defer s.Stop()
	s.Begin()
	time.Sleep(d / 2)
	if n.Load() != 0 {
		t.Fatal("fired before d")
	}
	time.Sleep(3*d + d/2) // 4d into the wait: fires at d, 2d, 3d (4d may be in flight)
	s.End()
	if got := n.Load(); got < 3 || got > 4 {
		t.Fatalf("fired %d times in a wait of 4d, want 3 or 4", got)
	}
}

// Many short waits, longer than d together, never fire; nor does the time between waits.
func TestSilenceTimerShortWaitsDoNotFire(t *testing.T) {
	const d = 60 * time.Millisecond
	s, n := countingSilence(d)
	defer s.Stop()
	for i := 0; i < 20; i++ { // 20 waits of d/6 with d/6 between: about 4d in all
		s.Begin()
		time.Sleep(d / 6)
		s.End()
		time.Sleep(d / 6)
	}
	time.Sleep(2 * d) // between waits: nothing to fire for
	if got := n.Load(); got != 0 {
		t.Fatalf("fired %d times for waits shorter than d", got)
	}
	// A wait after the timer went quiet is still caught, about d after it began.
	start := time.Now()
	s.Begin()
	for n.Load() == 0 && time.Since(start) < 10*d {
		time.Sleep(time.Millisecond)
	}
	if el := time.Since(start); n.Load() != 1 || el < d || el > 5*d {
		t.Fatalf("wait after a quiet spell fired %d times after %v, want once after about %v", n.Load(), el, d)
	}
}

// After Stop returns, fire is not running and never runs again, even for a wait left open.
func TestSilenceTimerStop(t *testing.T) {
	const d = 20 * time.Millisecond
	var running, after atomic.Int64
	var stopped atomic.Bool
	var s *SilenceTimer
	s = NewSilenceTimer(d, func() {
		running.Add(1)
		if stopped.Load() {
			after.Add(1)
		}
		time.Sleep(d / 2)
		running.Add(-1)
	})
	s.Begin()
	time.Sleep(3 * d)
	s.Stop()
	stopped.Store(true)
	if running.Load() != 0 {
		t.Fatal("fire still running after Stop returned")
	}
	time.Sleep(3 * d)
	if after.Load() != 0 {
		t.Fatal("fired after Stop")
	}
	s.Begin() // a Begin after Stop sets nothing
	time.Sleep(2 * d)
	if after.Load() != 0 {
		t.Fatal("fired after Stop and Begin")
	}
}

func TestSilenceTimerOff(t *testing.T) {
	s, n := countingSilence(0)
	s.Begin()
	time.Sleep(20 * time.Millisecond)
	s.End()
	s.Stop()
	if n.Load() != 0 {
		t.Fatal("a zero duration fired")
	}
}

// BenchmarkSilenceTimerWait is one wait as a stream makes it per event (compare Reset+Stop of a
// runtime timer, about 50 ns here, twice per event per guard before).
func BenchmarkSilenceTimerWait(b *testing.B) {
	s := NewSilenceTimer(15*time.Second, func() {})
	defer s.Stop()
	b.ReportAllocs()
	for b.Loop() {
		s.Begin()
		s.End()
	}
}
