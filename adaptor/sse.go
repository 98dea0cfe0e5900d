package adaptor

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// SSEReader decodes a Server-Sent Events stream. Lines end in "\r\n", "\n" or a lone "\r", as the SSE
// spec allows, and may be up to MaxLine long (a 1 MiB data line passes); buffers are reused, so what
// Next returns is only valid until the next call.
type SSEReader struct {
	lines lineReader
	data  []byte
	event []byte
}

// StreamBufferSize is the read buffer of an open stream. It is small so that idle streams stay cheap
// (a thousand open streams hold 4 MiB); a longer line grows through the reader's scratch buffer.
const StreamBufferSize = 4 << 10

// NewSSEReader wraps r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{lines: newLineReader(r, true)}
}

// OnWait makes the reader call fn before each read that may wait for the upstream (WaitNotifier).
func (s *SSEReader) OnWait(fn func()) bool { s.lines.wait.before = fn; return true }

// MaxLine bounds one line of an upstream stream, as MaxAnswerBody bounds a whole non-stream answer: an
// upstream that never ends a line cannot make the relay buffer without end.
const MaxLine = MaxAnswerBody

func errLineTooLong() *Error {
	return UpstreamError(502, "upstream_line_too_long", "a line of the upstream's stream is longer than 64 MiB")
}

// lineReader reads lines of up to MaxLine bytes. A line ends at "\n" (a "\r" before it is trimmed) and, when
// bareCR is set, at a lone "\r" too. A line that fits the buffer is returned in place; a longer one is
// gathered in line, which is reused.
type lineReader struct {
	r      *bufio.Reader
	wait   *waitReader // under r
	line   []byte
	bareCR bool
	// skipLF is set when a line ended in "\r" at the end of the buffered data: a "\n" read next belongs
	// to that line ending. (Waiting for the byte after the "\r" instead would hold the line back.)
	skipLF bool
}

func newLineReader(r io.Reader, bareCR bool) lineReader {
	w := &waitReader{r: r}
	return lineReader{r: bufio.NewReaderSize(w, StreamBufferSize), wait: w, bareCR: bareCR}
}

// next returns the next line without its line ending; the slice is valid until the next call. A last
// line without a line ending is returned before io.EOF.
func (l *lineReader) next() ([]byte, error) {
	if l.skipLF {
		l.skipLF = false
		b, err := l.r.Peek(1)
		if err != nil {
			return nil, err // nothing is buffered: the stream ended (or failed) after the "\r"
		}
		if b[0] == '\n' {
			l.r.Discard(1)
		}
	}
	long := false // the line so far is in l.line
	scanned := 0  // buffered bytes already searched for a line end
	for {
		if n := l.r.Buffered(); n > scanned {
			b, _ := l.r.Peek(n)
			if i := l.index(b[scanned:]); i >= 0 {
				i += scanned
				line, adv := b[:i], i+1
				if b[i] == '\r' {
					if adv == n {
						l.skipLF = true
					} else if b[adv] == '\n' {
						adv++
					}
				}
				if long {
					l.line = append(l.line, line...)
					line = l.line
				}
				l.r.Discard(adv) // b stays valid: discarding buffered bytes reads nothing
				return trimCR(line), nil
			}
			scanned = n
			if n == l.r.Size() { // a full buffer and no line end yet: keep it aside and read on
				if !long {
					l.line, long = l.line[:0], true
				}
				if len(l.line)+n > MaxLine {
					return nil, errLineTooLong()
				}
				if need := len(l.line) + n; need > cap(l.line) {
					// Double, as append grows large slices by only a quarter: a 64 MiB line would
					// otherwise allocate five times its size on the way.
					l.line = append(make([]byte, 0, min(max(need, 2*cap(l.line)), MaxLine)), l.line...)
				}
				l.line = append(l.line, b...)
				l.r.Discard(n)
				scanned = 0
			}
		}
		if _, err := l.r.Peek(scanned + 1); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			// The stream ended or failed; a last line without a line ending is still a line.
			rest, _ := l.r.Peek(l.r.Buffered())
			l.r.Discard(len(rest))
			if long {
				l.line = append(l.line, rest...)
				rest = l.line
			}
			if errors.Is(err, io.EOF) && len(rest) > 0 {
				return trimCR(rest), nil
			}
			return nil, err
		}
	}
}

// index returns the position of the first line end in b, or -1.
func (l *lineReader) index(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	i := bytes.IndexByte(b, '\n')
	if !l.bareCR || i == 0 {
		return i
	}
	if i > 0 {
		b = b[:i]
	}
	if j := bytes.IndexByte(b, '\r'); j >= 0 {
		return j
	}
	return i
}

// trimCR drops the "\r" of a "\r\n" line ending (only possible when bare CRs do not end lines).
func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// Next returns the next event's name (empty when it had no event: line) and data (data: lines joined
// by \n). It skips comments and events without data. It returns io.EOF when the stream ends; an event
// cut off by the end of the stream is still returned first.
func (s *SSEReader) Next() (event, data []byte, err error) {
	s.data = s.data[:0]
	s.event = s.event[:0]
	hasData := false
	for {
		line, err := s.lines.next()
		if err != nil {
			if errors.Is(err, io.EOF) && hasData {
				return s.event, s.data, nil
			}
			return nil, nil, err
		}
		if len(line) == 0 {
			if hasData {
				return s.event, s.data, nil
			}
			s.event = s.event[:0]
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if hasData {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			hasData = true
		case "event":
			s.event = append(s.event[:0], value...)
		}
	}
}

// LineReader reads newline-delimited records (NDJSON) of up to MaxLine bytes, skipping blank lines. Only "\n"
// ends a record ("\r\n" too); a lone "\r" is JSON whitespace and stays in the line.
type LineReader struct {
	lines lineReader
}

// NewLineReader wraps r.
func NewLineReader(r io.Reader) *LineReader {
	return &LineReader{lines: newLineReader(r, false)}
}

// OnWait makes the reader call fn before each read that may wait for the upstream (WaitNotifier).
func (l *LineReader) OnWait(fn func()) bool { l.lines.wait.before = fn; return true }

// Next returns the next non-blank line (valid until the next call) or io.EOF.
func (l *LineReader) Next() ([]byte, error) {
	for {
		line, err := l.lines.next()
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(line)) > 0 {
			return line, nil
		}
	}
}

// IsDone reports whether an SSE data payload is OpenAI's [DONE] terminator.
func IsDone(data []byte) bool {
	return bytes.HasPrefix(data, []byte("[DONE]"))
}
