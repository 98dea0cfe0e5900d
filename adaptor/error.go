package adaptor

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"

	"github.com/tidwall/gjson"
)

// Error is the one error type adaptors return. Surfaces render it in their own error shape.
type Error struct {
	// Status is the HTTP status the caller should see.
	Status int
	// Type and Code follow OpenAI's error object (type "invalid_request_error", code "model_not_found").
	Type    string
	Code    string
	Param   string
	Message string
	// Retryable reports whether trying another channel may help (connect errors, 429, 5xx).
	Retryable bool
	// RetryAfter is the upstream's Retry-After header (seconds or an HTTP date), passed on to clients.
	RetryAfter string
}

func (e *Error) Error() string {
	return strconv.Itoa(e.Status) + " " + e.Type + ": " + e.Message
}

// Errors the core and surfaces share. Types follow OpenAI's vocabulary.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
	TypeUpstream       = "upstream_error"
	TypeTimeout        = "timeout_error"
)

// NewError builds an *Error; retryable is derived from the status.
func NewError(status int, typ, code, msg string) *Error {
	return &Error{Status: status, Type: typ, Code: code, Message: msg, Retryable: RetryableStatus(status)}
}

// BadRequest is a 400 invalid_request_error naming the offending parameter.
func BadRequest(param, msg string) *Error {
	return &Error{Status: 400, Type: TypeInvalidRequest, Param: param, Message: msg}
}

// RetryableStatus reports whether an upstream answer with this status may succeed on another channel.
func RetryableStatus(status int) bool {
	return status == 408 || status == 429 || status >= 500
}

// TypeForStatus picks the OpenAI error type for an HTTP status.
func TypeForStatus(status int) string {
	switch {
	case status == 401:
		return TypeAuthentication
	case status == 403:
		return TypePermission
	case status == 404:
		return TypeNotFound
	case status == 429:
		return TypeRateLimit
	case status == 504 || status == 408:
		return TypeTimeout
	case status >= 500:
		return TypeServer
	default:
		return TypeInvalidRequest
	}
}

// UpstreamError turns an upstream's error answer into an *Error of the same status class. The message
// is the upstream's own (adaptors extract it from the body; it never contains our credentials).
func UpstreamError(status int, code, msg string) *Error {
	if status < 400 || status > 599 {
		status = 502
	}
	if msg == "" {
		msg = "upstream answered HTTP " + strconv.Itoa(status)
	}
	return &Error{Status: status, Type: TypeForStatus(status), Code: code, Message: "upstream: " + msg,
		Retryable: RetryableStatus(status)}
}

// ErrorMessage reads the message and code of an upstream error body in the shapes most APIs use:
// {"error":{"message","code"|"type"|"status"}}, {"error":"text"}, and a top-level "message" or "msg" and
// "code". msg is the first non-empty of error.message, error (as a string), message and msg; code the
// first of error.code, error.type, error.status and code (a string, or a number as written). Both are
// empty when the body says none of these. Mapping them to a status is the adaptor's own business.
func ErrorMessage(body []byte) (msg, code string) {
	// GetBytes copies what it returns: body may be a reused stream buffer.
	e := gjson.GetBytes(body, "error")
	msg = e.Get("message").Str
	if msg == "" && e.Type == gjson.String {
		msg = e.Str
	}
	if msg == "" {
		msg = gjson.GetBytes(body, "message").Str
	}
	if msg == "" {
		msg = gjson.GetBytes(body, "msg").Str
	}
	for _, c := range [...]gjson.Result{e.Get("code"), e.Get("type"), e.Get("status"), gjson.GetBytes(body, "code")} {
		if c.Type == gjson.String && c.Str != "" {
			return msg, c.Str
		}
		if c.Type == gjson.Number {
			return msg, c.Raw
		}
	}
	return msg, ""
}

// TransportError maps a failed round trip to 499 (client went away), 504 (timeout) or 502 (unreachable).
// The message leaves out the URL, which may carry signed credentials.
func TransportError(ctx context.Context, err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctx != nil && errors.Is(ctx.Err(), context.Canceled) {
		return &Error{Status: 499, Type: TypeInvalidRequest, Code: "client_closed", Message: "client closed the request"}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &Error{Status: 504, Type: TypeTimeout, Code: "upstream_timeout", Message: "upstream timed out", Retryable: true}
	}
	return &Error{Status: 502, Type: TypeUpstream, Code: "upstream_unreachable",
		Message: "upstream unreachable: " + err.Error(), Retryable: true}
}

// StreamBroken is the error for a stream that ended without the upstream's end signal.
func StreamBroken(detail string) *Error {
	return &Error{Status: 502, Type: TypeUpstream, Code: "upstream_stream_broken",
		Message: "upstream stream ended early: " + detail, Retryable: true}
}

// AsError converts any error to *Error (unknown errors become 502).
func AsError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	return &Error{Status: 502, Type: TypeUpstream, Message: err.Error(), Retryable: true}
}
