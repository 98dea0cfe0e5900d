package relay

import (
	"context"
	"log/slog"
	"time"

	"relay/adaptor"
	"relay/store"
)

// Core is where every surface's request converges: route to a channel, dispatch with failover before the
// first byte, and account for the result in one log row.
type Core struct {
	router *Router
	store  store.Store
	log    *slog.Logger
	// maxAnswer caps the answer bytes a stream keeps for accounting.
	maxAnswer int
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
}

// NewCall starts the accounting for a request.
func NewCall(id string, keyID int64, surface string, req *adaptor.Request) *Call {
	return &Call{Start: time.Now(), ID: id, KeyID: keyID, Surface: surface, Req: req}
}

// Complete runs a non-streaming request, trying the next channel on a retryable failure.
func (co *Core) Complete(ctx context.Context, call *Call) (*adaptor.Completion, *adaptor.Error) {
	var last *adaptor.Error
	for _, ch := range co.router.Candidates(call.Req.Model) {
		co.use(call, ch)
		cctx, cancel := adaptor.WithTimeout(ctx, ch.Channel)
		comp, err := ch.Adaptor.Complete(cctx, ch.Channel, call.Req)
		cancel()
		if err == nil {
			return comp, nil
		}
		last = adaptor.AsError(err)
		if !co.retry(ctx, call, last) {
			break
		}
	}
	if last == nil {
		last = modelNotFound(call.Req.Model)
	}
	return nil, last
}

// Stream opens a streaming request, trying the next channel on a retryable failure before any byte
// reached the client. The returned Events must be closed.
func (co *Core) Stream(ctx context.Context, call *Call) (adaptor.Events, *adaptor.Error) {
	var last *adaptor.Error
	for _, ch := range co.router.Candidates(call.Req.Model) {
		co.use(call, ch)
		cctx, cancel := adaptor.WithTimeout(ctx, ch.Channel)
		ev, err := ch.Adaptor.Stream(cctx, ch.Channel, call.Req)
		if err == nil {
			return &cancelOnClose{Events: ev, cancel: cancel}, nil
		}
		cancel()
		last = adaptor.AsError(err)
		if !co.retry(ctx, call, last) {
			break
		}
	}
	if last == nil {
		last = modelNotFound(call.Req.Model)
	}
	return nil, last
}

func (co *Core) use(call *Call, ch *Channel) {
	call.Attempts++
	call.Channel = ch.Name
	call.Req.UpstreamModel = ch.UpstreamModel(call.Req.Model)
}

// retry reports whether a failed attempt may move on to the next channel.
func (co *Core) retry(ctx context.Context, call *Call, e *adaptor.Error) bool {
	if !e.Retryable || ctx.Err() != nil {
		return false
	}
	co.log.Warn("upstream attempt failed", "request_id", call.ID, "channel", call.Channel, "status", e.Status, "code", e.Code)
	return true
}

// Finish logs the call's row through the store's async writer.
func (co *Core) Finish(call *Call) {
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
	co.store.Log(row)
}

func modelNotFound(model string) *adaptor.Error {
	return &adaptor.Error{Status: 404, Type: adaptor.TypeInvalidRequest, Code: "model_not_found", Param: "model",
		Message: "The model `" + model + "` does not exist or you do not have access to it."}
}

// cancelOnClose releases the per-channel timeout when the stream is closed.
type cancelOnClose struct {
	adaptor.Events
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.Events.Close()
	c.cancel()
	return err
}
