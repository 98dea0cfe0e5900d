// Package streamtest holds what the adaptors' tests and benchmarks share for feeding them streams.
package streamtest

// Loop is an endless stream: it serves its data over and over, so that a benchmark measures decoding
// and not I/O.
type Loop struct {
	data []byte
	off  int
}

// NewLoop returns a Loop over data, which must not be empty.
func NewLoop(data string) *Loop { return &Loop{data: []byte(data)} }

func (l *Loop) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// Close does nothing; with it a Loop can stand for a response body.
func (l *Loop) Close() error { return nil }
