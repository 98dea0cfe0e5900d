package hunyuan

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// seedFrames adds every data payload of the stream test cases, plus odd ones.
func seedFrames(f *testing.F) {
	files, _ := filepath.Glob("testdata/stream/*.sse")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		for _, line := range bytes.Split(b, []byte("\n")) {
			if p, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r"), []byte("data:")); ok {
				f.Add(bytes.TrimLeft(p, " "))
			}
		}
	}
	for _, s := range []string{
		``, ` `, `[DONE]`, `{}`, `[]`, `"x"`, `null`, `{"Choices":null}`, `{"Choices":[{}]}`,
		`{"Choices":[{"Delta":{"Content":"\ud83d"},"FinishReason":""}]}`,
		`{"Choices":[{"Delta":{"Content":"` + "\xff\xfe" + `"},"FinishReason":""}]}`,
		`{"Choices":[{"Delta":{"ToolCalls":[{"Index":-1}]}}]}`,
		`{"Choices":[{"Delta":{"ToolCalls":[{"Id":"a\"b","Function":{"Name":"n\u2028","Arguments":"{\"x\":1}"}}]}}]}`,
		`{"ErrorMsg":{"Code":0,"Msg":""},"Choices":[{"Delta":{"Content":"ok"}}]}`,
		`{"ErrorMsg":{"Code":"4000"}}`, `{"Response":{"Error":{}}}`, `{"Usage":{"PromptTokens":-1}}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzDecodeFrame: any frame either fails with an *adaptor.Error or yields valid chunk JSON; never a
// panic. The decoder is stateful (tool calls), so each input is decoded twice on one stream.
func FuzzDecodeFrame(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		e := newEvents(context.Background(), io.NopCloser(bytes.NewReader(nil)), "rid")
		for range 2 {
			ev, err := e.decode(data)
			if err != nil {
				var ae *adaptor.Error
				if !errors.Is(err, io.EOF) && !errors.As(err, &ae) {
					t.Fatalf("error of type %T: %v", err, err)
				}
				return
			}
			if ev != nil && !gjson.ValidBytes(ev.Choices) {
				t.Fatalf("invalid choices %q from %q", ev.Choices, data)
			}
		}
	})
}

// FuzzStream: any body ends the stream (EOF or *adaptor.Error) and every event is valid JSON.
func FuzzStream(f *testing.F) {
	files, _ := filepath.Glob("testdata/stream/*.sse")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Add([]byte("data: {}\n\ndata: {\"Choices\":[{\"FinishReason\":\"stop\"}]}\n\n"))
	f.Add([]byte("event: x\ndata: {\n: c\ndata: }\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev := newEvents(context.Background(), io.NopCloser(bytes.NewReader(body)), "")
		for i := 0; ; i++ {
			if i > len(body)+1 {
				t.Fatal("more events than bytes")
			}
			e, err := ev.Next()
			if err != nil {
				var ae *adaptor.Error
				if !errors.Is(err, io.EOF) && !errors.As(err, &ae) {
					t.Fatalf("error of type %T: %v", err, err)
				}
				return
			}
			if !gjson.ValidBytes(e.Choices) {
				t.Fatalf("invalid choices %q", e.Choices)
			}
		}
	})
}
