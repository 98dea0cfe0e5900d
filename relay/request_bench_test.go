package relay

import (
	"strings"
	"testing"
)

// BenchmarkParseChatRequestLong reads a 60-message conversation (about 40 KB): the request's fields are
// gathered in one pass, so the messages are not scanned once per field.
func BenchmarkParseChatRequestLong(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"model":"gpt-4o","messages":[`)
	for i := 0; i < 60; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		sb.WriteString(`{"role":"` + role + `","content":"` + strings.Repeat("a fairly long turn of conversation ", 20) + `"}`)
	}
	sb.WriteString(`],"stream":true,"stream_options":{"include_usage":true},"temperature":0.2,"user":"u1"}`)
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, e := ParseChatRequest(body); e != nil {
			b.Fatal(e)
		}
	}
}
