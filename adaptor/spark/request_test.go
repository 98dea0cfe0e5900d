package spark

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

var update = flag.Bool("update", false, "rewrite the golden request frames in testdata")

// frameFor builds the request frame a default channel sends for an OpenAI body.
func frameFor(t *testing.T, body []byte) ([]byte, error) {
	t.Helper()
	ch := &adaptor.Channel{Name: "golden", Credentials: map[string]string{"app_id": "5f2a9c1d"}}
	model := gjson.GetBytes(body, "model").Str
	tg, err := resolve(ch, model)
	if err != nil {
		t.Fatal(err)
	}
	return requestFrame(ch.Credentials["app_id"], tg, &adaptor.Request{Body: body, Model: model, UpstreamModel: model})
}

func TestRequestFrameGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/requests/*.in.json")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := frameFor(t, body)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) {
				t.Fatalf("frame is not JSON: %s", got)
			}
			golden := strings.TrimSuffix(in, ".in.json") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, bytes.TrimRight(want, "\n")) {
				t.Errorf("frame differs from %s\n got %s\nwant %s", golden, got, want)
			}
		})
	}
}

// The wire document's own request example (§3) is what the doc_example input must produce.
func TestRequestFrameMatchesDocExample(t *testing.T) {
	const doc = `{
  "header": {"app_id": "5f2a9c1d", "uid": "user-4711"},
  "parameter": {
    "chat": {"domain": "generalv3.5", "temperature": 0.5, "max_tokens": 1024, "top_k": 4}
  },
  "payload": {
    "message": {
      "text": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another one?"}
      ]
    }
  }
}`
	body, err := os.ReadFile("testdata/requests/doc_example.in.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := frameFor(t, body)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	if string(got) != compact.String() {
		t.Errorf("\n got %s\nwant %s", got, compact.String())
	}
}

// req.User (set by the surface) wins over the body's user field.
func TestRequestFrameUserFromRequest(t *testing.T) {
	got, err := requestFrame("app", target{domain: "lite"}, &adaptor.Request{
		Body: []byte(`{"user":"body-user","messages":[{"role":"user","content":"hi"}]}`), User: "req-user"})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"header":{"app_id":"app","uid":"req-user"},"parameter":{"chat":{"domain":"lite"}},"payload":{"message":{"text":[{"role":"user","content":"hi"}]}}}`
	if string(got) != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

func TestRequestFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       *adaptor.Error
	}{
		{"not json", `{"messages":[`, adaptor.BadRequest("", "request body is not JSON")},
		{"no messages", `{"model":"lite"}`, adaptor.BadRequest("messages", "messages must be an array")},
		{"bad role", `{"messages":[{"role":"wizard","content":"hi"}]}`, adaptor.BadRequest("messages", `unsupported message role "wizard"`)},
		{"only system", `{"messages":[{"role":"system","content":"be brief"}]}`, adaptor.BadRequest("messages", "messages have no text for Spark")},
		{"only images", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, adaptor.BadRequest("messages", "messages have no text for Spark")},
	} {
		_, err := requestFrame("app", target{domain: "lite"}, &adaptor.Request{Body: []byte(tc.body)})
		if !reflect.DeepEqual(err, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, err, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"用户", 4, "用"}, // 3-byte characters: never half of one
		{"用户", 6, "用户"},
		{"用户", 2, ""},
	} {
		if got := truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
