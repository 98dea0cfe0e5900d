package hunyuan

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

var update = flag.Bool("update", false, "rewrite golden files from the current output")

// golden compares got with the named file under testdata (rewriting it with -update).
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs\n got: %s\nwant: %s", path, got, want)
	}
}

// requestFor builds the adaptor.Request the core would: UpstreamModel from the channel's map.
func requestFor(body []byte) *adaptor.Request {
	model := gjson.GetBytes(body, "model").String()
	up := model
	if model == "my-alias" {
		up = "hunyuan-standard-256K"
	}
	return &adaptor.Request{Body: body, Model: model, UpstreamModel: up, Stream: gjson.GetBytes(body, "stream").Bool()}
}

// renderBody is what a golden file holds: the upstream body, or "error <status> <param>: <message>".
func renderBody(body []byte) []byte {
	req := requestFor(body)
	out, err := buildBody(req, req.Stream)
	if err != nil {
		var ae *adaptor.Error
		if !errors.As(err, &ae) {
			return []byte("non-adaptor error: " + err.Error() + "\n")
		}
		return []byte("error " + ae.Type + " " + ae.Param + ": " + ae.Message + "\n")
	}
	return append(out, '\n')
}

// Each testdata/request/NAME.json (an OpenAI body) becomes exactly NAME.golden.
func TestRequestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/request/*.json")
	if len(files) == 0 {
		t.Fatal("no request cases")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got := renderBody(in)
			isErr := bytes.HasPrefix(got, []byte("error "))
			if strings.HasPrefix(name, "err_") != isErr {
				t.Errorf("case %s: error=%v: %s", name, isErr, got)
			}
			if !isErr && !gjson.ValidBytes(got) {
				t.Errorf("invalid JSON: %s", got)
			}
			golden(t, strings.TrimSuffix(f, ".json")+".golden", got)
		})
	}
}

// The client's body is read only, never rewritten in place.
func TestBuildBodyLeavesInputAlone(t *testing.T) {
	in, _ := os.ReadFile("testdata/request/tool_history.json")
	keep := bytes.Clone(in)
	if _, err := buildBody(requestFor(in), false); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, keep) {
		t.Fatal("request body modified")
	}
}

func TestBuildBodyStreamFlag(t *testing.T) {
	req := requestFor([]byte(`{"model":"m","stream":false,"messages":[{"role":"user","content":"x"}]}`))
	out, err := buildBody(req, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Model":"m","Messages":[{"Role":"user","Content":"x"}],"Stream":true}`; string(out) != want {
		t.Fatalf("got %s want %s", out, want)
	}
}
