// Package demo is a built-in upstream that needs nothing external: it answers by echoing the last user
// message back, streamed in several chunks, with real token counts. It makes the relay usable with curl
// right after start, and it is a fixed point for tests.
package demo

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// Adaptor implements adaptor.Adaptor without any upstream.
type Adaptor struct{}

// New returns the adaptor.
func New() *Adaptor { return &Adaptor{} }

// Answer is the demo's reply to an OpenAI request body.
func Answer(body []byte) string {
	last := ""
	gjson.GetBytes(body, "messages").ForEach(func(_, m gjson.Result) bool {
		if m.Get("role").Str == "user" {
			last = adaptor.MessageText(m.Get("content"))
		}
		return true
	})
	if strings.TrimSpace(last) == "" {
		return "Hello from the relay demo upstream. Send a user message and I will echo it."
	}
	return "You said: " + last
}

// pieces splits an answer into word-sized chunks (spaces kept with the following word).
func pieces(s string) []string {
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if s[i] == ' ' {
			out = append(out, s[start:i])
			start = i
		}
	}
	return append(out, s[start:])
}

// delay reads the channel's optional chunk_delay (a Go duration) for slow-stream demos and tests.
func delay(ch *adaptor.Channel) time.Duration {
	d, _ := time.ParseDuration(ch.Credentials["chunk_delay"])
	return d
}

// Complete answers at once.
func (Adaptor) Complete(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (*adaptor.Completion, error) {
	return adaptor.Collect(newEvents(ctx, ch, req), req, adaptor.NewID("chatcmpl-"), time.Now().Unix())
}

// Stream streams the answer word by word.
func (Adaptor) Stream(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) (adaptor.Events, error) {
	return newEvents(ctx, ch, req), nil
}

type events struct {
	ctx    context.Context
	delay  time.Duration
	parts  []string
	i      int
	b      adaptor.ChunkBuilder
	ev     adaptor.Event
	usage  adaptor.Usage
	closed bool
}

func newEvents(ctx context.Context, ch *adaptor.Channel, req *adaptor.Request) *events {
	answer := Answer(req.Body)
	return &events{ctx: ctx, delay: delay(ch), parts: pieces(answer), usage: adaptor.EstimateUsage(req.Body, answer)}
}

func (e *events) Next() (*adaptor.Event, error) {
	if e.closed || e.i > len(e.parts) {
		return nil, io.EOF
	}
	if e.delay > 0 && e.i > 0 {
		t := time.NewTimer(e.delay)
		select {
		case <-e.ctx.Done():
			t.Stop()
			return nil, adaptor.TransportError(e.ctx, e.ctx.Err())
		case <-t.C:
		}
	} else if err := e.ctx.Err(); err != nil {
		return nil, adaptor.TransportError(e.ctx, err)
	}
	e.ev = adaptor.Event{}
	if e.i < len(e.parts) {
		e.ev.Choices = e.b.Choices(adaptor.Delta{Content: e.parts[e.i]})
	} else {
		// The counts are the tokenizer's own, so the demo reports them as real usage.
		u := e.usage
		u.Estimated = false
		e.ev.Choices = e.b.Choices(adaptor.Delta{FinishReason: "stop"})
		e.ev.Usage, e.ev.HasUsage = u, true
	}
	e.i++
	return &e.ev, nil
}

func (e *events) Close() error { e.closed = true; return nil }
