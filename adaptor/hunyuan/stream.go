package hunyuan

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// events translates Hunyuan's SSE frames. There is no [DONE]: the frame with a non-empty FinishReason is
// the end signal, and a close before it is a broken stream. One Event, ChunkBuilder and tool-call buffer
// are reused for the whole stream so a chunk costs no allocation beyond gjson's string unescaping.
type events struct {
	ctx   context.Context
	body  io.ReadCloser
	sse   *adaptor.SSEReader
	reqID string // from the X-TC-RequestId header; frames do not carry it
	ev    adaptor.Event
	cb    adaptor.ChunkBuilder
	calls []call
	tcBuf []byte
	done  bool
	err   error
}

// call is one streamed tool call; its position in events.calls is its OpenAI index.
type call struct {
	id    string
	named bool
}

func newEvents(ctx context.Context, body io.ReadCloser, requestID string) *events {
	return &events{ctx: ctx, body: body, sse: adaptor.NewSSEReader(body), reqID: requestID}
}

// Next returns the next chunk, io.EOF after the final frame, or an *adaptor.Error (which it keeps
// returning).
func (e *events) Next() (*adaptor.Event, error) {
	if e.err != nil {
		return nil, e.err
	}
	if e.done {
		return nil, io.EOF
	}
	for {
		_, data, err := e.sse.Next()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				e.err = adaptor.StreamBroken("hunyuan closed the stream before the frame with FinishReason")
			case e.ctx.Err() != nil:
				e.err = adaptor.TransportError(e.ctx, err) // client gone (499) or deadline (504)
			default:
				e.err = adaptor.StreamBroken("reading hunyuan stream: " + err.Error()) // dropped mid-stream
			}
			return nil, e.err
		}
		ev, err := e.decode(data)
		if errors.Is(err, io.EOF) {
			e.done = true
			return nil, io.EOF
		}
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
func (e *events) OnWait(fn func()) bool { return e.sse.OnWait(fn) }

// Close releases the upstream connection.
func (e *events) Close() error { return e.body.Close() }

// decode translates one frame. It returns (nil, nil) for a frame that says nothing new.
func (e *events) decode(data []byte) (*adaptor.Event, error) {
	s := adaptor.BytesString(data)
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == '\r' || s[0] == '\n') {
		s = s[1:]
	}
	if s == "" {
		return nil, nil
	}
	if adaptor.IsDone(adaptor.StringBytes(s)) {
		return nil, io.EOF // not in the native protocol, but unambiguous
	}
	if s[0] != '{' || !gjson.Valid(s) {
		return nil, adaptor.UpstreamError(502, "bad_chunk", "hunyuan sent a malformed stream frame")
	}
	var choices, usage, errMsg, resp gjson.Result
	gjson.Parse(s).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "Choices":
			choices = v
		case "Usage":
			usage = v
		case "ErrorMsg":
			errMsg = v
		case "Response":
			resp = v
		}
		return true
	})
	if errMsg.IsObject() && (errMsg.Get("Code").Int() != 0 || errMsg.Get("Msg").String() != "") {
		return nil, streamError(errMsg, e.reqID)
	}
	if r := resp.Get("Error"); r.IsObject() {
		return nil, apiError(r.Get("Code").String(), r.Get("Message").String(), resp.Get("RequestId").String())
	}

	var d adaptor.Delta
	c := choices.Get("0")
	c.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "Delta":
			v.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "Content":
					d.Content = v.String()
				case "ReasoningContent":
					d.ReasoningContent = v.String()
				case "ToolCalls":
					d.ToolCalls = e.toolDeltas(v)
				}
				return true
			})
		case "FinishReason":
			d.FinishReason = finishReason(v.String())
		}
		return true
	})
	if d.Content == "" && d.ReasoningContent == "" && d.ToolCalls == nil && d.FinishReason == "" && e.cb.RoleSent() {
		return nil, nil // usage is cumulative, so skipping an empty frame loses nothing
	}
	e.ev = adaptor.Event{Choices: e.cb.Choices(d)}
	if usage.IsObject() {
		e.ev.Usage, e.ev.HasUsage = parseUsage(usage), true
	}
	if d.FinishReason != "" {
		e.done = true
	}
	return &e.ev, nil
}

// toolDeltas turns Delta.ToolCalls fragments into OpenAI tool_calls deltas. Fragments are keyed by Id
// (Tencent says to merge by Id); the first fragment of a call carries its name, later ones argument
// pieces. It returns nil when the fragments add nothing.
func (e *events) toolDeltas(tcs gjson.Result) []byte {
	buf := append(e.tcBuf[:0], '[')
	n := 0
	tcs.ForEach(func(_, tc gjson.Result) bool {
		var id, name, args string
		var index gjson.Result
		tc.ForEach(func(k, v gjson.Result) bool { // one pass over the fragment
			switch k.Str {
			case "Id":
				id = v.String()
			case "Index":
				index = v
			case "Function":
				v.ForEach(func(k, v gjson.Result) bool {
					switch k.Str {
					case "Name":
						name = v.String()
					case "Arguments":
						args = v.String()
					}
					return true
				})
			}
			return true
		})
		idx, isNew := e.callIndex(id, index)
		sendName := name != "" && !e.calls[idx].named
		if !isNew && !sendName && args == "" {
			return true
		}
		if n > 0 {
			buf = append(buf, ',')
		}
		n++
		switch {
		case isNew:
			buf = adaptor.AppendToolCallStart(buf, idx, e.calls[idx].id, name, args)
			e.calls[idx].named = name != ""
		case sendName:
			buf = adaptor.AppendToolCallDelta(buf, idx, name, args)
			e.calls[idx].named = true
		default:
			buf = adaptor.AppendToolCallDelta(buf, idx, "", args)
		}
		return true
	})
	buf = append(buf, ']')
	e.tcBuf = buf
	if n == 0 {
		return nil
	}
	return buf
}

// callIndex finds the call a fragment belongs to: by Id, else by Index, else the latest call.
func (e *events) callIndex(id string, index gjson.Result) (int, bool) {
	if id != "" {
		for i := range e.calls {
			if e.calls[i].id == id {
				return i, false
			}
		}
	} else if len(e.calls) > 0 {
		if i := int(index.Int()); index.Exists() && i >= 0 && i < len(e.calls) {
			return i, false
		}
		return len(e.calls) - 1, false
	} else {
		id = adaptor.NewToolCallID()
	}
	e.calls = append(e.calls, call{id: strings.Clone(id)})
	return len(e.calls) - 1, true
}
