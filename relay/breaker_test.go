package relay

import (
	"net/http"
	"testing"
	"time"
)

// allowed admits a call and reports only whether it was let through.
func allowed(b *breaker, now time.Time) bool {
	ok, _ := b.allow(now)
	return ok
}

func TestBreakerStateMachine(t *testing.T) {
	b := newBreaker(3, 50*time.Millisecond)
	now := time.Now()
	for i := 0; i < 2; i++ {
		if !allowed(b, now) {
			t.Fatal("closed breaker refused")
		}
		b.failure(now, false)
	}
	if b.snapshot().State != "closed" {
		t.Fatal("opened before the threshold")
	}
	b.failure(now, false)
	if s := b.snapshot(); s.State != "open" || allowed(b, now) || b.healthy(now) {
		t.Fatalf("not open after 3 failures: %+v", s)
	}
	later := now.Add(60 * time.Millisecond)
	if !b.healthy(later) || !allowed(b, later) {
		t.Fatal("no probe after the cool-down")
	}
	if allowed(b, later) {
		t.Fatal("a second probe was let through while the first is in flight")
	}
	b.failure(later, true) // the probe failed: open again, cool-down doubled
	if allowed(b, later.Add(60*time.Millisecond)) || !allowed(b, later.Add(110*time.Millisecond)) {
		t.Fatal("cool-down not doubled after a failed probe")
	}
	b.success(time.Millisecond, true)
	if s := b.snapshot(); s.State != "closed" || s.Fails != 0 || !allowed(b, later) {
		t.Fatalf("probe success did not close: %+v", s)
	}
	// A client error during a probe frees the probe slot without judging the channel.
	b2 := newBreaker(1, time.Millisecond)
	b2.failure(now, false)
	p := now.Add(5 * time.Millisecond)
	if !allowed(b2, p) {
		t.Fatal("no probe")
	}
	b2.release(true)
	if !allowed(b2, p) {
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
			b.failure(now, false)
		} else {
			b.success(time.Millisecond, false)
		}
	}
	if b.snapshot().State != "closed" {
		t.Fatal("opened before the minimum samples")
	}
	b.success(time.Millisecond, false)
	b.failure(now, false) // 10 samples, 5 failed
	if s := b.snapshot(); s.State != "open" {
		t.Fatalf("half the window failed but state is %+v", s)
	}
	// A mostly healthy channel stays closed.
	h := newBreaker(100, time.Minute)
	for i := 0; i < 40; i++ {
		if i%4 == 0 {
			h.failure(now, false)
		} else {
			h.success(time.Millisecond, false)
		}
	}
	if h.snapshot().State != "closed" {
		t.Fatal("a 25% failure rate opened the breaker")
	}
}

// Only the half-open probe decides: a call admitted before the trip that answers (or fails) late, or a
// call sent to the open channel because it was the last candidate, leaves the state alone.
func TestBreakerIgnoresStaleOutcomes(t *testing.T) {
	b := newBreaker(2, time.Minute)
	now := time.Now()
	b.failure(now, false)
	b.failure(now, false)
	b.success(time.Millisecond, false) // a straggler admitted while closed
	if s := b.snapshot(); s.State != "open" {
		t.Fatalf("a stale success closed the circuit: %+v", s)
	}
	b.failure(now, false)
	if s := b.snapshot(); s.State != "open" || !s.OpenUntil.Equal(now.Add(time.Minute)) {
		t.Fatalf("a stale failure changed the open state: %+v", s)
	}
	later := now.Add(2 * time.Minute)
	ok, probe := b.allow(later)
	if !ok || !probe {
		t.Fatalf("no probe after the cool-down: %v %v", ok, probe)
	}
	b.success(time.Millisecond, false) // another straggler while the probe is out
	b.release(false)                   // and a client error of a non-probe call
	if s := b.snapshot(); s.State != "half_open" || allowed(b, later) {
		t.Fatalf("non-probe outcomes changed the half-open state: %+v", s)
	}
	b.success(time.Millisecond, true)
	if s := b.snapshot(); s.State != "closed" {
		t.Fatalf("the probe's success did not close: %+v", s)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"20": 20 * time.Second, " 3 ": 3 * time.Second, "0": time.Second, "99999": KeyCooldown,
		"": KeyRateLimitCooldown, "soon": KeyRateLimitCooldown,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
