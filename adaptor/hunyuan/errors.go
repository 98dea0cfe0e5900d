package hunyuan

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// apiError maps a Tencent Cloud API error (Response.Error) to the relay's error. Tencent answers these
// with HTTP 200, so the status comes from the code class, not from the HTTP answer.
func apiError(code, msg, requestID string) *adaptor.Error {
	status, oaCode, retry := classify(code)
	if oaCode == "" {
		oaCode = code
	}
	if msg == "" {
		msg = "request failed"
	}
	text := "upstream: hunyuan " + code + ": " + msg
	if requestID != "" {
		text += " (RequestId " + requestID + ")"
	}
	return &adaptor.Error{Status: status, Type: adaptor.TypeForStatus(status), Code: oaCode, Message: text,
		Retryable: retry}
}

// classify picks status, OpenAI-style code (empty keeps Tencent's) and whether another channel may help.
// Credential and billing failures belong to this channel's account, so another channel may well succeed.
func classify(code string) (status int, oaCode string, retry bool) {
	switch {
	case strings.HasPrefix(code, "AuthFailure"):
		return 401, "", true
	case code == "InvalidParameterValue.Model":
		return 404, "model_not_found", false
	case strings.HasPrefix(code, "OperationDenied.") && strings.HasSuffix(code, "IllegalDetected"):
		return 400, "content_filter", false
	case strings.HasPrefix(code, "LimitExceeded"), strings.HasPrefix(code, "RequestLimitExceeded"),
		code == "FailedOperation.EngineServerLimitExceeded":
		return 429, "rate_limit_exceeded", true
	case code == "FailedOperation.EngineRequestTimeout":
		return 504, "", true
	case code == "FailedOperation.EngineServerError":
		return 503, "", true
	case strings.HasPrefix(code, "InternalError"):
		return 502, "", true
	case code == "FailedOperation.UserUnAuthError", strings.HasPrefix(code, "UnauthorizedOperation"):
		return 403, "", true
	case isBilling(code):
		return 403, "insufficient_quota", true
	case strings.HasPrefix(code, "InvalidParameter"), strings.HasPrefix(code, "MissingParameter"),
		strings.HasPrefix(code, "UnknownParameter"), strings.HasPrefix(code, "InvalidAction"),
		strings.HasPrefix(code, "OperationDenied"):
		return 400, "", false
	}
	return 502, "", true
}

func isBilling(code string) bool {
	switch code {
	case "FailedOperation.ServiceNotActivated", "FailedOperation.ServiceStop", "FailedOperation.ServiceStopArrears",
		"FailedOperation.ResourcePackExhausted", "FailedOperation.FreeResourcePackExhausted":
		return true
	}
	return strings.HasPrefix(code, "ResourceUnavailable") || strings.HasPrefix(code, "ResourceInsufficient")
}

// responseError returns the error in a {"Response":{"Error":...}} body, or nil when it has none.
func responseError(body gjson.Result) *adaptor.Error {
	r := body.Get("Response")
	e := r.Get("Error")
	if !e.IsObject() {
		return nil
	}
	return apiError(e.Get("Code").String(), e.Get("Message").String(), r.Get("RequestId").String())
}

// parseHTTPError reads a non-2xx answer; a Tencent error body wins over the HTTP status.
func parseHTTPError(status int, body []byte) *adaptor.Error {
	if gjson.ValidBytes(body) {
		if e := responseError(gjson.ParseBytes(body)); e != nil {
			return e
		}
	}
	return adaptor.UpstreamError(status, "", "")
}

// streamError maps a mid-stream ErrorMsg frame (4000 internal error, 4001 model timeout).
func streamError(e gjson.Result, requestID string) *adaptor.Error {
	code := e.Get("Code").Int()
	status, oaCode := 502, "upstream_error"
	if code == 4001 {
		status, oaCode = 504, "upstream_timeout"
	}
	msg := e.Get("Msg").String()
	if msg == "" {
		msg = e.Get("Message").String()
	}
	text := "upstream: hunyuan stream error " + strconv.FormatInt(code, 10) + ": " + msg
	if requestID != "" {
		text += " (RequestId " + requestID + ")"
	}
	return &adaptor.Error{Status: status, Type: adaptor.TypeForStatus(status), Code: oaCode, Message: text,
		Retryable: true}
}
