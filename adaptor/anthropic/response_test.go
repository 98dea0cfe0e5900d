package anthropic

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"relay/adaptor"
)

func TestResponseGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/response/*.json")
	n := 0
	for _, in := range files {
		if strings.HasSuffix(in, ".golden.json") {
			continue
		}
		n++
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			comp, err := convertResponse(body, &adaptor.Request{Model: "client-model"})
			if err != nil {
				t.Fatal(err)
			}
			if c := gjson.GetBytes(comp.Body, "created").Int(); c < 1700000000 {
				t.Fatalf("created %d", c)
			}
			u := gjson.GetBytes(comp.Body, "usage")
			if comp.Usage.PromptTokens != int(u.Get("prompt_tokens").Int()) || comp.Usage.CompletionTokens != int(u.Get("completion_tokens").Int()) ||
				comp.Usage.TotalTokens != comp.Usage.PromptTokens+comp.Usage.CompletionTokens {
				t.Fatalf("usage %+v vs body %s", comp.Usage, u.Raw)
			}
			got, _ := sjson.SetBytes(comp.Body, "created", 0) // the only field that varies
			checkGolden(t, strings.TrimSuffix(in, ".json")+".golden.json", got, true)
		})
	}
	if n == 0 {
		t.Fatal("no response fixtures")
	}
}

func TestResponseBad(t *testing.T) {
	for _, c := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"not json", `<html>`, 502, "bad_response"},
		{"no content", `{"id":"msg_1","type":"message"}`, 502, "bad_response"},
		{"error with 200", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, 503, "overloaded_error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := convertResponse([]byte(c.body), &adaptor.Request{Model: "m"})
			var ae *adaptor.Error
			if !errors.As(err, &ae) || ae.Status != c.status || ae.Code != c.code {
				t.Fatalf("got %#v", err)
			}
		})
	}
}
