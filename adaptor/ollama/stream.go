package ollama

import (
	"context"
	"errors"
	"io"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

const codeStreamBroken = "upstream_stream_broken"

// events translates Ollama's NDJSON objects into OpenAI chunks. One Event, ChunkBuilder and tool-call
// buffer are reused for the whole stream, so a text chunk costs no allocation beyond gjson unescaping a
// content string that has JSON escapes.
type events struct {
	ctx   context.Context
	body  io.ReadCloser
	lines *adaptor.LineReader
	ev    adaptor.Event
	cb    adaptor.ChunkBuilder
	tcBuf []byte
	// calls counts the tool calls seen so far; each call Ollama sends is whole, and gets the next index.
	calls int
	// created is the done object's created_at in Unix seconds (for non-stream completions).
	created int64
	// primed holds the first event when Stream read it ahead.
	primed *adaptor.Event
	done   bool
	err    error
}

func (a *Adaptor) newEvents(ctx context.Context, body io.ReadCloser) *events {
	return &events{ctx: ctx, body: body, lines: adaptor.NewLineReader(body)}
}

// prime reads the first event ahead, so an error in the first line fails the call before it streams.
func (e *events) prime() error {
	ev, err := e.Next()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	e.primed = ev
	return nil
}

// Next returns the next chunk, io.EOF after the object with done:true, or an *adaptor.Error (which it
// keeps returning).
func (e *events) Next() (*adaptor.Event, error) {
	if ev := e.primed; ev != nil {
		e.primed = nil
		return ev, nil
	}
	if e.err != nil {
		return nil, e.err
	}
	if e.done {
		return nil, io.EOF
	}
	for {
		line, err := e.lines.Next()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				e.err = adaptor.StreamBroken("ollama closed the stream before the object with done:true")
			case e.ctx.Err() != nil:
				e.err = adaptor.TransportError(e.ctx, err) // client gone (499) or deadline (504)
			default:
				e.err = adaptor.StreamBroken("reading ollama stream: " + err.Error())
			}
			return nil, e.err
		}
		ev, err := e.decode(line)
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
func (e *events) OnWait(fn func()) bool { return e.lines.OnWait(fn) }

// Close releases the upstream connection; safe to call more than once.
func (e *events) Close() error { return e.body.Close() }

// decode translates one NDJSON object. It returns (nil, nil) for an object that says nothing new.
func (e *events) decode(line []byte) (*adaptor.Event, error) {
	s := adaptor.BytesString(line)
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == '\r') {
		s = s[1:]
	}
	if s == "" {
		return nil, nil
	}
	if s[0] != '{' || !gjson.Valid(s) {
		return nil, adaptor.UpstreamError(502, "bad_chunk", "ollama sent a malformed NDJSON line")
	}
	var msg, errv, done, reason, promptCount, evalCount, created gjson.Result
	gjson.Parse(s).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "message":
			msg = v
		case "error":
			errv = v
		case "done":
			done = v
		case "done_reason":
			reason = v
		case "prompt_eval_count":
			promptCount = v
		case "eval_count":
			evalCount = v
		case "created_at":
			created = v
		}
		return true
	})
	// An error line has no done; check it first (wire doc §5).
	if errv.Exists() && errv.Type != gjson.Null {
		return nil, streamError(errv)
	}
	var d adaptor.Delta
	hasCalls := false
	msg.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "content":
			d.Content = v.Str
		case "thinking":
			d.ReasoningContent = v.Str
		case "tool_calls":
			d.ToolCalls = e.toolDeltas(v)
			hasCalls = d.ToolCalls != nil
		}
		return true
	})
	final := done.Type == gjson.True
	if final {
		switch {
		case e.calls > 0:
			d.FinishReason = "tool_calls"
		case reason.Str == "length":
			d.FinishReason = "length"
		default: // stop, load, unload, or an older server without done_reason
			d.FinishReason = "stop"
		}
		e.done = true
		e.created = parseCreated(created.Str)
	} else if d.Content == "" && d.ReasoningContent == "" && !hasCalls {
		return nil, nil
	}
	e.ev = adaptor.Event{Choices: e.cb.Choices(d)}
	if final && (promptCount.Exists() || evalCount.Exists()) {
		p, c := int(promptCount.Int()), int(evalCount.Int())
		e.ev.Usage, e.ev.HasUsage = adaptor.Usage{PromptTokens: p, CompletionTokens: c, TotalTokens: p + c}, true
	}
	return &e.ev, nil
}

// toolDeltas turns message.tool_calls into OpenAI tool_calls deltas. Ollama sends each call whole, with
// its arguments as a JSON object and (usually) no id: every call gets the next index, an id (generated
// when absent) and its arguments as one JSON string. It returns nil when there are no calls.
func (e *events) toolDeltas(tcs gjson.Result) []byte {
	if !tcs.IsArray() {
		return nil
	}
	buf := append(e.tcBuf[:0], '[')
	n := 0
	tcs.ForEach(func(_, tc gjson.Result) bool {
		if !tc.IsObject() {
			return true
		}
		var id, fn gjson.Result
		tc.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "id":
				id = v
			case "function":
				fn = v
			}
			return true
		})
		var name, args gjson.Result
		fn.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "name":
				name = v
			case "arguments":
				args = v
			}
			return true
		})
		if n > 0 {
			buf = append(buf, ',')
		}
		n++
		callID := id.Str // "" unless a non-empty string
		if callID == "" {
			callID = adaptor.NewToolCallID()
		}
		arguments := "{}"
		switch {
		case args.Type == gjson.String:
			arguments = args.Str
		case args.Exists() && args.Type != gjson.Null:
			arguments = args.Raw
		}
		buf = adaptor.AppendToolCallStart(buf, e.calls, callID, name.String(), arguments)
		e.calls++
		return true
	})
	buf = append(buf, ']')
	e.tcBuf = buf
	if n == 0 {
		return nil
	}
	return buf
}
