package adaptor

import (
	"sync"
	"sync/atomic"
	"time"
)

// SilenceTimer calls fire once a wait has lasted d, and again every d while that wait goes on. Begin and
// End bracket each wait and only note when it began: a stream of many events does not reset a runtime
// timer twice per event (each reset takes the timer heap's lock and reads the clock). The one timer goes
// off at most about once per d while waits come and go; when it goes off early (the wait it was set for
// has ended, or a later one began) it is set again for the end of the current wait, and between waits
// it is left off until the next Begin. Begin and End are called from one goroutine; Stop from any, once
// the timer is no longer wanted (it must be called, or a wait left open would fire forever).
type SilenceTimer struct {
	d     time.Duration
	fire  func()
	epoch time.Time    // origin of since (a monotonic reading)
	since atomic.Int64 // when the current wait began, in ns after epoch; -1 between waits
	armed atomic.Bool  // the timer is set (or about to run check)

	mu      sync.Mutex // orders setting the timer, its callback and Stop
	timer   *time.Timer
	stopped bool
}

// NewSilenceTimer returns a timer that calls fire after d of one wait; d <= 0 gives one that never fires.
func NewSilenceTimer(d time.Duration, fire func()) *SilenceTimer {
	s := &SilenceTimer{d: d, fire: fire, epoch: time.Now()}
	s.since.Store(-1)
	return s
}

// Begin starts a wait.
func (s *SilenceTimer) Begin() {
	if s.d <= 0 {
		return
	}
	s.since.Store(int64(time.Since(s.epoch)))
	if !s.armed.Load() {
		s.mu.Lock()
		if !s.stopped && !s.armed.Load() {
			s.armed.Store(true)
			if s.timer == nil {
				s.timer = time.AfterFunc(s.d, s.check)
			} else {
				s.timer.Reset(s.d)
			}
		}
		s.mu.Unlock()
	}
}

// End ends the current wait.
func (s *SilenceTimer) End() { s.since.Store(-1) }

// Stop ends the timer for good. After it returns, fire is not running and will not be called.
func (s *SilenceTimer) Stop() {
	s.since.Store(-1)
	s.mu.Lock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
}

// check runs when the timer goes off.
func (s *SilenceTimer) check() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	// Off first, then look at the wait: a Begin that saw the timer still armed began its wait before
	// this, so the load below sees it; one that saw it off sets it itself.
	s.armed.Store(false)
	began := s.since.Load()
	if began < 0 {
		return // between waits: the next Begin sets the timer
	}
	s.armed.Store(true)
	now := time.Since(s.epoch)
	if waited := now - time.Duration(began); waited < s.d {
		s.timer.Reset(s.d - waited)
		return
	}
	s.fire()
	s.since.CompareAndSwap(began, int64(now)) // the same wait: again d from now
	s.timer.Reset(s.d)
}
