package adaptor

import (
	"bufio"
	"io"
)

// WaitNotifier is implemented by Events that read their upstream through a buffer. OnWait registers fn
// to be called before each read that may wait for the upstream, and reports whether it will be: the
// pump then flushes what it wrote only at those moments instead of after every chunk, so a burst of
// events that already arrived leaves the relay in one write, and nothing written is held back while the
// relay waits.
type WaitNotifier interface {
	OnWait(fn func()) bool
}

// waitReader calls before ahead of every read from the upstream. It sits under the stream's bufio
// reader, which reads only when its buffer cannot serve a line, so that is when the relay may wait.
type waitReader struct {
	r      io.Reader
	before func()
}

func (w *waitReader) Read(p []byte) (int, error) {
	if w.before != nil {
		// A reader that peeked into the stream first may still hold bytes: reading those does not wait.
		if b, ok := w.r.(*bufio.Reader); !ok || b.Buffered() == 0 {
			w.before()
		}
	}
	return w.r.Read(p)
}
