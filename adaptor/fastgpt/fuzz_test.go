package fastgpt

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"relay/adaptor"
)

// FuzzEvents feeds arbitrary bytes to the frame decoder. It must not panic; reading the same bytes
// whole or dribbled must give the same transcript; whatever it emits must be valid JSON (choices an
// array, named payloads JSON); and a stream always ends, with io.EOF or an *adaptor.Error.
func FuzzEvents(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "stream", "*.sse"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "\n\n", done, c1, c1d + "event: answer\ndata: [DONE]\n\nevent: flowResponses\ndata: [{\"inputTokens\":1}]\n\n",
		"event: error\ndata: {\"code\":514,\"statusText\":\"unAuthApiKey\",\"message\":\"x\"}\n\n",
		"data: {\"choices\":[{\"delta\":{\"content\":\"\xe9\x80\"},\"index\":0}]}\n\n" + done,
		"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\ndata:[DONE]\r\n\r\n",
		"event: flowNodeResponse\ndata: {\"toolDetail\":[{\"inputTokens\":2,\"toolDetail\":[{\"outputTokens\":3}]}]}\n\n" + done,
		"data: {\"choices\":[1,2]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}\n\n",
		": comment\nevent: answer\nevent: interactive\ndata: {}\n\n" + done,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		whole := fuzzTranscript(t, strings.NewReader(string(in)))
		if got := fuzzTranscript(t, &dribble{s: string(in)}); got != whole {
			t.Fatalf("dribbled read differs:\n%s\nvs whole:\n%s", got, whole)
		}
	})
}

func fuzzTranscript(t *testing.T, r io.Reader) string {
	ev := NewEvents(context.Background(), io.NopCloser(r))
	var sb strings.Builder
	for i := 0; ; i++ {
		if i > 1<<16 {
			t.Fatal("no end")
		}
		e, err := ev.Next()
		if errors.Is(err, io.EOF) {
			return sb.String() + "EOF"
		}
		if err != nil {
			var ae *adaptor.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v is not an *adaptor.Error", err, err)
			}
			if _, again := ev.Next(); again != err {
				t.Fatalf("terminal error not repeated: %v then %v", err, again)
			}
			return sb.String() + ae.Error()
		}
		if e.Name == "" {
			var v []json.RawMessage
			if err := json.Unmarshal(e.Choices, &v); err != nil || len(v) == 0 {
				t.Fatalf("choices %q: %v", e.Choices, err)
			}
			sb.WriteString("chunk " + string(e.Choices) + "\n")
		} else {
			if !json.Valid(e.Data) {
				t.Fatalf("event %s data %q is not JSON", e.Name, e.Data)
			}
			sb.WriteString("event " + e.Name + " " + string(e.Data) + "\n")
		}
		if e.HasUsage && (e.Usage.TotalTokens != e.Usage.PromptTokens+e.Usage.CompletionTokens || !e.Usage.Valid()) {
			t.Fatalf("usage %+v", e.Usage)
		}
	}
}
