package spark

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"testing"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// Frames from the wire document §4.1 (own content).
const (
	docFrame0 = `{"header":{"code":0,"message":"Success","sid":"cht000a11@dx0000000001","status":0},"payload":{"choices":{"status":0,"seq":0,"text":[{"content":"Eleven","role":"assistant","index":0}]}}}`
	docFrame1 = `{"header":{"code":0,"message":"Success","sid":"cht000a11@dx0000000001","status":1},"payload":{"choices":{"status":1,"seq":1,"text":[{"content":" is also","role":"assistant","index":0}]}}}`
	docFrame2 = `{"header":{"code":0,"message":"Success","sid":"cht000a11@dx0000000001","status":1},"payload":{"choices":{"status":1,"seq":2,"text":[{"content":" prime","role":"assistant","index":0}]}}}`
	docFrame3 = `{"header":{"code":0,"message":"Success","sid":"cht000a11@dx0000000001","status":2},"payload":{"choices":{"status":2,"seq":3,"text":[{"content":".","role":"assistant","index":0}]},"usage":{"text":{"question_tokens":4,"prompt_tokens":31,"completion_tokens":5,"total_tokens":36}}}}`
	zhFrame   = `{"header":{"code":0,"message":"Success","sid":"cht000b1234@dx18c0ffee0000000000","status":1},"payload":{"choices":{"status":1,"seq":1,"text":[{"content":"星火认知大模型是科大讯飞推出的","role":"assistant","index":0}]}}}`
	escFrame  = `{"header":{"code":0,"message":"Success","sid":"s","status":1},"payload":{"choices":{"status":1,"seq":1,"text":[{"content":"line\n\"quoted\" \u4f60\u597d","role":"assistant","index":0}]}}}`
	fnFrame   = `{"header":{"code":0,"message":"Success","sid":"cht000c@dx1","status":2},"payload":{"choices":{"status":2,"seq":0,"text":[{"content":"","role":"assistant","index":0,"content_type":"text","function_call":{"arguments":"{\"city\":\"Paris\"}","name":"get_weather"}}]},"usage":{"text":{"question_tokens":0,"prompt_tokens":60,"completion_tokens":12,"total_tokens":72}}}}`
	errFrame  = `{"header":{"code":10013,"message":"input content audit failed","sid":"cht000a12@dx0000000002","status":2}}`
)

type decoded struct {
	choices  string
	usage    adaptor.Usage
	hasUsage bool
	last     bool
	err      error
	nilEvent bool
}

func decodeAll(frames ...string) []decoded {
	var d decoder
	var out []decoded
	for _, f := range frames {
		ev, last, err := d.decode([]byte(f))
		r := decoded{last: last, err: err, nilEvent: ev == nil}
		if ev != nil {
			r.choices, r.usage, r.hasUsage = string(ev.Choices), ev.Usage, ev.HasUsage
		}
		out = append(out, r)
	}
	return out
}

