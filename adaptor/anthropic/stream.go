package anthropic

import (
	"context"
	"errors"
	"io"
	"strconv"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// Events decodes an Anthropic Messages SSE stream into OpenAI chunks. The stream's real end is
// message_stop; a body that ends before it is a broken stream.
type Events struct {
	ctx  context.Context
	body io.ReadCloser
	sse  *adaptor.SSEReader
	cb   adaptor.ChunkBuilder
	ev   adaptor.Event
	// err is sticky: io.EOF after message_stop, or the error that ended the stream.
	err error

	// tools maps Anthropic content block indexes to OpenAI tool call indexes (which count tool calls
	// only); ntools is the number of tool calls seen.
	tools  []blockTool
	ntools int
	tbuf   []byte

	input, output int
}

type blockTool struct {
	block int64
	tool  int
}

// NewEvents reads Anthropic events from body.
func NewEvents(ctx context.Context, body io.ReadCloser) *Events {
	return &Events{ctx: ctx, body: body, sse: adaptor.NewSSEReader(body)}
}

// Next returns the next chunk, io.EOF after message_stop, or an *adaptor.Error.
func (e *Events) Next() (*adaptor.Event, error) {
	if e.err != nil {
		return nil, e.err
	}
	for {
		name, data, err := e.sse.Next()
		if err != nil {
			switch {
			case e.ctx.Err() != nil:
				e.err = adaptor.TransportError(e.ctx, e.ctx.Err())
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				e.err = adaptor.StreamBroken("no message_stop")
			default:
				e.err = adaptor.TransportError(e.ctx, err)
			}
			return nil, e.err
		}
		ev, err := e.decode(name, data)
		if err != nil {
			e.err = err
			return nil, err
		}
		if ev != nil {
			return ev, nil
		}
	}
}

// OnWait lets the pump flush only before a read that may wait for the upstream (adaptor.WaitNotifier).
func (e *Events) OnWait(fn func()) bool { return e.sse.OnWait(fn) }

// Close closes the upstream body.
func (e *Events) Close() error { return e.body.Close() }

// decode translates one SSE event; it returns a nil event for events that carry nothing for the client.
func (e *Events) decode(name, data []byte) (*adaptor.Event, error) {
	s := adaptor.BytesString(data)
	if !gjson.Valid(s) {
		return nil, adaptor.UpstreamError(502, "bad_chunk", "malformed stream event")
	}
	typ := adaptor.BytesString(name)
	if typ == "" {
		typ = gjson.Get(s, "type").Str
	}
	switch typ {
	case "content_block_delta":
		d := gjson.Get(s, "delta")
		switch d.Get("type").Str {
		case "text_delta":
			if t := d.Get("text").Str; t != "" {
				return e.chunk(adaptor.Delta{Content: t}), nil
			}
		case "input_json_delta":
			pj := d.Get("partial_json")
			if pj.Type != gjson.String || pj.Raw == `""` {
				return nil, nil
			}
			tool := e.toolFor(gjson.Get(s, "index").Int())
			if tool < 0 {
				return nil, nil // a delta for a block that is not a tool call
			}
			b := append(e.tbuf[:0], `[{"index":`...)
			b = strconv.AppendInt(b, int64(tool), 10)
			b = append(b, `,"function":{"arguments":`...)
			b = append(b, pj.Raw...) // already a JSON string literal
			b = append(b, "}}]"...)
			e.tbuf = b
			return e.chunk(adaptor.Delta{ToolCalls: b}), nil
		case "thinking_delta":
			if t := d.Get("thinking").Str; t != "" {
				return e.chunk(adaptor.Delta{ReasoningContent: t}), nil
			}
		}
		return nil, nil // signature_delta, citations and the like
	case "content_block_start":
		return e.blockStart(s), nil
	case "message_delta":
		ev := &e.ev
		*ev = adaptor.Event{}
		if u := gjson.Get(s, "usage"); u.IsObject() {
			// output_tokens is cumulative: the last value wins. Newer API versions repeat the input
			// counts here too.
			if o := u.Get("output_tokens"); o.Exists() {
				e.output = int(o.Int())
			}
			if u.Get("input_tokens").Exists() {
				e.input = parseUsage(u).PromptTokens
			}
			ev.Usage = adaptor.Usage{PromptTokens: e.input, CompletionTokens: e.output, TotalTokens: e.input + e.output}
			ev.HasUsage = true
		}
		if stop := gjson.Get(s, "delta.stop_reason").Str; stop != "" {
			ev.Choices = e.cb.Choices(adaptor.Delta{FinishReason: finishReason(stop)})
		}
		if !ev.HasUsage && ev.Choices == nil {
			return nil, nil
		}
		return ev, nil
	case "message_start":
		// input_tokens is real here; output_tokens is a placeholder the first message_delta replaces.
		e.input = parseUsage(gjson.Get(s, "message.usage")).PromptTokens
		if e.cb.RoleSent() {
			return nil, nil
		}
		return e.chunk(adaptor.Delta{}), nil // the role chunk
	case "message_stop":
		e.err = io.EOF
		return nil, io.EOF
	case "error":
		return nil, streamError(data)
	}
	return nil, nil // ping, content_block_stop, unknown events
}

func (e *Events) chunk(d adaptor.Delta) *adaptor.Event {
	e.ev = adaptor.Event{Choices: e.cb.Choices(d)}
	return &e.ev
}

// blockStart handles content_block_start: a tool_use block opens an OpenAI tool call whose first delta
// carries id, type and name; text and thinking blocks may carry initial text.
func (e *Events) blockStart(s string) *adaptor.Event {
	blk := gjson.Get(s, "content_block")
	switch blk.Get("type").Str {
	case "text":
		if t := blk.Get("text").Str; t != "" {
			return e.chunk(adaptor.Delta{Content: t})
		}
	case "thinking":
		if t := blk.Get("thinking").Str; t != "" {
			return e.chunk(adaptor.Delta{ReasoningContent: t})
		}
	case "tool_use":
		tool := e.ntools
		e.ntools++
		e.tools = append(e.tools, blockTool{block: gjson.Get(s, "index").Int(), tool: tool})
		input := blk.Get("input")
		// The input is normally {} with the JSON following in input_json_delta; a non-empty one
		// is passed as the first arguments fragment.
		hasKeys := false
		input.ForEach(func(_, _ gjson.Result) bool { hasKeys = true; return false })
		args := ""
		if input.IsObject() && hasKeys {
			args = input.Raw
		}
		b := append(e.tbuf[:0], '[')
		b = adaptor.AppendToolCallStart(b, tool, blk.Get("id").Str, blk.Get("name").Str, args)
		b = append(b, ']')
		e.tbuf = b
		return e.chunk(adaptor.Delta{ToolCalls: b})
	}
	return nil
}

// toolFor returns the OpenAI tool index of an Anthropic block, or -1.
func (e *Events) toolFor(block int64) int {
	for i := len(e.tools) - 1; i >= 0; i-- {
		if e.tools[i].block == block {
			return e.tools[i].tool
		}
	}
	return -1
}
