package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"relay/adaptor"
	"relay/store"
)

// Core is where every surface's request converges: route to a channel, dispatch with failover before the
// first byte, and account for the result in one log row.
type Core struct {
	// router is swapped whole on a config reload; a request keeps the channels it picked.
	router atomic.Pointer[Router]
	store  store.Store
	log    *slog.Logger
	// maxAnswer caps the answer bytes a stream keeps for accounting.
	maxAnswer int
	// keepAlive is the silence after which the pump writes an SSE comment (server.stream_keepalive).
	keepAlive time.Duration
	metrics   *metrics // nil: none (metrics.go)
}

// Call is the accounting of one request, filled in as it goes and logged when it ends.
type Call struct {
	Start    time.Time
	ID       string // request id
	KeyID    int64
	Surface  string
	Req      *adaptor.Request
	Channel  string
	Status   int
	TTFB     time.Duration
	Usage    adaptor.Usage
	Err      *adaptor.Error
	Attempts int

	ch          *Channel  // the channel of the attempt in progress or that answered
	attemptFrom time.Time // when that attempt started
	busy        bool      // a candidate was skipped for being at its concurrency limit
	ownKey      bool      // the surface chose the upstream key (a workflow's app key)
	keyIdx      int       // index in ch.Keys of the key this attempt uses; -1: none chosen here
	probe       bool      // this attempt is its channel's half-open probe
}

// NewCall starts the accounting for a request.
func NewCall(id string, keyID int64, surface string, req *adaptor.Request) *Call {
	return &Call{Start: time.Now(), ID: id, KeyID: keyID, Surface: surface, Req: req, ownKey: req.APIKey != ""}
}

// Complete runs a non-streaming request, trying the next channel on a retryable failure.
func (co *Core) Complete(ctx context.Context, call *Call) (*adaptor.Completion, *adaptor.Error) {
	var last *adaptor.Error
	cands := co.router.Load().Candidates(call.Req.Model)
	for i := 0; i < len(cands); i++ {
		ch := cands[i]
		if !co.use(call, ch, i == len(cands)-1) {
			continue
		}
		cctx, cancel := adaptor.WithTimeout(ctx, ch.Channel)
		cctx, idle := adaptor.WithIdleGuard(cctx, ch.IdleTimeout, cancel)
		comp, err := ch.Adaptor.Complete(cctx, ch.Channel, call.Req)
		idle.Stop() // and cancel
		if err == nil {
			co.attemptOK(call)
			return comp, nil
		}
		last = idle.Err(adaptor.AsError(err))
		if co.attemptFailed(call, last) {
			i-- // the same channel again, with its next key
		}
		if !co.retry(ctx, call, last) {
			break
		}
	}
	if last == nil {
		last = noChannel(call)
	}
	return nil, last
}

// Stream opens a streaming request and waits for its first event, so that a failure the upstream reports
// in its first frame (some send errors with HTTP 200) is still a failure before the first byte: it
// answers with a clean HTTP error, or moves on to the next channel when retryable. The returned Events
// (first event held) must be closed.
func (co *Core) Stream(ctx context.Context, call *Call) (adaptor.Events, *adaptor.Error) {
	var last *adaptor.Error
	cands := co.router.Load().Candidates(call.Req.Model)
	for i := 0; i < len(cands); i++ {
		ch := cands[i]
		if !co.use(call, ch, i == len(cands)-1) {
			continue
		}
		cctx, cancel := adaptor.WithTimeout(ctx, ch.Channel)
		up := &upstream{idle: adaptor.NewIdleGuard(ch.IdleTimeout, cancel)} // Stop cancels
		up.idle.Arm()
		ev, err := ch.Adaptor.Stream(cctx, ch.Channel, call.Req)
		if err == nil {
			up.Events = ev
			first, ferr := up.next()
			if ferr == nil || errors.Is(ferr, io.EOF) {
				up.first, up.firstErr, up.held = first, ferr, true
				co.attemptOK(call)
				return up, nil
			}
			ev.Close()
			err = ferr
		}
		up.idle.Stop() // and cancel
		last = up.idle.Err(adaptor.AsError(err))
		if co.attemptFailed(call, last) {
			i-- // the same channel again, with its next key
		}
		if !co.retry(ctx, call, last) {
			break
		}
	}
	if last == nil {
		last = noChannel(call)
	}
	return nil, last
}

// use starts an attempt on ch, unless its circuit is open and other candidates remain (the last
// candidate is tried regardless: better a probe than no answer).
func (co *Core) use(call *Call, ch *Channel, last bool) bool {
	if !ch.acquire() {
		call.busy = true // at its max_concurrency: never exceeded, even for the last candidate
		return false
	}
	ok, probe := ch.breaker.allow(time.Now())
	if !ok && !last {
		ch.releaseSlot()
		return false
	}
	call.probe = probe
	call.Attempts++
	call.Channel = ch.Name
	call.Req.UpstreamModel = ch.UpstreamModel(call.Req.Model)
	call.keyIdx = -1
	if !call.ownKey && len(ch.Keys) > 0 {
		call.keyIdx = ch.pickKey(time.Now())
		call.Req.APIKey = ch.Keys[call.keyIdx]
	}
	call.ch, call.attemptFrom = ch, time.Now()
	ch.breaker.inflight.Add(1)
	return true
}

// attemptOK records that the channel answered (for a stream: its first event arrived).
func (co *Core) attemptOK(call *Call) {
	call.ch.breaker.success(time.Since(call.attemptFrom), call.probe)
	call.probe = false // the probe's verdict is in: a stream that breaks later counts as any failure
}

