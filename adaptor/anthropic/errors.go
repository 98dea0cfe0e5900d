package anthropic

import (
	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// statusForType is the OpenAI-side status for an Anthropic error type, used when the HTTP status says
// nothing (a 200 stream carrying an error event, or a JSON error with status 200).
func statusForType(typ string) int {
	switch typ {
	case "invalid_request_error":
		return 400
	case "authentication_error":
		return 401
	case "billing_error":
		return 402
	case "permission_error":
		return 403
	case "not_found_error":
		return 404
	case "request_too_large":
		return 413
	case "rate_limit_error":
		return 429
	case "api_error":
		return 500
	case "overloaded_error":
		return 503
	case "timeout_error":
		return 504
	}
	return 502
}

// clientStatus maps an Anthropic HTTP status to the one the relay's caller sees: 529 (overloaded) is
// not a status OpenAI clients know, so it becomes 503, which they retry.
func clientStatus(status int) int {
	if status == 529 {
		return 503
	}
	return status
}

// ParseError reads an Anthropic error body ({"type":"error","error":{"type","message"},"request_id"})
// into an *adaptor.Error. status is the HTTP status of the answer; below 400 (an error delivered with
// 200) the status is derived from the error type. It never returns nil.
func ParseError(status int, body []byte) *adaptor.Error {
	s := adaptor.BytesString(body)
	var typ, msg, rid string
	if gjson.Valid(s) {
		msg, _ = adaptor.ErrorMessage(body)
		typ = gjson.Get(s, "error.type").Str // Anthropic's error type, which picks the status below
		rid = gjson.Get(s, "request_id").Str
	}
	if status < 400 {
		status = statusForType(typ)
	}
	status = clientStatus(status)
	if msg != "" && rid != "" {
		msg += " (request_id " + rid + ")"
	}
	return adaptor.UpstreamError(status, typ, msg)
}

// streamError turns a mid-stream error event into an *adaptor.Error.
func streamError(data []byte) *adaptor.Error {
	e := ParseError(0, data)
	if e.Code == "" {
		e.Code = "upstream_stream_error"
	}
	return e
}
