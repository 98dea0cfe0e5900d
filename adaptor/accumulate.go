package adaptor

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Accumulator folds a stream of OpenAI chunk events into one chat.completion. It is the one place that
// turns a stream into a non-stream answer: for upstreams that only stream (Spark) and for the core.
type Accumulator struct {
	content   []byte
	reasoning []byte
	tools     []toolCall
	finish    string
	Usage     Usage
	HasUsage  bool
	// Named keeps the last payload of each named pass-through event (FastGPT detail data).
	Named map[string][]byte
}

type toolCall struct {
	index     int64
	id, typ   string
	name      string
	arguments []byte
}

// BytesString views b as a string without copying; b must not change while the string is used.
func BytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// Add folds one event in.
func (a *Accumulator) Add(ev *Event) {
	if ev.HasUsage {
		a.Usage, a.HasUsage = ev.Usage, true
	}
	if ev.Name != "" {
		if a.Named == nil {
			a.Named = map[string][]byte{}
		}
		a.Named[ev.Name] = append([]byte(nil), ev.Data...)
		return
	}
	if len(ev.Choices) == 0 {
		return
	}
	gjson.Parse(BytesString(ev.Choices)).ForEach(func(_, ch gjson.Result) bool {
		if ch.Get("index").Int() != 0 {
			return true // the relay serves n=1; extra choices are not merged into the first
		}
		d := ch.Get("delta")
		if c := d.Get("content"); c.Type == gjson.String {
			a.content = append(a.content, c.Str...)
		}
		if c := d.Get("reasoning_content"); c.Type == gjson.String {
			a.reasoning = append(a.reasoning, c.Str...)
		}
		d.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
			a.addToolDelta(tc)
			return true
		})
		if f := ch.Get("finish_reason"); f.Type == gjson.String && f.Str != "" {
			a.finish = strings.Clone(f.Str)
		}
		return true
	})
}

func (a *Accumulator) addToolDelta(tc gjson.Result) {
	idx := tc.Get("index").Int()
	var t *toolCall
	for i := range a.tools {
		if a.tools[i].index == idx {
			t = &a.tools[i]
		}
	}
	if t == nil {
		a.tools = append(a.tools, toolCall{index: idx, typ: "function"})
		t = &a.tools[len(a.tools)-1]
	}
	// Strings are cloned: gjson's results point into the event's bytes, which the adaptor reuses.
	if v := tc.Get("id").Str; v != "" {
		t.id = strings.Clone(v)
	}
	if v := tc.Get("type").Str; v != "" {
		t.typ = strings.Clone(v)
	}
	if v := tc.Get("function.name").Str; v != "" {
		t.name = strings.Clone(t.name + v) // "" + v may return v itself
	}
	t.arguments = append(t.arguments, tc.Get("function.arguments").Str...)
}

// Text is the answer so far.
func (a *Accumulator) Text() string { return string(a.content) }

// FinishReason is the last finish reason seen ("" when none).
func (a *Accumulator) FinishReason() string { return a.finish }

// Completion renders the accumulated answer as an OpenAI chat.completion. When the stream carried no
// usage, usage must already have been filled in by the caller (see EstimateUsage).
func (a *Accumulator) Completion(id string, created int64, model string) *Completion {
	finish := a.finish
	if finish == "" {
		finish = "stop"
	}
	b := make([]byte, 0, 256+len(a.content)+len(a.reasoning))
	b = append(b, `{"id":`...)
	b = AppendJSONString(b, id)
	b = append(b, `,"object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = AppendJSONString(b, model)
	b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	if len(a.content) == 0 && len(a.tools) > 0 {
		b = append(b, "null"...)
	} else {
		b = AppendJSONString(b, BytesString(a.content))
	}
	if len(a.reasoning) > 0 {
		b = append(b, `,"reasoning_content":`...)
		b = AppendJSONString(b, BytesString(a.reasoning))
	}
	if len(a.tools) > 0 {
		b = append(b, `,"tool_calls":[`...)
		for i, t := range a.tools {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = AppendJSONString(b, t.id)
			b = append(b, `,"type":`...)
			b = AppendJSONString(b, t.typ)
			b = append(b, `,"function":{"name":`...)
			b = AppendJSONString(b, t.name)
			b = append(b, `,"arguments":`...)
			b = AppendJSONString(b, BytesString(t.arguments))
			b = append(b, "}}"...)
		}
		b = append(b, ']')
	}
	b = append(b, `,"refusal":null},"logprobs":null,"finish_reason":`...)
	b = AppendJSONString(b, finish)
	b = append(b, `}],"usage":`...)
	b = AppendUsage(b, a.Usage)
	b = append(b, '}')
	return &Completion{Body: b, Usage: a.Usage, Extra: a.Named}
}

// Collect drains events into a completion. The upstream must reach its real end signal: any error from
// Next other than io.EOF is returned. Prompt usage is estimated from reqBody when the stream had none.
func Collect(events Events, req *Request, id string, created int64) (*Completion, error) {
	defer events.Close()
	var acc Accumulator
	for {
		ev, err := events.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		acc.Add(ev)
	}
	if !acc.HasUsage || !acc.Usage.Valid() {
		acc.Usage = EstimateUsage(req.Body, acc.Text())
	}
	return acc.Completion(id, created, req.Model), nil
}

// StringBytes views s as bytes without copying; the bytes must not be modified.
func StringBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
