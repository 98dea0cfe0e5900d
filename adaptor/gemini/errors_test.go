package gemini

import (
	"strings"
	"testing"

	"relay/adaptor"
	"relay/adaptor/gemini/geminitest"
)

func TestParseError(t *testing.T) {
	keyInfo := map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}
	retry := map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}
	cases := []struct {
		name      string
		http      int
		body      []byte
		status    int
		typ, code string
		msg       string
		retryable bool
	}{
		{"invalid key is 401", 400, geminitest.ErrorBody(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", keyInfo),
			401, adaptor.TypeAuthentication, "invalid_api_key", "API key not valid", false},
		{"invalid key without details", 400, geminitest.ErrorBody(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
			401, adaptor.TypeAuthentication, "invalid_api_key", "API key not valid", false},
		{"bad argument", 400, geminitest.ErrorBody(400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified"),
			400, adaptor.TypeInvalidRequest, "invalid_argument", "contents is not specified", false},
		{"failed precondition", 400, geminitest.ErrorBody(400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
			403, adaptor.TypePermission, "failed_precondition", "User location", false},
		{"permission", 403, geminitest.ErrorBody(403, "PERMISSION_DENIED", "denied"), 403, adaptor.TypePermission, "permission_denied", "denied", false},
		{"not found", 404, geminitest.ErrorBody(404, "NOT_FOUND", "models/nope is not found for API version v1beta"),
			404, adaptor.TypeNotFound, "not_found", "models/nope", false},
		{"quota", 429, geminitest.ErrorBody(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota", retry),
			429, adaptor.TypeRateLimit, "rate_limit_exceeded", "quota (retry after 37s)", true},
		{"internal", 500, geminitest.ErrorBody(500, "INTERNAL", "An internal error has occurred."), 500, adaptor.TypeServer, "internal", "internal error", true},
		{"overloaded", 503, geminitest.ErrorBody(503, "UNAVAILABLE", "The model is overloaded."), 503, adaptor.TypeServer, "unavailable", "overloaded", true},
		{"deadline", 504, geminitest.ErrorBody(504, "DEADLINE_EXCEEDED", "Deadline expired"), 504, adaptor.TypeTimeout, "deadline_exceeded", "Deadline", true},
		{"unknown status name uses code", 502, []byte(`{"error":{"code":503,"message":"busy","status":"SOMETHING_NEW"}}`),
			503, adaptor.TypeServer, "something_new", "busy", true},
		{"array-wrapped", 400, []byte(`[{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}]`),
			400, adaptor.TypeInvalidRequest, "invalid_argument", "bad", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := ParseError(c.http, c.body)
			if e == nil {
				t.Fatal("nil")
			}
			if e.Status != c.status || e.Type != c.typ || e.Code != c.code || !strings.Contains(e.Message, c.msg) || e.Retryable != c.retryable {
				t.Fatalf("got %+v", e)
			}
			if !strings.HasPrefix(e.Message, "upstream: ") {
				t.Fatalf("message %q", e.Message)
			}
			if want := map[bool]string{true: "37"}[c.name == "quota"]; e.RetryAfter != want {
				t.Fatalf("RetryAfter %q, want %q", e.RetryAfter, want)
			}
		})
	}
	for _, body := range []string{"", "<html>bad gateway</html>", `{"message":"x"}`, `{"error":"flat"}`} {
		if e := ParseError(502, []byte(body)); e != nil {
			t.Fatalf("%q: want nil (generic fallback), got %+v", body, e)
		}
	}
}
