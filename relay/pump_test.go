package relay

import (
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"relay/adaptor"
)

// burstEvents yields bursts of events; before the first event of each burst it "waits for the
// upstream", calling the pump's wait hook as adaptor readers do before a read that may block.
type burstEvents struct {
	bursts, size int
	i            int
	wait         func()
	ev           adaptor.Event
}

func (b *burstEvents) OnWait(fn func()) bool { b.wait = fn; return true }

func (b *burstEvents) Next() (*adaptor.Event, error) {
	if b.i == b.bursts*b.size {
		if b.wait != nil {
			b.wait() // reading the end of the body waits too
		}
		return nil, io.EOF
	}
	if b.i%b.size == 0 && b.wait != nil {
		b.wait()
	}
	b.i++
	b.ev = adaptor.Event{Choices: []byte(`[{"index":0,"delta":{"content":"w "},"finish_reason":null}]`)}
	return &b.ev, nil
}

func (b *burstEvents) Close() error { return nil }

type countingFlusher struct {
	*httptest.ResponseRecorder
	flushes int
}

func (c *countingFlusher) Flush() { c.flushes++; c.ResponseRecorder.Flush() }

// Events that say when they wait are flushed once per wait (plus once at the end), not once per chunk;
// others chunk by chunk.
func TestPumpFlushesOncePerWait(t *testing.T) {
	co := &Core{maxAnswer: 1 << 20}
	req := &adaptor.Request{Model: "m", Body: []byte(`{"model":"m","messages":[]}`)}
	run := func(events adaptor.Events) int {
		w := &countingFlusher{ResponseRecorder: httptest.NewRecorder()}
		f := newOpenAIFramer(w, req)
		res := co.Pump(events, f, w, req, time.Now())
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return w.flushes
	}
	if n := run(&burstEvents{bursts: 3, size: 5}); n != 3+1+1 {
		t.Fatalf("3 bursts of 5 flushed %d times, want 5 (3 waits, the wait for the end, the end)", n)
	}
	plain := &countingEvents{n: 15, ev: adaptor.Event{Choices: []byte(`[{"index":0,"delta":{"content":"w "},"finish_reason":null}]`)}}
	if n := run(plain); n != 15+1 {
		t.Fatalf("15 events without a wait hook flushed %d times, want 16", n)
	}
}

// The pump keeps the streamed answer up to maxAnswer bytes: whole chunks, in order; a chunk that would
// pass the cap is left out and the answer is marked truncated. Each stream's answer is its own: a
// later stream does not write into an earlier one's.
func TestPumpKeepsAnswer(t *testing.T) {
	co := &Core{maxAnswer: 10}
	req := &adaptor.Request{Model: "m", Body: []byte(`{"model":"m","messages":[]}`)}
	pump := func(n int) PumpResult {
		w := httptest.NewRecorder()
		ev := &countingEvents{n: n, ev: adaptor.Event{Choices: []byte(`[{"index":0,"delta":{"content":"abc"},"finish_reason":null}]`)}}
		res := co.Pump(ev, newOpenAIFramer(w, req), w, req, time.Now())
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res
	}
	short := pump(2)
	if string(short.Answer) != "abcabc" || short.Truncated {
		t.Fatalf("2 chunks: answer %q truncated %v, want %q and false", short.Answer, short.Truncated, "abcabc")
	}
	long := pump(5)
	if string(long.Answer) != "abcabcabc" || !long.Truncated {
		t.Fatalf("5 chunks over a 10-byte cap: answer %q truncated %v, want %q and true", long.Answer, long.Truncated, "abcabcabc")
	}
	if string(short.Answer) != "abcabc" {
		t.Fatalf("the first stream's answer changed to %q after a second stream", short.Answer)
	}
}
