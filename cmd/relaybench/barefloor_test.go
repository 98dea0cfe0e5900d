package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReadMessage(t *testing.T) {
	read := func(s string) ([]byte, int, error) {
		return readMessage(bufio.NewReader(strings.NewReader(s)), nil)
	}
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhello"
	msg, head, err := read(req + "POST /next")
	if err != nil || string(msg) != req || string(msg[head:]) != "hello" {
		t.Errorf("request with a body: %q %d %v", msg, head, err)
	}
	get := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	if msg, head, err := read(get); err != nil || string(msg) != get || head != len(get) {
		t.Errorf("request without a body: %q %d %v", msg, head, err)
	}
	for name, in := range map[string]string{
		"chunked answer":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"answer no length": "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n",
	} {
		if _, _, err := read(in); !errors.Is(err, errBareNoLength) {
			t.Errorf("%s: err %v, want errBareNoLength", name, err)
		}
	}
	for name, in := range map[string]string{
		"bad length":      "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"two lengths":     "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"huge length":     "POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
		"short body":      "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
		"header too long": "POST / HTTP/1.1\r\nX: " + strings.Repeat("a", bareMaxHeader) + "\r\n\r\n",
		"no blank line":   "POST / HTTP/1.1\r\nHost: x\r\n",
	} {
		if _, _, err := read(in); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

// TestBareFloors sends the load generator's requests through both bare floors to the mock and checks
// they arrive and come back unchanged, over kept-alive connections, and that a streamed answer is refused
// rather than hung on.
func TestBareFloors(t *testing.T) {
	mock := httptest.NewServer(newMock(mockOptions{Chunks: 3, Size: 300}))
	defer mock.Close()
	upstream := strings.TrimPrefix(mock.URL, "http://")
	want := newMock(mockOptions{Chunks: 3, Size: 300}).completion

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveBare(ln, upstream)
	bareClient := httptest.NewServer(newBareClientHandler(upstream))
	defer bareClient.Close()

	client := newClient(2)
	defer client.CloseIdleConnections()
	for name, base := range map[string]string{"floor-bare": "http://" + ln.Addr().String(), "floor-bare-client": bareClient.URL} {
		for i := 0; i < 3; i++ {
			resp, err := client.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(chatBody(mockModel, false)))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(body, want) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("%s: %d %q %q", name, resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
		}
		resp, err := client.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(chatBody(mockModel, true)))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Errorf("%s: a streamed answer passed, want it refused", name)
			}
		}
	}
	// A request the mock refuses keeps its status through floor-bare-client.
	resp, err := client.Post(bareClient.URL+"/v1/nothing", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", resp.StatusCode)
	}
}
