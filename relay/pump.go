package relay

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"relay/adaptor"
)

// Framer writes one surface's stream framing. The pump calls it for every event, then flushes.
type Framer interface {
	// Chunk writes an OpenAI chunk given its choices; content is choices[0].delta.content.
	Chunk(choices []byte, content string) error
	// Named writes (or drops) a named pass-through event.
	Named(name string, data []byte) error
	// End writes the stream's end after the upstream's real end signal. finish is the last finish reason
	// seen ("" when the upstream sent none).
	End(usage adaptor.Usage, finish string) error
	// Fail writes an error after the stream started.
	Fail(e *adaptor.Error) error
}

// PumpResult is what a stream produced.
type PumpResult struct {
	TTFB   time.Duration
	Usage  adaptor.Usage
	Finish string
	// Answer is the answer text (capped at the configured size). It is the caller's: it grows with the
	// answer rather than coming from a pool, so an open stream holds what it has answered so far, not a
	// buffer sized by the largest answers that went through lately (the pooled 4 KiB buffers were 4 KiB of
	// every open stream's heap in BenchmarkOpenStreamMemory).
	Answer    []byte
	Truncated bool
	Err       *adaptor.Error
}

// Pump copies events to the framer until the upstream ends or fails, flushing what was written before
// each wait for the upstream. Client disconnect surfaces as a write error or a cancelled upstream read;
// either ends the pump and the caller closes the events, which cancels the upstream. w is what the pump
// flushes (when it is an http.Flusher) and writes keep-alive comments to: the response the framer
// writes into, or io.Discard when the surface frames the answer some other way. start is the request's
// start time.
func (co *Core) Pump(events adaptor.Events, f Framer, w io.Writer, req *adaptor.Request, start time.Time) PumpResult {
	flusher, _ := w.(http.Flusher)
	// Flush when the relay is about to wait for the upstream, not after every chunk: events that already
	// arrived together leave in one write syscall, with no added latency. Events that cannot tell when
	// they wait are flushed chunk by chunk.
	ka := newKeepAlive(co.keepAlive, w, flusher)
	defer ka.stop()
	flushOnWait := false
	if n, ok := events.(adaptor.WaitNotifier); ok && flusher != nil {
		flushOnWait = n.OnWait(ka.flush) // called inside Next, while a keep-alive may fire
	}
	var res PumpResult
	for {
		ka.arm()
		ev, err := events.Next()
		ka.disarm()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			res.Err = adaptor.AsError(err)
			if res.TTFB == 0 {
				res.TTFB = time.Since(start)
			}
			_ = f.Fail(res.Err)
			flush(flusher)
			return res
		}
		if ev.HasUsage {
			res.Usage = ev.Usage
		}
		var werr error
		switch {
		case ev.Name != "":
			werr = f.Named(ev.Name, ev.Data)
		case isEmptyChoices(ev.Choices):
			continue // a usage-only chunk; usage goes out at the end if the client asked for it
		default:
			content, finish := choiceText(ev.Choices)
			if finish != "" && finish != res.Finish {
				res.Finish = strings.Clone(finish) // the event's bytes are reused by the next Next
			}
			if len(res.Answer)+len(content) <= co.maxAnswer {
				res.Answer = append(res.Answer, content...)
			} else {
				res.Truncated = true
			}
			werr = f.Chunk(ev.Choices, content)
		}
		if res.TTFB == 0 {
			res.TTFB = time.Since(start)
		}
		if werr != nil {
			res.Err = clientGone()
			return res
		}
		if !flushOnWait {
			flush(flusher)
		}
	}
	if !res.Usage.Valid() {
		// Estimated from the kept answer; a truncated answer still gives a lower bound.
		res.Usage = adaptor.EstimateUsage(req.Body, adaptor.BytesString(res.Answer))
	}
	if err := f.End(res.Usage, res.Finish); err != nil {
		res.Err = clientGone()
	}
	if res.TTFB == 0 {
		res.TTFB = time.Since(start)
	}
	flush(flusher)
	return res
}

// keepAliveComment is an SSE comment: clients ignore it, proxies and read timeouts see traffic.
var keepAliveComment = []byte(": keep-alive\n\n")

// keepAlive writes keepAliveComment when the upstream has been silent for every, so that proxies and
// clients with read timeouts keep a stream open while a model thinks. It is armed only while the pump
// waits for the next event, when the pump itself writes nothing but the flush its wait hook makes (under
// the same lock); a timer that fires just as the wait ends finds it disarmed and writes nothing.
type keepAlive struct {
	w       io.Writer
	f       http.Flusher
	silence *adaptor.SilenceTimer // nil: off
	mu      sync.Mutex
	armed   bool
}

func newKeepAlive(every time.Duration, w io.Writer, f http.Flusher) *keepAlive {
	k := &keepAlive{w: w, f: f}
	if every > 0 {
		k.silence = adaptor.NewSilenceTimer(every, k.fire) // fires again while the silence lasts
	}
	return k
}

func (k *keepAlive) arm() {
	if k.silence == nil {
		return
	}
	k.mu.Lock()
	k.armed = true
	k.mu.Unlock()
	k.silence.Begin()
}

func (k *keepAlive) disarm() {
	if k.silence == nil {
		return
	}
	k.silence.End()
	k.mu.Lock() // waits out a keep-alive being written
	k.armed = false
	k.mu.Unlock()
}

func (k *keepAlive) fire() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.armed {
		if _, err := k.w.Write(keepAliveComment); err == nil {
			flush(k.f)
		}
	}
}

// flush flushes the response from inside the pump's wait for the next event, excluding a keep-alive
// write at the same moment.
func (k *keepAlive) flush() {
	k.mu.Lock()
	flush(k.f)
	k.mu.Unlock()
}

func (k *keepAlive) stop() {
	if k.silence != nil {
		k.disarm()
		k.silence.Stop()
	}
}

func flush(f http.Flusher) {
	if f != nil {
		f.Flush()
	}
}

func clientGone() *adaptor.Error {
	return &adaptor.Error{Status: 499, Type: adaptor.TypeInvalidRequest, Code: "client_closed", Message: "client closed the connection"}
}

var (
	choiceFields = []string{"delta", "finish_reason"}
	deltaFields  = []string{"content"}
)

// choiceText reads choices[0].delta.content and choices[0].finish_reason (each "" when absent or not a
// string) in one pass over each level.
func choiceText(choices []byte) (content, finish string) {
	var f [2][]byte
	if !adaptor.FirstObjectFields(choices, choiceFields, f[:]) {
		return "", ""
	}
	var d [1][]byte
	if adaptor.ObjectFields(f[0], deltaFields, d[:]) {
		content = adaptor.StringValue(d[0])
	}
	return content, adaptor.StringValue(f[1])
}

func isEmptyChoices(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r', '[', ']':
		default:
			return false
		}
	}
	return true
}
