package anthropic

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sameJSON compares two JSON documents by value (key order and spacing do not matter).
func sameJSON(t *testing.T, got, want []byte) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("golden is not JSON: %v\n%s", err, want)
	}
	return reflect.DeepEqual(g, w)
}

func indent(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return b
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// checkGolden compares got with the golden file, or rewrites it under -update.
func checkGolden(t *testing.T, path string, got []byte, asJSON bool) {
	t.Helper()
	if *update {
		out := got
		if asJSON {
			out = indent(got)
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if asJSON {
		if !sameJSON(t, got, want) {
			t.Fatalf("%s differs\n got %s\nwant %s", filepath.Base(path), indent(got), want)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs\n got:\n%s\nwant:\n%s", filepath.Base(path), got, want)
	}
}

func gjsonValid(b []byte) bool { return json.Valid(b) }
