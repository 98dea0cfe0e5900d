package spark

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/coder/websocket"
	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// maxFrame bounds one response frame; answers come in small pieces, but a function call's arguments
// arrive in one frame.
const maxFrame = 4 << 20

// open dials the signed URL and sends the request frame. Handshake refusals become *adaptor.Error
// before any event exists.
func open(ctx context.Context, ch *adaptor.Channel, signed string, frame []byte) (*events, error) {
	sctx, cancel := adaptor.WithTimeout(ctx, ch)
	conn, resp, err := websocket.Dial(sctx, signed, &websocket.DialOptions{HTTPClient: ch.Client()})
	if err != nil {
		herr := handshakeError(sctx, resp, err) // before cancel, which would read as the client leaving
		cancel()
		return nil, herr
	}
	conn.SetReadLimit(maxFrame)
	if err := conn.Write(sctx, websocket.MessageText, frame); err != nil {
		werr := transportError(sctx, err)
		conn.CloseNow()
		cancel()
		return nil, werr
	}
	e := &events{ctx: sctx, cancel: cancel, conn: conn, buf: make([]byte, 0, 4096)}
	// Reads use a background context (no per-read timer); the stream's context closes the socket
	// instead, which also unblocks a pending read at once.
	e.stop = context.AfterFunc(sctx, func() { conn.CloseNow() })
	return e, nil
}

// handshakeError maps a failed dial. Spark refuses bad signatures, unknown keys and clock skew with a
// plain HTTP answer {"message": ...} instead of 101.
func handshakeError(ctx context.Context, resp *http.Response, err error) *adaptor.Error {
	if resp == nil || ctx.Err() != nil {
		return transportError(ctx, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return adaptor.UpstreamError(502, "handshake_failed", "Spark WebSocket handshake failed")
	}
	msg := ""
	if resp.Body != nil {
		b, _ := io.ReadAll(resp.Body) // the websocket library kept at most 1 KiB of it
		msg = gjson.GetBytes(b, "message").Str
	}
	if msg == "" {
		msg = "Spark refused the WebSocket handshake with HTTP " + strconv.Itoa(resp.StatusCode)
	}
	return adaptor.UpstreamError(resp.StatusCode, "handshake_refused", msg)
}

// transportError reports the stream context's own end (client gone: 499, channel timeout: 504) ahead
// of whatever the socket said about it.
func transportError(ctx context.Context, err error) *adaptor.Error {
	if cerr := ctx.Err(); cerr != nil {
		return adaptor.TransportError(ctx, cerr)
	}
	return adaptor.TransportError(ctx, err)
}

// events is an open Spark answer. Next is called from one goroutine; Close from any.
type events struct {
	ctx    context.Context
	cancel context.CancelFunc
	stop   func() bool
	conn   *websocket.Conn
	buf    []byte
	dec    decoder
	done   bool
	err    error
	once   sync.Once
}

// Next returns the next chunk, io.EOF after the frame with status 2, or an *adaptor.Error.
func (e *events) Next() (*adaptor.Event, error) {
	for {
		if e.done {
			return nil, io.EOF
		}
		if e.err != nil {
			return nil, e.err
		}
		frame, err := e.read()
		if err != nil {
			e.err = e.readError(err)
			e.Close()
			return nil, e.err
		}
		ev, last, err := e.dec.decode(frame)
		if err != nil {
			e.err = err
			e.Close()
			return nil, err
		}
		if last {
			// Spark closes after the final frame; release the socket now rather than when the
			// client is done. The event lives in our own buffers.
			e.done = true
			e.Close()
		}
		if ev != nil {
			return ev, nil
		}
	}
}

// read reads one whole message (of any number of WebSocket fragments) into the reused buffer.
func (e *events) read() ([]byte, error) {
	_, r, err := e.conn.Reader(context.Background())
	if err != nil {
		return nil, err
	}
	b := e.buf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			e.buf = b
			if errors.Is(err, io.EOF) {
				return b, nil
			}
			return nil, err
		}
	}
}

// readError classifies a socket that ended before the status-2 frame: our context ending first, a
// too-large frame, or the upstream going away (a broken stream, never a complete answer).
func (e *events) readError(err error) error {
	if e.ctx.Err() != nil {
		return transportError(e.ctx, err)
	}
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return adaptor.UpstreamError(502, "frame_too_big", "Spark frame over "+strconv.Itoa(maxFrame)+" bytes")
	}
	if code := websocket.CloseStatus(err); code != -1 {
		return adaptor.StreamBroken("Spark closed the WebSocket (status " + strconv.Itoa(int(code)) + ") before the final frame")
	}
	return adaptor.StreamBroken("Spark WebSocket lost before the final frame")
}

// Close closes the socket at once (no close handshake to wait on: the answer is abandoned or done).
func (e *events) Close() error {
	e.once.Do(func() {
		e.stop()
		e.cancel() // first, so a read it interrupts is reported as the client's doing
		e.conn.CloseNow()
	})
	return nil
}