func TestDecodeDocStream(t *testing.T) {
	got := decodeAll(docFrame0, docFrame1, docFrame2, docFrame3)
	want := []decoded{
		{choices: `[{"index":0,"delta":{"role":"assistant","content":"Eleven"},"finish_reason":null}]`},
		{choices: `[{"index":0,"delta":{"content":" is also"},"finish_reason":null}]`},
		{choices: `[{"index":0,"delta":{"content":" prime"},"finish_reason":null}]`},
		{choices: `[{"index":0,"delta":{"content":"."},"finish_reason":"stop"}]`, last: true,
			usage: adaptor.Usage{PromptTokens: 31, CompletionTokens: 5, TotalTokens: 36}, hasUsage: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
}

func TestDecodeFrames(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames []string
		want   decoded // for the last frame
	}{
		{"chinese", []string{zhFrame}, decoded{choices: `[{"index":0,"delta":{"role":"assistant","content":"星火认知大模型是科大讯飞推出的"},"finish_reason":null}]`}},
		{"escapes", []string{docFrame0, escFrame}, decoded{choices: `[{"index":0,"delta":{"content":"line\n\"quoted\" 你好"},"finish_reason":null}]`}},
		{"index as string", []string{`{"header":{"code":0,"status":1},"payload":{"choices":{"status":1,"seq":1,"text":[{"content":"x","role":"assistant","index":"0"}]}}}`},
			decoded{choices: `[{"index":0,"delta":{"role":"assistant","content":"x"},"finish_reason":null}]`}},
		{"empty piece skipped", []string{`{"header":{"code":0,"status":1},"payload":{"choices":{"status":1,"seq":1,"text":[{"content":"","role":"assistant","index":0}]}}}`},
			decoded{nilEvent: true}},
		{"plugins frame skipped", []string{`{"header":{"code":0,"message":"Success","sid":"s","status":1},"payload":{"plugins":{"text":[{"name":"ifly_search","content":"[]","role":"tool","status":"finished"}]}}}`},
			decoded{nilEvent: true}},
		{"last frame empty, only usage", []string{docFrame0, `{"header":{"code":0,"status":2},"payload":{"choices":{"status":2,"seq":1,"text":[{"content":"","role":"assistant","index":0}]},"usage":{"text":{"prompt_tokens":3,"completion_tokens":2}}}}`},
			decoded{choices: `[{"index":0,"delta":{},"finish_reason":"stop"}]`, last: true, usage: adaptor.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}, hasUsage: true}},
		{"status only in choices", []string{`{"header":{"code":0},"payload":{"choices":{"status":2,"text":[{"content":"end"}]}}}`},
			decoded{choices: `[{"index":0,"delta":{"role":"assistant","content":"end"},"finish_reason":"stop"}]`, last: true}},
		{"error frame", []string{errFrame}, decoded{nilEvent: true, err: &adaptor.Error{Status: 400, Type: adaptor.TypeInvalidRequest,
			Code: "10013", Message: "upstream: input content audit failed (spark code 10013, sid cht000a12@dx0000000002)"}}},
		{"code as string", []string{`{"header":{"code":"11202","message":"rate","sid":"s"}}`}, decoded{nilEvent: true, err: &adaptor.Error{Status: 429,
			Type: adaptor.TypeRateLimit, Code: "11202", Message: "upstream: rate (spark code 11202, sid s)", Retryable: true}}},
		{"content filter after text", []string{docFrame0, `{"header":{"code":10014,"message":"output audit","sid":"s","status":2}}`},
			decoded{choices: `[{"index":0,"delta":{},"finish_reason":"content_filter"}]`, last: true}},
		{"content filter before text", []string{`{"header":{"code":0,"status":0},"payload":{"choices":{"status":0,"text":[{"content":""}]}}}`, `{"header":{"code":10019,"message":"m","sid":"s","status":2}}`},
			decoded{nilEvent: true, err: &adaptor.Error{Status: 400, Type: adaptor.TypeInvalidRequest, Code: "10019", Message: "upstream: m (spark code 10019, sid s)"}}},
		{"malformed", []string{`{"header":{"code":0`}, decoded{nilEvent: true, err: &adaptor.Error{Status: 502, Type: adaptor.TypeServer,
			Code: "bad_frame", Message: "upstream: malformed Spark frame", Retryable: true}}},
	} {
		got := decodeAll(tc.frames...)
		if last := got[len(got)-1]; !reflect.DeepEqual(last, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, last, tc.want)
		}
	}
}

var callID = regexp.MustCompile(`"call_[0-9A-Za-z]{24}"`)

func TestDecodeFunctionCall(t *testing.T) {
	got := decodeAll(fnFrame)[0]
	if n := len(callID.FindAllString(got.choices, -1)); n != 1 {
		t.Fatalf("want one generated call id, found %d in %s", n, got.choices)
	}
	got.choices = callID.ReplaceAllString(got.choices, `"call_ID"`)
	want := decoded{
		choices: `[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_ID","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}]`,
		usage:   adaptor.Usage{PromptTokens: 60, CompletionTokens: 12, TotalTokens: 72}, hasUsage: true, last: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
}

func TestCodeError(t *testing.T) {
	for _, tc := range []struct {
		code      int64
		status    int
		typ       string
		retryable bool
	}{
		{10003, 400, adaptor.TypeInvalidRequest, false},
		{10004, 400, adaptor.TypeInvalidRequest, false},
		{10005, 400, adaptor.TypeInvalidRequest, false},
		{10163, 400, adaptor.TypeInvalidRequest, false},
		{10013, 400, adaptor.TypeInvalidRequest, false},
		{10014, 400, adaptor.TypeInvalidRequest, false},
		{10019, 400, adaptor.TypeInvalidRequest, false},
		{10021, 400, adaptor.TypeInvalidRequest, false},
		{10907, 400, adaptor.TypeInvalidRequest, false},
		{10015, 403, adaptor.TypePermission, false},
		{10016, 403, adaptor.TypePermission, false},
		{10006, 429, adaptor.TypeRateLimit, true},
		{10007, 429, adaptor.TypeRateLimit, true},
		{11200, 429, adaptor.TypeRateLimit, true},
		{11201, 429, adaptor.TypeRateLimit, true},
		{11202, 429, adaptor.TypeRateLimit, true},
		{11203, 429, adaptor.TypeRateLimit, true},
		{10008, 503, adaptor.TypeServer, true},
		{10110, 503, adaptor.TypeServer, true},
		{10000, 502, adaptor.TypeServer, true},
		{10012, 502, adaptor.TypeServer, true},
		{10222, 502, adaptor.TypeServer, true},
		{99999, 502, adaptor.TypeServer, true},
	} {
		got := CodeError(tc.code, "msg", "sid1")
		want := &adaptor.Error{Status: tc.status, Type: tc.typ, Code: itoa(tc.code),
			Message: "upstream: msg (spark code " + itoa(tc.code) + ", sid sid1)", Retryable: tc.retryable}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%d: got %+v, want %+v", tc.code, got, want)
		}
	}
	got := CodeError(10110, "", "")
	if got.Message != "upstream: Spark error (spark code 10110)" {
		t.Errorf("empty message and sid: %q", got.Message)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// FuzzDecode feeds arbitrary frames to the decoder: it must not panic, an event's choices must be a
// JSON array, and every error must be an *adaptor.Error.
var seeds = []string{docFrame0, docFrame1, docFrame3, zhFrame, escFrame, fnFrame, errFrame,
	`{}`, `[]`, `null`, `{"header":{"code":0,"status":2}}`, `{"payload":{"choices":{"text":[{"content":"\ud800"}]}}}`,
	`{"header":{"code":10013},"payload":{"choices":{"text":[{"content":"x"}]}}}`,
	`{"payload":{"choices":{"status":2,"text":[{"function_call":{"name":1,"arguments":{"a":[1]}}}]}}}`,
	"{\"payload\":{\"choices\":{\"text\":[{\"content\":\"\xff\xfe\"}]}}}",
	` { "header" : { "code" : 0 , "status" : 1 } , "payload" : { "choices" : { "text" : [ { "content" : "a\\\"b" } , { "content" : "no" } ] } } } `,
	`{"header":{"code":0},"header":{"code":5,"message":"dup"},"payload":{"choices":{"text":[]},"usage":{"text":{"total_tokens":1},"text":null}}}`,
	`{"\u0068eader":{"c\u006fde":10110},"payload":{"choices":{"text":[[1],{"content":"x"}]}}}`}

func FuzzDecode(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var d decoder
		for range 2 { // twice: the second pass runs with the builder's role already sent
			ev, _, err := d.decode(frame)
			if err != nil {
				var ae *adaptor.Error
				if !errors.As(err, &ae) || ev != nil {
					t.Fatalf("error %T %v with event %v", err, err, ev)
				}
				continue
			}
			if ev == nil {
				continue
			}
			var choices []map[string]any
			if err := json.Unmarshal(ev.Choices, &choices); err != nil || len(choices) != 1 {
				t.Fatalf("choices %q: %v", ev.Choices, err)
			}
		}
	})
}

