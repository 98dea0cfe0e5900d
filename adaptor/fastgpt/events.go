package fastgpt

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// Events decodes a FastGPT stream, detail mode or not.
//
// End of stream: FastGPT writes the final answer chunk (finish_reason stop), then [DONE] (as
// `event: answer` in detail mode), then, in detail mode, `event: flowResponses`, then ends the body.
// So [DONE] only marks the end of the answer; the real end is the end of the body after [DONE].
// Next keeps reading past [DONE], delivers whatever named events follow (flowResponses with the
// node tokens) and returns io.EOF when the body ends. A body that ends before [DONE] is a broken
// stream; a read failure after [DONE] ends the stream quietly, since the answer itself is complete.
// Answer frames after [DONE] are ignored.
type Events struct {
	ctx    context.Context
	cancel context.CancelFunc
	body   io.ReadCloser
	sse    *adaptor.SSEReader
	ev     adaptor.Event
	b      adaptor.ChunkBuilder
	nodes  adaptor.Usage // running sum over flowNodeResponse events

	started bool  // the first chunk went out (with the role)
	done    bool  // [DONE] seen
	held    bool  // ev was read ahead by Stream and not returned yet
	err     error // terminal result, returned again by every later Next
}

// NewEvents reads a FastGPT event stream from body.
func NewEvents(ctx context.Context, body io.ReadCloser) *Events {
	return newEvents(ctx, nil, body, body)
}

// newEvents reads from r, which wraps body; Stream passes the *bufio.Reader it already peeked into (the
// SSE reader buffers on top of it, so that it can tell when a read waits for the upstream).
func newEvents(ctx context.Context, cancel context.CancelFunc, body io.ReadCloser, r io.Reader) *Events {
	return &Events{ctx: ctx, cancel: cancel, body: body, sse: adaptor.NewSSEReader(r)}
}

// Next returns the next chunk or named event, io.EOF at the end of the body after [DONE], or an
// *adaptor.Error (an `event: error` frame, a malformed chunk, a broken or failed read).
func (e *Events) Next() (*adaptor.Event, error) {
	if e.held {
		e.held = false
		return &e.ev, nil
	}
	if e.err != nil {
		return nil, e.err
	}
	for {
		name, data, err := e.sse.Next()
		if err != nil {
			switch {
			case e.done:
				e.err = io.EOF
			case errors.Is(err, io.EOF):
				e.err = adaptor.StreamBroken("no [DONE]")
			default:
				e.err = adaptor.TransportError(e.ctx, err)
			}
			return nil, e.err
		}
		ok, err := e.decode(name, data)
		if err != nil {
			e.err = err
			return nil, err
		}
		if ok {
			return &e.ev, nil
		}
	}
}

// decode translates one SSE frame into e.ev; ok is false for frames that produce no event.
func (e *Events) decode(name, data []byte) (ok bool, err error) {
	switch string(name) {
	case "", EventAnswer, EventFastAnswer:
		if adaptor.IsDone(data) {
			e.done = true
			return false, nil
		}
		if e.done {
			return false, nil
		}
		return e.chunk(data)
	case EventError:
		return false, ParseError(200, data)
	}
	return e.named(name, data)
}

// chunk passes the choices of an answer chunk through as they are; FastGPT's empty id, object,
// created and model are dropped because the relay stamps its own.
func (e *Events) chunk(data []byte) (bool, error) {
	s := adaptor.BytesString(data)
	if !gjson.Valid(s) {
		return false, adaptor.UpstreamError(502, "bad_chunk", "malformed stream chunk")
	}
	choices := gjson.Get(s, "choices")
	if !choices.IsArray() {
		if gjson.Get(s, "message").Exists() || gjson.Get(s, "error").Exists() {
			return false, ParseError(200, data) // an error object without its event line
		}
		return false, nil
	}
	if strings.TrimSpace(choices.Raw[1:len(choices.Raw)-1]) == "" {
		return false, nil // no choice, no usage: nothing to say
	}
	e.ev = adaptor.Event{Choices: adaptor.StringBytes(choices.Raw)}
	if !e.started {
		e.started = true
		if !gjson.Get(choices.Raw, "0.delta.role").Exists() {
			e.ev.Choices = e.withRole(choices)
		}
	}
	return true, nil
}

