package ollama

import (
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// Ollama's error body is {"error":"<message>"} (wire doc §5); 401 from ollama.com adds signin_url.

// ParseError turns a non-2xx Ollama answer into an *adaptor.Error with the upstream's status. A 404
// carrying an Ollama error is a model the server does not have (model_not_found); a 404 without one
// means the URL is wrong (base_url must be the server root, not .../v1).
func ParseError(status int, body []byte) *adaptor.Error {
	msg, isOllama := errorText(body)
	if status == 404 {
		if !isOllama {
			return &adaptor.Error{Status: 404, Type: adaptor.TypeNotFound, Code: "not_found",
				Message: "upstream: ollama answered 404 for /api/chat (base_url must be the server root, such as " + DefaultBaseURL + ")"}
		}
		return modelNotFound(msg)
	}
	code := ""
	switch status {
	case 401:
		code = "unauthorized"
		if u := gjson.GetBytes(body, "signin_url"); u.Type == gjson.String && u.Str != "" {
			msg += " (sign in at " + u.Str + ")"
		}
	case 429:
		code = "rate_limit_exceeded"
	}
	return adaptor.UpstreamError(status, code, msg)
}

// streamError maps an {"error":...} object Ollama sent with status 200, mid-stream or as its answer.
// The status is inferred from the message: a missing model is 404, anything else a failed upstream (502).
func streamError(v gjson.Result) *adaptor.Error {
	msg := v.Str
	if v.IsObject() {
		msg = v.Get("message").String()
	} else if v.Type != gjson.String {
		msg = v.Raw
	}
	msg = clip(msg)
	if isModelNotFound(msg) {
		return modelNotFound(msg)
	}
	return adaptor.UpstreamError(502, "upstream_error", msg)
}

func modelNotFound(msg string) *adaptor.Error {
	return &adaptor.Error{Status: 404, Type: adaptor.TypeInvalidRequest, Code: "model_not_found", Param: "model",
		Message: "upstream: " + msg}
}

func isModelNotFound(msg string) bool {
	return strings.Contains(msg, "model") && strings.Contains(msg, "not found")
}

// errorText extracts the message of an error body, reporting whether the body was Ollama's JSON error.
// Other bodies (a proxy's HTML or plain text) give their first line, clipped.
func errorText(body []byte) (string, bool) {
	if gjson.ValidBytes(body) {
		e := gjson.GetBytes(body, "error")
		switch {
		case e.Type == gjson.String:
			return clip(strings.TrimSpace(e.Str)), true
		case e.IsObject():
			return clip(strings.TrimSpace(e.Get("message").String())), true
		}
	}
	s := strings.TrimSpace(string(body))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return clip(s), false
}

// clip bounds an upstream message for error bodies and logs.
func clip(s string) string {
	const max = 512
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
