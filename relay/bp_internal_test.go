package relay

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/tidwall/gjson"
)

// A panic in a strategy-surface handler answers 500 in the surface's error shape.
func TestBPRecoveryAnswersInShape(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	e := gin.New()
	e.GET("/x", s.bpRecovery(), func(*gin.Context) { panic("boom") })
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
	if w.Code != 500 || w.Body.String() != `{"error":{"error_type":"internal_error","message":"internal error"}}` {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

// Any body the strategy surface accepts turns into an upstream body the core accepts, and no body
// (nor any parameters) panics the parser or the renderer.
func FuzzBPChatRequest(f *testing.F) {
	for _, s := range []string{
		`{"strategy":"s","parameters":{"a":{"b":1}},"messages":[{"role":"user","content":"hi"}]}`,
		`{"strategy":"s","response_format":{"type":"json_object"},"chat_id":"Ct1","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"https://e/x.png"}}]}]}`,
		`{"strategy":"s","parameters":{"a":"<no value>\u0000","n":1e400},"messages":[{"role":"assistant","content":null},{"role":"user","content":"q"}]}`,
		`{"strategy":1}`, `[]`, `{"strategy":"s","messages":[]}`, `{"strategy":"s","parameters":null,"messages":[{"role":"user","content":"\ud800"}]}`,
	} {
		f.Add(s)
	}
	tm, err := parseTemplate("system", `A {{ .a }} B {{ .a.b }} {{ json . }}`)
	if err != nil {
		f.Fatal(err)
	}
	st := &strategy{name: "s", model: "m", system: tm, responseFormat: "text"}
	f.Fuzz(func(t *testing.T, body string) {
		r, e := parseBPChat([]byte(body))
		if e != nil {
			if e.status != 400 || e.typ != bpInvalidParameter || e.msg == "" {
				t.Fatalf("refusal %+v", e)
			}
			return
		}
		params, err := decodeParams(r.params)
		if err != nil {
			return
		}
		up, err := buildStrategyBody(st, params, nil, r.messages, r.responseFormat, strings.Contains(body, "x"))
		if err != nil {
			if _, ok := err.(*renderError); !ok {
				t.Fatalf("render error of type %T: %v", err, err)
			}
			return
		}
		if _, aerr := ParseChatRequest(up); aerr != nil {
			t.Fatalf("accepted body %s gave an upstream body the core refuses: %v\n%s", body, aerr, up)
		}
		if !gjson.ValidBytes(up) {
			t.Fatalf("invalid upstream JSON %s", up)
		}
	})
}
