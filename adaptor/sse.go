package adaptor

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// SSEReader decodes a Server-Sent Events stream. Lines may be of any length (a 1 MiB data line passes);
// buffers are reused, so what Next returns is only valid until the next call.
type SSEReader struct {
	r     *bufio.Reader
	line  []byte
	data  []byte
	event []byte
}

// NewSSEReader wraps r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// readLine returns the next line without its line ending; the slice is valid until the next call.
func (s *SSEReader) readLine() ([]byte, error) {
	return readLine(s.r, &s.line)
}

// readLine reads one \n-terminated line of any length, trimming \r\n or \n.
func readLine(r *bufio.Reader, scratch *[]byte) ([]byte, error) {
	chunk, err := r.ReadSlice('\n')
	if err == nil {
		return trimEOL(chunk), nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if len(chunk) > 0 && errors.Is(err, io.EOF) {
			return trimEOL(chunk), nil // last line without newline
		}
		return nil, err
	}
	buf := append((*scratch)[:0], chunk...)
	for {
		chunk, err = r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if err == nil || (errors.Is(err, io.EOF) && len(buf) > 0) {
			*scratch = buf
			return trimEOL(buf), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			*scratch = buf
			return nil, err
		}
	}
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
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
		line, err := s.readLine()
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

// LineReader reads newline-delimited records (NDJSON) of any length, skipping blank lines.
type LineReader struct {
	r    *bufio.Reader
	line []byte
}

// NewLineReader wraps r.
func NewLineReader(r io.Reader) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// Next returns the next non-blank line (valid until the next call) or io.EOF.
func (l *LineReader) Next() ([]byte, error) {
	for {
		line, err := readLine(l.r, &l.line)
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
