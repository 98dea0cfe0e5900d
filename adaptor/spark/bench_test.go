package spark

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"net/http"
	"testing"

	"relay/adaptor"
)

// wsFrame encodes one unmasked, final text frame as a server sends it.
func wsFrame(payload []byte) []byte {
	b := []byte{0x81}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		panic("frame too large for this helper")
	}
	return append(b, payload...)
}

// rawServer accepts one WebSocket and then writes frames, a prebuilt block over and over, without
// allocating: what the benchmark's allocation count sees is the client's alone.
func rawServer(b *testing.B, frames ...string) (url string, stop func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var block []byte
	for range 64 {
		for _, f := range frames {
			block = append(block, wsFrame([]byte(f))...)
		}
	}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		_, err = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"))
		for err == nil {
			_, err = c.Write(block)
		}
	}()
	return "ws://" + l.Addr().String() + "/v3.5/chat", func() { l.Close() }
}

func benchNext(b *testing.B, frames ...string) {
	url, stop := rawServer(b, frames...)
	defer stop()
	ch := &adaptor.Channel{Name: "bench", BaseURL: url, Credentials: map[string]string{"app_id": "a", "api_key": "k", "api_secret": "s"}}
	ev, err := New().Stream(b.Context(), ch, &adaptor.Request{Body: []byte(`{"messages":[{"role":"user","content":"hi"}]}`), Model: "generalv3.5"})
	if err != nil {
		b.Fatal(err)
	}
	defer ev.Close()
	for range 100 { // warm the buffers
		if _, err := ev.Next(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := ev.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNext is the whole per-frame path over a real socket: the websocket library's read into the
// reused buffer, decoding and the chunk. The raw server never ends the answer (status 1 frames).
func BenchmarkNext(b *testing.B) {
	b.Run("text", func(b *testing.B) { benchNext(b, docFrame1, docFrame2) })
	b.Run("chinese", func(b *testing.B) { benchNext(b, zhFrame) })
}