// scanRef is the plain gjson reading of a frame (ForEach per level, last key wins as in scan): the
// oracle the one-pass cursor is checked against.
func scanRef(s string) [8]string {
	var f struct {
		code, status, choicesStatus, call, usage gjson.Result
		message, sid, content                    string
	}
	gjson.Parse(s).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "header":
			v.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "code":
					f.code = v
				case "status":
					f.status = v
				case "message":
					f.message = v.Str
				case "sid":
					f.sid = v.Str
				}
				return true
			})
		case "payload":
			v.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "choices":
					v.ForEach(func(k, v gjson.Result) bool {
						switch k.Str {
						case "status":
							f.choicesStatus = v
						case "text":
							v.ForEach(func(_, t gjson.Result) bool {
								t.ForEach(func(k, v gjson.Result) bool {
									switch k.Str {
									case "content":
										f.content = v.Str
									case "function_call":
										f.call = v
									}
									return true
								})
								return false
							})
						}
						return true
					})
				case "usage":
					v.ForEach(func(k, v gjson.Result) bool {
						if k.Str == "text" {
							f.usage = v
						}
						return true
					})
				}
				return true
			})
		}
		return true
	})
	return [8]string{itoa(f.code.Int()), itoa(f.status.Int()), itoa(f.choicesStatus.Int()), f.message, f.sid, f.content, f.call.Raw, f.usage.Raw}
}

// summary is what decode uses of the fields.
func summary(f fields) [8]string {
	return [8]string{itoa(intOf(f.code)), itoa(intOf(f.status)), itoa(intOf(f.choicesStatus)), f.message, f.sid, f.content, f.call.Raw, f.usage.Raw}
}

// FuzzScan checks the one-pass cursor against gjson's own reading on every valid JSON input.
func FuzzScan(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		s := string(frame)
		if !gjson.Valid(s) {
			return
		}
		if got, want := summary(scan(s)), scanRef(s); got != want {
			t.Fatalf("scan %q\n got %q\nwant %q", s, got, want)
		}
	})
}

func benchDecode(b *testing.B, frame string) {
	data := []byte(frame)
	var d decoder
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := d.decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeFrame is the per-frame translation cost: one Spark frame to one OpenAI chunk.
func BenchmarkDecodeFrame(b *testing.B) {
	b.Run("text", func(b *testing.B) { benchDecode(b, docFrame1) })
	b.Run("chinese", func(b *testing.B) { benchDecode(b, zhFrame) })
	b.Run("escaped", func(b *testing.B) { benchDecode(b, escFrame) })
	b.Run("final+usage", func(b *testing.B) { benchDecode(b, docFrame3) })
}
