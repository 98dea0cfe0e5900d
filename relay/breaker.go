package relay

import (
	"sync"
	"sync/atomic"
	"time"
)

// Circuit breaking per channel: after BreakerThreshold consecutive failures, or when at least half of
// the last BreakerWindow calls failed (with BreakerMinSamples of them seen), (retryable ones: connect
// errors, timeouts, 429, 5xx, broken streams) the channel is open for a cool-down and skipped while
// others can serve; then one request at a time probes it (half-open) and a success closes it. A failed
// probe opens it again with the cool-down doubled, up to BreakerMaxCooldown.

// Breaker defaults (config: channels[].breaker_threshold, breaker_cooldown).
const (
	DefaultBreakerThreshold = 5
	DefaultBreakerCooldown  = 30 * time.Second
	BreakerMaxCooldown      = 10 * time.Minute
	BreakerWindow           = 20
	BreakerMinSamples       = 10
)

type breakerState int

const (
	stateClosed breakerState = iota
	stateOpen
	stateHalfOpen
)

func (s breakerState) String() string {
	return [...]string{"closed", "open", "half_open"}[s]
}

// breaker is one channel's circuit breaker and its counters for the status endpoint.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu        sync.Mutex
	state     breakerState
	fails     int           // consecutive failures
	openUntil time.Time     // while open
	backoff   time.Duration // current cool-down
	probing   bool          // a half-open probe is in flight
	// window holds the last BreakerWindow outcomes (true: failed) for the failure-rate rule.
	window            [BreakerWindow]bool
	windowN, windowAt int
	windowFails       int

	requests, failures, inflight atomic.Int64
	latencyEWMA                  atomic.Int64 // nanoseconds, successful calls
	errorEWMA                    atomic.Int64 // recent failure share in millionths (weight 1/16 per call)
}

// observe folds one outcome into the recent error rate.
func (b *breaker) observe(failed bool) {
	x := int64(0)
	if failed {
		x = 1_000_000
	}
	old := b.errorEWMA.Load()
	b.errorEWMA.Store(old + (x-old)/16)
}

func newBreaker(threshold int, cooldown time.Duration) *breaker {
	if threshold <= 0 {
		threshold = DefaultBreakerThreshold
	}
	if cooldown <= 0 {
		cooldown = DefaultBreakerCooldown
	}
	return &breaker{threshold: threshold, cooldown: cooldown, backoff: cooldown}
}

// allow reports whether a request may go to the channel now, and whether it is the half-open probe: a
// half-open channel admits one probe, and only that probe's outcome may close or reopen it.
func (b *breaker) allow(now time.Time) (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case stateOpen:
		if now.Before(b.openUntil) {
			return false, false
		}
		b.state = stateHalfOpen
		fallthrough
	case stateHalfOpen:
		if b.probing {
			return false, false
		}
		b.probing = true
		return true, true
	}
	return true, false
}

// healthy reports whether the channel is closed or due for a probe (no state change).
func (b *breaker) healthy(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == stateClosed || (b.state == stateOpen && !now.Before(b.openUntil)) || (b.state == stateHalfOpen && !b.probing)
}

// success records a call that answered. While the circuit is open or half-open, only the probe's success
// closes it: a call admitted before the trip (or sent to an open channel as the last candidate) that
// answers late says little about the channel now, and must not cut its cool-down short.
func (b *breaker) success(latency time.Duration, probe bool) {
	b.requests.Add(1)
	b.observe(false)
	if old := b.latencyEWMA.Load(); old == 0 {
		b.latencyEWMA.Store(int64(latency))
	} else {
		b.latencyEWMA.Store(old + (int64(latency)-old)/8)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case probe && b.state == stateHalfOpen:
		b.state, b.fails, b.probing, b.backoff = stateClosed, 0, false, b.cooldown
		b.record(false)
	case b.state == stateClosed:
		b.fails = 0
		b.record(false)
	}
}

// record adds an outcome to the window (b.mu held).
func (b *breaker) record(failed bool) {
	if b.windowN == BreakerWindow {
		if b.window[b.windowAt] {
			b.windowFails--
		}
	} else {
		b.windowN++
	}
	b.window[b.windowAt] = failed
	if failed {
		b.windowFails++
	}
	b.windowAt = (b.windowAt + 1) % BreakerWindow
}

func (b *breaker) open(now time.Time) {
	b.state, b.openUntil, b.probing = stateOpen, now.Add(b.backoff), false
	b.window, b.windowN, b.windowAt, b.windowFails = [BreakerWindow]bool{}, 0, 0, 0
}

// failure records a call that failed in a way that says the channel is unwell. A failed probe reopens the
// circuit with the cool-down doubled; other failures only count while it is closed.
func (b *breaker) failure(now time.Time, probe bool) {
	b.requests.Add(1)
	b.failures.Add(1)
	b.observe(true)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case probe && b.state == stateHalfOpen:
		b.fails++
		b.backoff = min(b.backoff*2, BreakerMaxCooldown)
		b.open(now)
	case b.state == stateClosed:
		b.fails++
		b.record(true)
		if b.fails >= b.threshold || (b.windowN >= BreakerMinSamples && 2*b.windowFails >= b.windowN) {
			b.open(now)
		}
	}
}

// release ends a call that said nothing about the channel's health (a client error, a cancel): if it
// was the half-open probe, the probe slot is freed for the next request.
func (b *breaker) release(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

type breakerSnapshot struct {
	State     string
	Fails     int
	OpenUntil time.Time
}

func (b *breaker) snapshot() breakerSnapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return breakerSnapshot{State: b.state.String(), Fails: b.fails, OpenUntil: b.openUntil}
}
