package anthropic

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

func testRequest(body string) *adaptor.Request {
	m := gjson.Get(body, "model").Str
	return &adaptor.Request{Body: []byte(body), Model: m, UpstreamModel: m, Stream: gjson.Get(body, "stream").Bool()}
}

func TestRequestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/request/*.in.json")
	if len(files) == 0 {
		t.Fatal("no request fixtures")
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			req := testRequest(string(body))
			got, err := buildRequest(context.Background(), settings{maxTokens: DefaultMaxTokens}, req, req.Stream)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			checkGolden(t, strings.TrimSuffix(in, ".in.json")+".golden.json", got, true)
		})
	}
}

func TestRequestChannelSettings(t *testing.T) {
	req := testRequest(`{"model":"alias","messages":[{"role":"user","content":"hi"}]}`)
	req.UpstreamModel = "claude-real"
	got, err := buildRequest(context.Background(), settings{maxTokens: 1234}, req, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"model":"claude-real","max_tokens":1234,"messages":[{"role":"user","content":"hi"}]}`; string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// The client's body is not modified.
	if string(req.Body) != `{"model":"alias","messages":[{"role":"user","content":"hi"}]}` {
		t.Fatalf("body changed: %s", req.Body)
	}
}

func TestRequestErrors(t *testing.T) {
	cases := []struct{ name, body, param string }{
		{"only system", `{"model":"m","messages":[{"role":"system","content":"be nice"}]}`, "messages"},
		{"empty user", `{"model":"m","messages":[{"role":"user","content":""}]}`, "messages"},
		{"audio part", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAA=","format":"wav"}}]}]}`, "messages[0].content[0].type"},
		{"tool without id", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"tool","content":"r"}]}`, "messages[1].tool_call_id"},
		{"bad arguments", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1,2]"}}]}]}`, "messages[1].tool_calls[0].function.arguments"},
		{"tool call without name", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"arguments":"{}"}}]}]}`, "messages[1].tool_calls[0].function.name"},
		{"custom tool", `{"model":"m","tools":[{"type":"custom","custom":{"name":"x"}}],"messages":[{"role":"user","content":"x"}]}`, "tools[0].type"},
		{"bad tool_choice", `{"model":"m","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes","messages":[{"role":"user","content":"x"}]}`, "tool_choice"},
		{"zero max_tokens", `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`, "max_tokens"},
		{"bad data url", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:text/plain;base64,aGk="}}]}]}`, "messages[0].content[0].image_url.url"},
		{"ftp image", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}`, "messages[0].content[0].image_url.url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := buildRequest(context.Background(), settings{maxTokens: 10}, testRequest(c.body), false)
			var ae *adaptor.Error
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Param != c.param || ae.Type != adaptor.TypeInvalidRequest {
				t.Fatalf("got %#v, want a 400 naming %q", err, c.param)
			}
		})
	}
}
