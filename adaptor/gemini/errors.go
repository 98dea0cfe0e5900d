package gemini

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// ParseError reads a Google RPC-style error body ({"error":{"code","message","status","details"}}) and
// maps it to an OpenAI-style *adaptor.Error. It returns nil when body holds no such error, so
// adaptor.Send falls back to a generic error of the same HTTP status.
func ParseError(status int, body []byte) *adaptor.Error {
	e := gjson.GetBytes(body, "error")
	if !e.IsObject() {
		// Some front ends wrap errors in a one-element array.
		if e = gjson.GetBytes(body, "0.error"); !e.IsObject() {
			return nil
		}
	}
	return errorFrom(status, e)
}

// rpcStatus maps google.rpc.Code names to the HTTP status the caller should see.
var rpcStatus = map[string]int{
	"INVALID_ARGUMENT":    400,
	"OUT_OF_RANGE":        400,
	"FAILED_PRECONDITION": 403, // unsupported location, billing not enabled
	"UNAUTHENTICATED":     401,
	"PERMISSION_DENIED":   403,
	"NOT_FOUND":           404,
	"ALREADY_EXISTS":      409,
	"ABORTED":             409,
	"RESOURCE_EXHAUSTED":  429,
	"CANCELLED":           502, // the upstream gave up; 499 is kept for our own client leaving
	"UNKNOWN":             500,
	"INTERNAL":            500,
	"DATA_LOSS":           500,
	"UNIMPLEMENTED":       501,
	"UNAVAILABLE":         503,
	"DEADLINE_EXCEEDED":   504,
}

// errorFrom maps one error object. httpStatus is the answer's status (502 for an error met inside a
// stream, whose HTTP status was 200); the error's own status name, then its code, take precedence.
func errorFrom(httpStatus int, e gjson.Result) *adaptor.Error {
	msg := e.Get("message").Str
	rpc := e.Get("status").Str
	status := httpStatus
	if s, ok := rpcStatus[rpc]; ok {
		status = s
	} else if c := int(e.Get("code").Int()); c >= 400 && c <= 599 && (httpStatus < 400 || httpStatus == 502) {
		status = c
	}
	code := strings.ToLower(rpc)
	reason := ""
	retry := ""
	e.Get("details").ForEach(func(_, d gjson.Result) bool {
		if r := d.Get("reason").Str; r != "" && reason == "" {
			reason = r
		}
		if r := d.Get("retryDelay").Str; r != "" {
			retry = r
		}
		return true
	})
	switch {
	case reason == "API_KEY_INVALID" || reason == "API_KEY_EXPIRED" ||
		(status == 400 && strings.Contains(msg, "API key not valid")):
		// Google reports a bad key as 400 INVALID_ARGUMENT; callers expect 401.
		status, code = 401, "invalid_api_key"
	case status == 429:
		code = "rate_limit_exceeded"
	case code == "" && reason != "":
		code = strings.ToLower(reason)
	}
	if retry != "" {
		msg += " (retry after " + retry + ")"
	}
	if msg == "" && rpc != "" {
		msg = rpc
	}
	ae := adaptor.UpstreamError(status, code, msg)
	// RetryInfo's delay ("37s", "1.5s") becomes Retry-After in whole seconds, for the client and for
	// the relay's key rotation (Send uses an HTTP Retry-After header only when the body gives none).
	if d, err := time.ParseDuration(retry); err == nil && d > 0 {
		ae.RetryAfter = strconv.Itoa(int(math.Ceil(d.Seconds())))
	}
	return ae
}
