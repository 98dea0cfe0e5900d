package adaptor

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// IdleGuard cancels an upstream call that goes quiet for longer than its channel's idle timeout. A
// stream arms it while it waits for each event; a non-stream call arms it when the answer's headers
// arrive and again after every read of its body (Send does this when the call's context carries a
// guard), so an upstream that stalls mid-answer is cut instead of holding the client forever. The wait
// for a non-stream answer's headers is the upstream's generation time and is not bounded here (the
// channel's total timeout and the transport's header timeout bound it).
type IdleGuard struct {
	d      time.Duration
	cancel context.CancelFunc
	clock  *SilenceTimer
	fired  atomic.Bool
}

type idleGuardKey struct{}

// WithIdleGuard returns ctx carrying a guard (which does nothing when d is zero or less) for a non-stream
// call: Send arms it when the answer arrives. cancel cancels ctx, the call's own context; the guard calls
// it when it fires, and Stop calls it when the call ends.
func WithIdleGuard(ctx context.Context, d time.Duration, cancel context.CancelFunc) (context.Context, *IdleGuard) {
	g := newIdleGuard(d, cancel)
	return context.WithValue(ctx, idleGuardKey{}, g), g
}

// NewIdleGuard returns a guard that calls cancel when it fires, for a stream whose reader arms it around
// each wait for an event (it is not put in a context, so Send leaves the stream's body alone). Stop it
// when the stream ends.
func NewIdleGuard(d time.Duration, cancel context.CancelFunc) *IdleGuard {
	return newIdleGuard(d, cancel)
}

func newIdleGuard(d time.Duration, cancel context.CancelFunc) *IdleGuard {
	g := &IdleGuard{d: d, cancel: cancel}
	g.clock = NewSilenceTimer(d, func() { g.fired.Store(true); g.cancel() })
	return g
}

// Arm starts the idle clock, or restarts it. Arm and Pause are called from the one goroutine that reads
// the upstream.
func (g *IdleGuard) Arm() { g.clock.Begin() }

// Pause stops the clock while nothing is awaited from the upstream.
func (g *IdleGuard) Pause() { g.clock.End() }

// Stop ends the guard and cancels the call's context.
func (g *IdleGuard) Stop() {
	g.clock.Stop()
	g.cancel()
}

// Fired reports whether the guard cut the call.
func (g *IdleGuard) Fired() bool { return g.fired.Load() }

// Err turns the error of a call the guard cut into a 504 that says so; other errors pass unchanged.
func (g *IdleGuard) Err(e *Error) *Error {
	if !g.Fired() {
		return e
	}
	return &Error{Status: 504, Type: TypeTimeout, Code: "upstream_idle_timeout", Retryable: true,
		Message: "upstream sent nothing for " + g.d.String()}
}

// guardBody re-arms the guard after every read that brought data.
type guardBody struct {
	io.ReadCloser
	g *IdleGuard
}

func (b *guardBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.g.Arm()
	}
	return n, err
}

func (b *guardBody) Close() error {
	b.g.Pause()
	return b.ReadCloser.Close()
}

// guardAnswer arms the guard of a non-stream call (if its context has one) now that the answer's
// headers are in, and watches the gaps in its body.
func guardAnswer(ctx context.Context, body io.ReadCloser) io.ReadCloser {
	g, _ := ctx.Value(idleGuardKey{}).(*IdleGuard)
	if g == nil || g.d <= 0 {
		return body
	}
	g.Arm()
	return &guardBody{ReadCloser: body, g: g}
}

// GuardEvents applies the context's guard (if any) to a non-stream call that collects a stream: each
// wait for an event is bounded.
func GuardEvents(ctx context.Context, ev Events) Events {
	g, _ := ctx.Value(idleGuardKey{}).(*IdleGuard)
	if g == nil || g.d <= 0 {
		return ev
	}
	return &guardEvents{Events: ev, g: g}
}

type guardEvents struct {
	Events
	g *IdleGuard
}

func (e *guardEvents) Next() (*Event, error) {
	e.g.Arm()
	ev, err := e.Events.Next()
	e.g.Pause()
	return ev, err
}