// withRole rebuilds a first chunk that lacks the assistant role (older releases send a bare delta).
func (e *Events) withRole(choices gjson.Result) []byte {
	c := choices.Get("0")
	d := c.Get("delta")
	var tools []byte
	if tc := d.Get("tool_calls"); tc.IsArray() {
		tools = adaptor.StringBytes(tc.Raw)
	}
	return e.b.Choices(adaptor.Delta{
		Content:          d.Get("content").Str,
		ReasoningContent: d.Get("reasoning_content").Str,
		ToolCalls:        tools,
		FinishReason:     c.Get("finish_reason").Str,
	})
}

// named passes any other event through with its raw payload. Payloads are JSON in FastGPT; one that
// is not is dropped, since surfaces embed Data as JSON and it is detail data, not the answer.
func (e *Events) named(name, data []byte) (bool, error) {
	s := adaptor.BytesString(data)
	if !gjson.Valid(s) {
		return false, nil
	}
	e.ev = adaptor.Event{Name: eventName(name), Data: data}
	switch e.ev.Name {
	case EventFlowResponses:
		// The full node list after [DONE]: its sum is the request's usage, replacing running sums.
		if u, ok := NodeUsage(gjson.Parse(s)); ok {
			e.ev.Usage, e.ev.HasUsage = u, true
		}
	case EventFlowNodeResponse:
		// One finished node (newer releases); usage so far is cumulative, as the contract allows.
		addNode(gjson.Parse(s), &e.nodes)
		if e.nodes.Valid() {
			e.nodes.TotalTokens = e.nodes.PromptTokens + e.nodes.CompletionTokens
			e.ev.Usage, e.ev.HasUsage = e.nodes, true
		}
	}
	return true, nil
}

// eventName interns the known names so the hot path does not allocate a string per event.
func eventName(b []byte) string {
	switch string(b) {
	case EventFlowNodeStatus:
		return EventFlowNodeStatus
	case EventFlowNodeResponse:
		return EventFlowNodeResponse
	case EventFlowResponses:
		return EventFlowResponses
	case EventToolCall:
		return EventToolCall
	case EventToolParams:
		return EventToolParams
	case EventToolResponse:
		return EventToolResponse
	case EventUpdateVariables:
		return EventUpdateVariables
	case EventInteractive:
		return EventInteractive
	case EventWorkflowDuration:
		return EventWorkflowDuration
	}
	return string(b)
}

// OnWait lets the pump flush only before a read that may wait for the upstream (adaptor.WaitNotifier).
func (e *Events) OnWait(fn func()) bool { return e.sse.OnWait(fn) }

// Close releases the upstream connection; safe to call more than once.
func (e *Events) Close() error {
	err := e.body.Close()
	if e.cancel != nil {
		e.cancel()
	}
	return err
}

// childFields hold nested node responses (tool calls, plugins, loops, child apps). A parent's own
// token fields never include its children's, so the sum walks them all.
var childFields = [...]string{"childrenResponses", "pluginDetail", "toolDetail", "loopDetail", "parallelDetail", "loopRunDetail"}

// NodeUsage sums LLM tokens over a responseData / flowResponses node list: inputTokens and
// outputTokens, plus toolCallInputTokens / toolCallOutputTokens of tool-call nodes. Nodes from older
// releases carry only a total (tokens, toolCallTokens); it is counted as prompt tokens. Embedding and
// rerank tokens are not LLM usage and are left out. ok is false when no node reported tokens.
func NodeUsage(nodes gjson.Result) (u adaptor.Usage, ok bool) {
	if !nodes.IsArray() {
		return u, false
	}
	nodes.ForEach(func(_, n gjson.Result) bool {
		addNode(n, &u)
		return true
	})
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u, u.Valid()
}

func addNode(n gjson.Result, u *adaptor.Usage) {
	if !n.IsObject() {
		return
	}
	var in, out, total int64
	n.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "inputTokens", "toolCallInputTokens":
			in += v.Int()
		case "outputTokens", "toolCallOutputTokens":
			out += v.Int()
		case "tokens", "toolCallTokens":
			total += v.Int()
		default:
			for _, f := range childFields {
				if k.Str == f {
					v.ForEach(func(_, c gjson.Result) bool {
						addNode(c, u)
						return true
					})
					break
				}
			}
		}
		return true
	})
	if in == 0 && out == 0 {
		in = total
	}
	u.PromptTokens += int(in)
	u.CompletionTokens += int(out)
}

var _ adaptor.Events = (*Events)(nil)
