package gemini

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// FuzzStreamDecoder feeds arbitrary bytes to the stream decoder: it must never panic or loop, every
// event must carry valid JSON choices with tool call indices in order, and every error must be an
// *adaptor.Error.
func FuzzStreamDecoder(f *testing.F) {
	files, _ := filepath.Glob("testdata/stream/*.sse")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b, uint8(0))
		f.Add(bytes.ReplaceAll(b, []byte("\n"), []byte("\r")), uint8(3))
	}
	f.Add([]byte("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\\ud800\"}]},\"finishReason\":\"STOP\"}]}\n\n"), uint8(1))
	f.Add([]byte("data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":[1, 2]}}]}}]}\n\n"), uint8(2))
	f.Add([]byte("data: {\"candidates\":{\"0\":1},\"usageMetadata\":[]}\n\ndata: {\"error\":\"x\"}\n\n"), uint8(5))
	f.Add([]byte("data: \xff\xfe\n\n\r\r\n:\n"), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		var r io.Reader = bytes.NewReader(data)
		if split%2 == 1 {
			r = iotest.OneByteReader(r)
		}
		ev := NewEvents(context.Background(), io.NopCloser(r))
		defer ev.Close()
		next := int64(0)
		for i := 0; ; i++ {
			if i > len(data)+2 {
				t.Fatal("more events than input bytes")
			}
			e, err := ev.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				var ae *adaptor.Error
				if !errors.As(err, &ae) || ae.Status < 400 {
					t.Fatalf("bad error %#v", err)
				}
				return
			}
			if len(e.Choices) == 0 {
				if !e.HasUsage {
					t.Fatal("empty event")
				}
				continue
			}
			if !gjson.ValidBytes(e.Choices) {
				t.Fatalf("invalid choices %s", e.Choices)
			}
			gjson.GetBytes(e.Choices, "0.delta.tool_calls").ForEach(func(_, tc gjson.Result) bool {
				if tc.Get("index").Int() != next {
					t.Fatalf("tool call index %d, want %d: %s", tc.Get("index").Int(), next, e.Choices)
				}
				if a := tc.Get("function.arguments").Str; !gjson.Valid(a) {
					t.Fatalf("arguments not JSON: %q", a)
				}
				next++
				return true
			})
		}
	})
}

// FuzzBuildRequest checks the request translation never panics and, when it succeeds, writes valid
// JSON with at least one content.
func FuzzBuildRequest(f *testing.F) {
	files, _ := filepath.Glob("testdata/request/*.in.json")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"\u0000"}]}],"tools":[{"function":{"name":"x","parameters":{"type":["null"],"properties":{"a":1}}}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !gjson.ValidBytes(body) {
			return
		}
		out, err := buildRequest(context.Background(), body, "")
		if err != nil {
			var ae *adaptor.Error
			if !errors.As(err, &ae) || ae.Status != 400 {
				t.Fatalf("bad error %#v", err)
			}
			return
		}
		if !gjson.ValidBytes(out) || len(gjson.GetBytes(out, "contents").Array()) == 0 {
			t.Fatalf("bad output %s", out)
		}
	})
}
