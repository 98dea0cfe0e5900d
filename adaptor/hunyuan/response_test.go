package hunyuan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

var testNow = time.Unix(1700000999, 0)

// testReq is the client request behind the response cases: the client says "my-model".
func testReq() *adaptor.Request {
	return &adaptor.Request{Body: []byte(`{"model":"my-model","messages":[{"role":"user","content":"Say hello"}]}`),
		Model: "my-model", UpstreamModel: "hunyuan-lite"}
}

func renderError(err error) string {
	var ae *adaptor.Error
	if !errors.As(err, &ae) {
		return "non-adaptor error: " + err.Error()
	}
	return fmt.Sprintf("error %d %s %s retryable=%v: %s", ae.Status, ae.Type, ae.Code, ae.Retryable, ae.Message)
}

// Each testdata/response/NAME.json (a Hunyuan answer) becomes exactly NAME.golden.
func TestResponseGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/response/*.json")
	if len(files) == 0 {
		t.Fatal("no response cases")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var got string
			c, err := translateResponse(in, testReq(), testNow)
			if err != nil {
				got = renderError(err)
			} else {
				if !gjson.ValidBytes(c.Body) {
					t.Errorf("invalid JSON: %s", c.Body)
				}
				got = fmt.Sprintf("%s\nusage %d/%d/%d estimated=%v", c.Body, c.Usage.PromptTokens,
					c.Usage.CompletionTokens, c.Usage.TotalTokens, c.Usage.Estimated)
			}
			if strings.HasPrefix(name, "err_") != strings.HasPrefix(got, "error ") {
				t.Errorf("case %s: %s", name, got)
			}
			golden(t, strings.TrimSuffix(f, ".json")+".golden", []byte(got+"\n"))
		})
	}
}

// The completion passes through the shared accumulator's reading unchanged: same fields a stream
// folded into a completion would have.
func TestResponseShape(t *testing.T) {
	in, _ := os.ReadFile("testdata/response/basic.json")
	c, err := translateResponse(in, testReq(), testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"chatcmpl-3c9d1b2e-5f0a-4c8e-9b71-0a2d6e4f8c11","object":"chat.completion","created":1700000001,"model":"my-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hi! What can I do for you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":10,"total_tokens":11}}`
	if string(c.Body) != want {
		t.Fatalf("got  %s\nwant %s", c.Body, want)
	}
}
