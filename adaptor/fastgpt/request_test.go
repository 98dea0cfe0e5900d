package fastgpt

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func TestBuildBodyGolden(t *testing.T) {
	cases := []struct {
		name   string
		req    adaptor.Request
		stream bool
	}{
		// Server-side conversation: chatId, item id, variables, detail and the user's id set; the
		// model renamed; temperature and stream_options pass through (FastGPT ignores them).
		{"stateful", adaptor.Request{Model: "support-bot", UpstreamModel: "app-support", ChatID: "conv-20241101-0007",
			ResponseChatItemID: "msg-0007-a", Variables: []byte(`{"customer_tier":"gold","n":2}`), Detail: true, User: "u-42"}, true},
		// Stateless: no FastGPT extras, the whole history passes as is; Complete turns stream off and
		// detail is always explicit. Formatting and non-ASCII text survive untouched.
		{"stateless", adaptor.Request{Model: "support-bot", UpstreamModel: "support-bot"}, false},
		// The client body already has FastGPT fields; the Request's values win, in place.
		{"override", adaptor.Request{Model: "support-bot", ChatID: "conv-1", ResponseChatItemID: "item-2",
			Variables: []byte(` {"tier":"silver"} `), Detail: false}, true},
		// Unknown fields, FastGPT's own extras and file_url parts pass through; customUid stays the
		// client's.
		{"passthrough", adaptor.Request{Model: "support-bot", User: "u-42", Variables: []byte("null")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", "request", c.name+".in.json"))
			if err != nil {
				t.Fatal(err)
			}
			orig := bytes.Clone(in)
			c.req.Body = in
			got, err := BuildBody(&c.req, c.stream)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(in, orig) {
				t.Fatal("BuildBody modified the client body in place")
			}
			if !gjson.ValidBytes(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			golden := filepath.Join("testdata", "request", c.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if want = bytes.TrimSuffix(want, []byte("\n")); !bytes.Equal(got, want) {
				t.Errorf("body\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestBuildBodyBadVariables(t *testing.T) {
	for _, v := range []string{`[1,2]`, `"x"`, `{"a":`, `12`} {
		req := &adaptor.Request{Body: []byte(`{"messages":[]}`), Variables: []byte(v)}
		_, err := BuildBody(req, true)
		var ae *adaptor.Error
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Param != "variables" {
			t.Errorf("variables %s: got %v, want 400 naming variables", v, err)
		}
	}
}

func TestEndpoint(t *testing.T) {
	for base, want := range map[string]string{
		"https://api.fastgpt.in":                           "https://api.fastgpt.in/api/v1/chat/completions",
		"https://api.fastgpt.in/":                          "https://api.fastgpt.in/api/v1/chat/completions",
		"http://10.0.0.5:3000/api":                         "http://10.0.0.5:3000/api/v1/chat/completions",
		"http://10.0.0.5:3000/api/v1/":                     "http://10.0.0.5:3000/api/v1/chat/completions",
		"https://gpt.example/fastgpt/api/v1":               "https://gpt.example/fastgpt/api/v1/chat/completions",
		"https://gpt.example/api/v1/chat/completions":      "https://gpt.example/api/v1/chat/completions",
		"https://gpt.example/sub/path":                     "https://gpt.example/sub/path/api/v1/chat/completions",
		"https://gpt.example/api/v1/chat/completions/////": "https://gpt.example/api/v1/chat/completions",
	} {
		if got := Endpoint(base); got != want {
			t.Errorf("Endpoint(%q) = %q, want %q", base, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	a := New()
	for base, ok := range map[string]bool{
		"":                       false,
		"api.fastgpt.in":         false,
		"ftp://x.example":        false,
		"https://":               false,
		"https://api.fastgpt.in": true,
		"http://127.0.0.1:3000":  true,
	} {
		err := a.Validate(&adaptor.Channel{Name: "fg", Kind: "fastgpt", BaseURL: base})
		if (err == nil) != ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", base, err, ok)
		}
	}
}
