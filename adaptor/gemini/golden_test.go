package gemini

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"relay/adaptor"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixedIDs makes generated tool call ids call_1, call_2, ... for the test.
func fixedIDs(t testing.TB) {
	old := adaptor.NewToolCallID
	n := 0
	adaptor.NewToolCallID = func() string { n++; return "call_" + strconv.Itoa(n) }
	t.Cleanup(func() { adaptor.NewToolCallID = old })
}

// normJSON re-encodes JSON with sorted keys and indentation, so comparisons ignore key order.
func normJSON(t testing.TB, b []byte) string {
	t.Helper()
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("invalid JSON %v: %s", err, b)
	}
	var out bytes.Buffer
	e := json.NewEncoder(&out)
	e.SetEscapeHTML(false)
	e.SetIndent("", "  ")
	if err := e.Encode(v); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestRequestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/request/*.in.json")
	if len(files) == 0 {
		t.Fatal("no request cases")
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			orig := append([]byte(nil), body...)
			out, err := buildRequest(context.Background(), body, "")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, orig) {
				t.Fatal("the client's body was modified")
			}
			if !gjson.ValidBytes(out) {
				t.Fatalf("output is not valid JSON: %s", out)
			}
			golden(t, strings.TrimSuffix(in, ".in.json")+".golden.json", normJSON(t, out))
		})
	}
}

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
			fixedIDs(t)
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			req := &adaptor.Request{Model: "gemini-client-name", Body: []byte(`{"model":"gemini-client-name","messages":[{"role":"user","content":"Is a tomato a fruit?"}]}`)}
			comp, err := completion(body, req)
			if err != nil {
				t.Fatal(err)
			}
			if gjson.GetBytes(comp.Body, "created").Int() == 0 {
				t.Fatal("no created")
			}
			out, _ := sjson.SetBytes(comp.Body, "created", 0)
			if !strings.HasPrefix(gjson.GetBytes(out, "id").Str, "chatcmpl-") {
				t.Fatalf("id: %s", out)
			}
			if gjson.GetBytes(body, "responseId").Str == "" {
				out, _ = sjson.SetBytes(out, "id", "chatcmpl-generated")
			}
			u := gjson.GetBytes(out, "usage")
			if int(u.Get("total_tokens").Int()) != comp.Usage.TotalTokens || comp.Usage.TotalTokens == 0 {
				t.Fatalf("usage %+v vs %s", comp.Usage, u.Raw)
			}
			golden(t, strings.TrimSuffix(in, ".json")+".golden.json", normJSON(t, out))
		})
	}
	if n == 0 {
		t.Fatal("no response cases")
	}
}

// drain runs a stream to its end and renders every event and the end, one per line.
func drain(t testing.TB, r io.Reader) string {
	ev := NewEvents(context.Background(), io.NopCloser(r))
	defer ev.Close()
	var b strings.Builder
	for i := 0; i < 10000; i++ {
		e, err := ev.Next()
		if errors.Is(err, io.EOF) {
			b.WriteString("end: EOF\n")
			return b.String()
		}
		if err != nil {
			var ae *adaptor.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error is not an *adaptor.Error: %v", err)
			}
			b.WriteString("end: error " + strconv.Itoa(ae.Status) + " " + ae.Type + " " + ae.Code + " " + ae.Message + "\n")
			return b.String()
		}
		if len(e.Choices) > 0 {
			if !gjson.ValidBytes(e.Choices) {
				t.Fatalf("choices not JSON: %s", e.Choices)
			}
			b.WriteString("choices: ")
			b.Write(e.Choices)
			b.WriteByte('\n')
		}
		if e.HasUsage {
			b.WriteString("usage: " + strconv.Itoa(e.Usage.PromptTokens) + " " + strconv.Itoa(e.Usage.CompletionTokens) + " " + strconv.Itoa(e.Usage.TotalTokens) + "\n")
		}
	}
	t.Fatal("stream does not end")
	return ""
}

func streamCases(t *testing.T) []string {
	files, _ := filepath.Glob("testdata/stream/*.sse")
	if len(files) == 0 {
		t.Fatal("no stream cases")
	}
	return files
}

func TestStreamGolden(t *testing.T) {
	for _, in := range streamCases(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".sse")
		t.Run(name, func(t *testing.T) {
			fixedIDs(t)
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(in, ".sse")+".golden", drain(t, bytes.NewReader(data)))
		})
	}
}

// splitReader returns the data in reads of the given sizes, cycling.
type splitReader struct {
	data  []byte
	sizes []int
	i     int
}

func (s *splitReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := s.sizes[s.i%len(s.sizes)]
	s.i++
	n = min(n, len(p), len(s.data))
	copy(p, s.data[:n])
	s.data = s.data[n:]
	return n, nil
}

// Frames split at every awkward byte boundary, and line endings of every accepted kind, decode the same.
func TestStreamSplitsAndLineEndings(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, in := range streamCases(t) {
		name := strings.TrimSuffix(filepath.Base(in), ".sse")
		t.Run(name, func(t *testing.T) {
			data, _ := os.ReadFile(in)
			run := func(r io.Reader) string { fixedIDs(t); return drain(t, r) }
			want := run(bytes.NewReader(data))
			check := func(what string, got string) {
				t.Helper()
				if got != want {
					t.Fatalf("%s:\n got %s\nwant %s", what, got, want)
				}
			}
			check("one byte reads", run(iotest.OneByteReader(bytes.NewReader(data))))
			check("half reads", run(iotest.HalfReader(bytes.NewReader(data))))
			for k := 1; k < len(data); k += 7 {
				check("split at "+strconv.Itoa(k), run(&splitReader{data: data, sizes: []int{k, len(data)}}))
			}
			for range 20 {
				sizes := make([]int, 8)
				for i := range sizes {
					sizes[i] = 1 + rng.Intn(9)
				}
				check("random sizes", run(&splitReader{data: data, sizes: sizes}))
			}
			crlf := bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
			check("CRLF", run(bytes.NewReader(crlf)))
			check("CRLF one byte", run(iotest.OneByteReader(bytes.NewReader(crlf))))
			cr := bytes.ReplaceAll(data, []byte("\n"), []byte("\r"))
			check("CR", run(bytes.NewReader(cr)))
			check("CR one byte", run(iotest.OneByteReader(bytes.NewReader(cr))))
			check("no space after data:", run(bytes.NewReader(bytes.ReplaceAll(data, []byte("data: "), []byte("data:")))))
		})
	}
}

// Multi-byte UTF-8 split across reads arrives whole: every split position of a frame full of 2-, 3-
// and 4-byte runes gives the same text.
func TestStreamUTF8AcrossReads(t *testing.T) {
	text := "héllo 巴黎 🌍 ß∑🙂"
	frame := `data: {"candidates":[{"content":{"parts":[{"text":"` + text + `"}]},"finishReason":"STOP"}]}` + "\n\n"
	for k := 1; k < len(frame); k++ {
		ev := NewEvents(context.Background(), io.NopCloser(&splitReader{data: []byte(frame), sizes: []int{k, 1, 2, 3}}))
		e, err := ev.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(e.Choices, "0.delta.content").Str; got != text {
			t.Fatalf("split %d: %q", k, got)
		}
		if _, err := ev.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("split %d: end %v", k, err)
		}
	}
}
