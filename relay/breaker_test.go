package relay

import (
	"testing"
	"time"
)

func TestBreakerStateMachine(t *testing.T) {
	b := newBreaker(3, 50*time.Millisecond)
	now := time.Now()
	for i := 0; i < 2; i++ {
		if !b.allow(now) {
			t.Fatal("closed breaker refused")
		}
		b.failure(now)
	}
	if b.snapshot().State != "closed" {
		t.Fatal("opened before the threshold")
	}
	b.failure(now)
	if s := b.snapshot(); s.State != "open" || b.allow(now) || b.healthy(now) {
		t.Fatalf("not open after 3 failures: %+v", s)
	}
	later := now.Add(60 * time.Millisecond)
	if !b.healthy(later) || !b.allow(later) {
		t.Fatal("no probe after the cool-down")
	}
	if b.allow(later) {
		t.Fatal("a second probe was let through while the first is in flight")
	}
	b.failure(later) // the probe failed: open again, cool-down doubled
	if b.allow(later.Add(60*time.Millisecond)) || !b.allow(later.Add(110*time.Millisecond)) {
		t.Fatal("cool-down not doubled after a failed probe")
	}
	b.success(time.Millisecond)
	if s := b.snapshot(); s.State != "closed" || s.Fails != 0 || !b.allow(later) {
		t.Fatalf("probe success did not close: %+v", s)
	}
	// A client error during a probe frees the probe slot without judging the channel.
	b2 := newBreaker(1, time.Millisecond)
	b2.failure(now)
	p := now.Add(5 * time.Millisecond)
	if !b2.allow(p) {
		t.Fatal("no probe")
	}
	b2.release()
	if !b2.allow(p) {
		t.Fatal("released probe slot not reusable")
	}
	if b.requests.Load() != 5 || b.failures.Load() != 4 || b.errorEWMA.Load() <= 0 {
		t.Fatalf("counters %d %d %d", b.requests.Load(), b.failures.Load(), b.errorEWMA.Load())
	}
}

// Alternating failures never reach the consecutive threshold, but half of the window failing opens it.
func TestBreakerFailureRate(t *testing.T) {
	b := newBreaker(100, time.Minute)
	now := time.Now()
	for i := 0; i < BreakerMinSamples-2; i++ {
		if i%2 == 0 {
			b.failure(now)
		} else {
			b.success(time.Millisecond)
		}
	}
	if b.snapshot().State != "closed" {
		t.Fatal("opened before the minimum samples")
	}
	b.success(time.Millisecond)
	b.failure(now) // 10 samples, 5 failed
	if s := b.snapshot(); s.State != "open" {
		t.Fatalf("half the window failed but state is %+v", s)
	}
	// A mostly healthy channel stays closed.
	h := newBreaker(100, time.Minute)
	for i := 0; i < 40; i++ {
		if i%4 == 0 {
			h.failure(now)
		} else {
			h.success(time.Millisecond)
		}
	}
	if h.snapshot().State != "closed" {
		t.Fatal("a 25% failure rate opened the breaker")
	}
}
