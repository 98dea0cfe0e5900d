package ollama

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

// FuzzStreamDecoder feeds arbitrary bytes, in reads of arbitrary sizes, to the NDJSON decoder. It must
// not panic or loop; every chunk must be a valid OpenAI choices array; every failure an *adaptor.Error
// with an error status; the stream may only end cleanly after an object with done:true; and the end is
// sticky.
func FuzzStreamDecoder(f *testing.F) {
	files, _ := filepath.Glob("testdata/stream/*.ndjson")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b, uint8(3))
		}
	}
	f.Add([]byte(`{"message":{"content":"a"},"done":true}`), uint8(1))
	f.Add([]byte(`{"message":{"tool_calls":[{"function":{"name":"f","arguments":"not an object"}},{"function":{}},7,{"id":5}]},"done":true}`), uint8(2))
	f.Add([]byte(`{"message":{"tool_calls":{"x":1}},"done":"true"}`+"\n"+`{"error":{"message":"obj"}}`), uint8(4))
	f.Add([]byte(`{"error":null,"message":{"content":"\ud800 \u0000 \u2028"},"done":true,"prompt_eval_count":-5,"eval_count":1e30}`), uint8(5))
	f.Add([]byte("\n\n \r\n{}\n[1]\n"), uint8(0))
	f.Add([]byte("{\"message\":{\"content\":\"\xff\xfe\"},\"done\":true}"), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		a := &Adaptor{newID: counterIDs(t)}
		ev := a.newEvents(context.Background(), io.NopCloser(&chunked{data: data, n: int(split%16) + 1}))
		defer ev.Close()
		var acc adaptor.Accumulator
		for i := 0; ; i++ {
			if i > len(data)+2 {
				t.Fatal("more events than lines")
			}
			e, err := ev.Next()
			if errors.Is(err, io.EOF) {
				if !bytes.Contains(data, []byte(`"done"`)) {
					t.Fatal("clean end without a done object")
				}
				if _, again := ev.Next(); !errors.Is(again, io.EOF) {
					t.Fatalf("after EOF: %v", again)
				}
				break
			}
			if err != nil {
				var ae *adaptor.Error
				if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 599 || ae.Message == "" {
					t.Fatalf("bad error %#v", err)
				}
				if _, again := ev.Next(); again != err {
					t.Fatalf("after error: %v", again)
				}
				break
			}
			if !gjson.ValidBytes(e.Choices) || gjson.GetBytes(e.Choices, "0.index").Raw != "0" {
				t.Fatalf("bad choices %q", e.Choices)
			}
			if e.HasUsage && e.Usage.TotalTokens != e.Usage.PromptTokens+e.Usage.CompletionTokens {
				t.Fatalf("usage %+v", e.Usage)
			}
			acc.Add(e)
		}
		_ = acc.Completion("id", 1, "m")
	})
}
