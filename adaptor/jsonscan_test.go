package adaptor

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

var jsonSamples = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a":1,"b":[1,2,{"c":null}],"d":"x\"y","e":true,"f":false}`,
	`{"choices":[{"index":0,"delta":{"content":" heron"},"finish_reason":null}],"usage":null}`,
	`{"a":-0.5e+10,"b":0,"c":-1,"d":1.0E2,"e":"\u00e9\n\t\/"}`, `{"\u0063hoices":[1]}`,
	`{"a":1,"a":2}`, `[]`, `[1]`, `[ {"x":1} , 2 ]`, `"s"`, `1`, `null`,
	// malformed
	``, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{a:1}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`,
	`{"a":1e}`, `{"a":-}`, `{"a":tru}`, `{"a":nul}`, `{"a":"x}`, `{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}",
	`{"a":[1,]}`, `{"a":[1 2]}`, `{"a":1}x`, `{"a":1}{}`, `[1,]`, `[`, `{"a":{"b":1}`, `{"a":+1}`, `{"a":Infinity}`,
}

// The scanner accepts exactly what encoding/json accepts.
func TestObjectFieldsValidity(t *testing.T) {
	for _, s := range jsonSamples {
		want := json.Valid([]byte(s)) && strings.HasPrefix(strings.TrimSpace(s), "{")
		var v [1][]byte
		if got := ObjectFields([]byte(s), []string{"a"}, v[:]); got != want {
			t.Errorf("ObjectFields(%q) valid = %v, want %v", s, got, want)
		}
	}
}

func TestEachElement(t *testing.T) {
	for _, s := range jsonSamples {
		var n int
		got := EachElement([]byte(s), func([]byte) { n++ })
		want := json.Valid([]byte(s)) && strings.HasPrefix(strings.TrimSpace(s), "[")
		if got != want {
			t.Errorf("EachElement(%q) = %v, want %v", s, got, want)
		}
		if got && n != len(gjson.Parse(s).Array()) {
			t.Errorf("EachElement(%q) saw %d elements", s, n)
		}
	}
}

// Picked fields are the raw values gjson.Get gives, the first occurrence winning.
func TestObjectFieldsPicks(t *testing.T) {
	names := []string{"choices", "usage", "error", "a", "d"}
	for _, s := range jsonSamples {
		vals := make([][]byte, len(names))
		if !ObjectFields([]byte(s), names, vals) {
			continue
		}
		for i, n := range names {
			if got, want := string(vals[i]), gjson.Get(s, n).Raw; got != want {
				t.Errorf("%s: field %s = %q, gjson says %q", s, n, got, want)
			}
		}
	}
}

func TestFirstObjectFieldsAndStringValue(t *testing.T) {
	var v [2][]byte
	if !FirstObjectFields([]byte(` [ {"delta":{"content":"a\nb"},"finish_reason":"stop"} , {"x":2} ] `), []string{"delta", "finish_reason"}, v[:]) ||
		string(v[0]) != `{"content":"a\nb"}` || string(v[1]) != `"stop"` {
		t.Fatalf("FirstObjectFields = %q", v)
	}
	for _, s := range []string{`[]`, `{}`, `[1]`, `[{"delta":}]`, ``, `[{"a":1`} {
		if FirstObjectFields([]byte(s), []string{"delta"}, v[:]) {
			t.Errorf("FirstObjectFields(%s) = true", s)
		}
	}
	for raw, want := range map[string]string{`"plain"`: "plain", `"a\nb\u00e9"`: "a\nbé", `null`: "", ``: "", `12`: "", `""`: ""} {
		if got := StringValue([]byte(raw)); got != want {
			t.Errorf("StringValue(%s) = %q, want %q", raw, got, want)
		}
	}
}

// Nesting beyond maxDepth is refused rather than recursed into.
func TestObjectFieldsDepthBound(t *testing.T) {
	deep := `{"a":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`
	var v [1][]byte
	if ObjectFields([]byte(deep), []string{"a"}, v[:]) {
		t.Fatal("accepted nesting deeper than maxDepth")
	}
	ok := `{"a":` + strings.Repeat("[", maxDepth-2) + strings.Repeat("]", maxDepth-2) + `}`
	if !ObjectFields([]byte(ok), []string{"a"}, v[:]) {
		t.Fatal("refused nesting within maxDepth")
	}
}

func FuzzObjectFields(f *testing.F) {
	for _, s := range jsonSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if strings.Count(string(b), "[")+strings.Count(string(b), "{") >= maxDepth {
			return // may be refused for depth alone
		}
		var elems []string
		arrOK := EachElement(b, func(e []byte) { elems = append(elems, string(e)) })
		if want := json.Valid(b) && strings.HasPrefix(strings.TrimLeft(string(b), " \t\r\n"), "["); arrOK != want {
			t.Fatalf("EachElement(%q) = %v, encoding/json says %v", b, arrOK, want)
		}
		if arrOK {
			var want []string
			for _, e := range gjson.ParseBytes(b).Array() {
				want = append(want, e.Raw)
			}
			if strings.Join(elems, "\x00") != strings.Join(want, "\x00") {
				t.Fatalf("EachElement(%q) = %q, gjson says %q", b, elems, want)
			}
		}
		var v [2][]byte
		got := ObjectFields(b, []string{"a", "b"}, v[:])
		trimmed := strings.TrimLeft(string(b), " \t\r\n")
		want := json.Valid(b) && strings.HasPrefix(trimmed, "{")
		if got != want {
			t.Fatalf("ObjectFields(%q) = %v, encoding/json says %v", b, got, want)
		}
		if got {
			for i, n := range []string{"a", "b"} {
				if string(v[i]) != gjson.GetBytes(b, n).Raw {
					t.Fatalf("ObjectFields(%q) field %s = %q, gjson says %q", b, n, v[i], gjson.GetBytes(b, n).Raw)
				}
			}
		}
	})
}

func BenchmarkObjectFields(b *testing.B) {
	benchObjectFields(b, `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"content":" heron"},"logprobs":null,"finish_reason":null}],"usage":null}`)
}

// A non-stream answer: most of it one long string.
func BenchmarkObjectFieldsCompletion(b *testing.B) {
	benchObjectFields(b, `{"id":"chatcmpl-1","object":"chat.completion","created":1741569952,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"`+
		strings.Repeat("It is a heron, standing in the water. ", 54)+`"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":400,"total_tokens":409}}`)
}

// benchObjectFields picks the three fields the OpenAI adaptor reads from doc.
func benchObjectFields(b *testing.B, doc string) {
	data := []byte(doc)
	names := []string{"choices", "usage", "error"}
	var vals [3][]byte
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if !ObjectFields(data, names, vals[:]) {
			b.Fatal("invalid")
		}
	}
}

// The eight-bytes-at-a-time string scan finds a special byte at every offset of a group.
func TestObjectFieldsStringOffsets(t *testing.T) {
	specials := []string{`"`, `\`, `\n`, `\u00e9`, `\q`, "\x01", "\x1f", "é", "\x7f", " ", `\"`}
	for n := 0; n < 40; n++ {
		for _, sp := range specials {
			s := `{"a":"` + strings.Repeat("x", n) + sp + strings.Repeat("y", 40-n) + `"}`
			var v [1][]byte
			got := ObjectFields([]byte(s), []string{"a"}, v[:])
			if want := json.Valid([]byte(s)); got != want {
				t.Fatalf("%q: valid = %v, encoding/json says %v", s, got, want)
			}
			if got && string(v[0]) != gjson.Get(s, "a").Raw {
				t.Fatalf("%q: a = %q", s, v[0])
			}
		}
	}
}