// attemptFailed records a failed attempt: failures that say the channel is unwell count toward its
// breaker; the client's own errors and cancels do not. It reports whether the same channel should be
// tried again: its key was refused and it has another one.
func (co *Core) attemptFailed(call *Call, e *adaptor.Error) (sameAgain bool) {
	b := call.ch.breaker
	b.inflight.Add(-1)
	call.ch.releaseSlot()
	switch {
	case (e.Status == 401 || e.Status == 403) && call.keyIdx >= 0:
		// The channel's key was refused: set it aside (not the channel's health: its breaker is not
		// charged), and let another key of the channel, or another channel, answer.
		now := time.Now()
		call.ch.setKeyAside(call.keyIdx, now, KeyCooldown)
		e.Retryable = true
		sameAgain = call.ch.badKeys(now) < len(call.ch.Keys)
		b.release(call.probe)
	case e.Status == 429 && call.keyIdx >= 0 && len(call.ch.Keys) > 1:
		// One key of a channel with several was rate-limited (or its quota is spent): that key sits out
		// its Retry-After and the channel's next key is tried. Only when every key is out is it the
		// channel's problem, charged to its breaker.
		now := time.Now()
		d := retryAfter(e.RetryAfter, now)
		if e.Code == "insufficient_quota" {
			d = KeyCooldown
		}
		call.ch.setKeyAside(call.keyIdx, now, d)
		sameAgain = call.ch.badKeys(now) < len(call.ch.Keys)
		if sameAgain {
			b.release(call.probe)
		} else {
			b.failure(now, call.probe)
		}
	case e.Retryable && e.Status != 499:
		b.failure(time.Now(), call.probe)
	default:
		b.release(call.probe)
	}
	call.probe = false
	co.metrics.attemptFailed(call.ch.Name, e.Status)
	call.ch = nil
	return sameAgain
}

// retryAfter reads a Retry-After value (seconds or an HTTP date) as how long a rate-limited key sits
// out: KeyRateLimitCooldown when absent or unreadable, between a second and KeyCooldown.
func retryAfter(v string, now time.Time) time.Duration {
	d := KeyRateLimitCooldown
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, time.Second), KeyCooldown)
}

// retry reports whether a failed attempt may move on to the next channel.
func (co *Core) retry(ctx context.Context, call *Call, e *adaptor.Error) bool {
	if !e.Retryable || ctx.Err() != nil {
		return false
	}
	co.log.Warn("upstream attempt failed", "request_id", call.ID, "channel", call.Channel, "status", e.Status, "code", e.Code)
	return true
}

// Finish logs the call's row through the store's async writer, and counts a stream that broke after
// its first byte against its channel.
func (co *Core) Finish(call *Call) {
	if call.ch != nil {
		call.ch.breaker.inflight.Add(-1)
		call.ch.releaseSlot()
		if e := call.Err; e != nil && e.Retryable && e.Status != 499 {
			call.ch.breaker.failure(time.Now(), false)
		}
		call.ch = nil
	}
	row := store.LogRow{
		Time: call.Start, RequestID: call.ID, KeyID: call.KeyID, Surface: call.Surface,
		Model: call.Req.Model, UpstreamModel: call.Req.UpstreamModel, Channel: call.Channel, Stream: call.Req.Stream,
		Status: call.Status, Latency: time.Since(call.Start), TTFB: call.TTFB,
		Usage: store.Usage{PromptTokens: call.Usage.PromptTokens, CompletionTokens: call.Usage.CompletionTokens,
			TotalTokens: call.Usage.TotalTokens, Estimated: call.Usage.Estimated},
	}
	if call.Err != nil {
		// A stream that failed after its 200 went out is logged with the failure's status.
		row.Error = errStatusText(call.Err)
		row.Status = call.Err.Status
	}
	co.metrics.finish(call, row.Status, row.Latency)
	co.store.Log(row)
}

// noChannel is the error when no candidate could be tried: all at their concurrency limit (503, retry
// soon) or none serves the model.
func noChannel(call *Call) *adaptor.Error {
	if call.busy {
		return &adaptor.Error{Status: 503, Type: adaptor.TypeServer, Code: "channels_busy", Retryable: true, RetryAfter: "1",
			Message: "Every channel serving `" + call.Req.Model + "` is at its concurrency limit; retry shortly."}
	}
	return modelNotFound(call.Req.Model)
}

func modelNotFound(model string) *adaptor.Error {
	return &adaptor.Error{Status: 404, Type: adaptor.TypeInvalidRequest, Code: "model_not_found", Param: "model",
		Message: "The model `" + model + "` does not exist or you do not have access to it."}
}

// upstream wraps an open stream: it holds the first event read ahead, bounds the wait for each event
// by the channel's idle timeout (time to first event included), and releases the channel's context
// when closed.
type upstream struct {
	adaptor.Events
	idle     *adaptor.IdleGuard
	first    *adaptor.Event
	firstErr error
	held     bool
}

func (u *upstream) next() (*adaptor.Event, error) {
	ev, err := u.Events.Next()
	u.idle.Pause()
	return ev, err
}

func (u *upstream) Next() (*adaptor.Event, error) {
	if u.held {
		u.held = false
		return u.first, u.firstErr
	}
	if u.idle.Fired() {
		return nil, u.idle.Err(nil)
	}
	u.idle.Arm()
	ev, err := u.next()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, u.idle.Err(adaptor.AsError(err))
	}
	return ev, err
}

// OnWait passes the pump's flush to the adaptor's reader, when it can call it (adaptor.WaitNotifier).
func (u *upstream) OnWait(fn func()) bool {
	n, ok := u.Events.(adaptor.WaitNotifier)
	return ok && n.OnWait(fn)
}

func (u *upstream) Close() error {
	u.idle.Pause()
	err := u.Events.Close()
	u.idle.Stop() // and cancel
	return err
}
