package fastgpt

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// FastGPT reports failures as {"code","statusText","message","data"} (JSON answers: HTTP 500 in
// current releases, HTTP 200 in older ones) or, in streams, as an `event: error` frame holding either
// {"message"} or that same object. The HTTP status says little, so the fixed error objects (matched
// on statusText or code) and a few known messages decide the status the client sees.

// fixedErrors are FastGPT's ERROR_RESPONSE objects by statusText.
var fixedErrors = map[string]int{
	"unAuthorization":    401, // code 403, bad credentials
	"unAuthApiKey":       401, // 514
	"openapiUnExist":     401, // 506000, key does not exist
	"openapiUnAuth":      401, // 506001
	"insufficientQuota":  429, // 510, balance exhausted
	"openapiExceedLimit": 429, // 506002, key usage limit
	"unAuthModel":        403, // 511
	"unAuthFile":         403, // 513
}

// fixedCodes are the same objects by code, for bodies without statusText.
var fixedCodes = map[int64]string{
	403: "unAuthorization", 514: "unAuthApiKey", 506000: "openapiUnExist", 506001: "openapiUnAuth",
	510: "insufficientQuota", 506002: "openapiExceedLimit", 511: "unAuthModel", 513: "unAuthFile",
}

// knownMessages are free-text errors from the completions handler that are the caller's fault.
var knownMessages = []struct {
	prefix string
	status int
	code   string
}{
	{"Key is error", 401, "invalid_api_key"}, // an account key without appId
	{"messages is empty", 400, "invalid_messages"},
	{"messages is not array", 400, "invalid_messages"},
	{"User question is empty", 400, "invalid_messages"},
	{"app is empty", 404, "app_not_found"},
}

// ParseError reads a FastGPT error answer (an HTTP error body, a 200 error object or an error event
// payload) into an *adaptor.Error. httpStatus is the answer's status (200 inside streams).
func ParseError(httpStatus int, body []byte) *adaptor.Error {
	var code int64
	var statusText, msg string
	if gjson.ValidBytes(body) {
		r := gjson.ParseBytes(body)
		code = r.Get("code").Int()
		statusText = r.Get("statusText").Str
		msg = r.Get("message").Str
		if msg == "" {
			// OpenAI-style bodies from a proxy in front, or FastGPT's {"error": ...}.
			msg, _ = adaptor.ErrorMessage(body)
		}
	} else if t := strings.TrimSpace(string(body)); t != "" && len(t) < 200 && !strings.HasPrefix(t, "<") {
		msg = t // a short plain-text answer (gateways); HTML pages are not worth a message
	}
	return MapError(httpStatus, code, statusText, msg)
}

// MapError picks the client-facing error for a FastGPT failure: fixed error objects by statusText or
// code (auth → 401, balance/limit → 429, model/file permission → 403), then known messages, then an
// HTTP status other than 500 or a 4xx code as is; anything else (FastGPT answers every failure with
// 500) is the upstream's failure, 502.
func MapError(httpStatus int, code int64, statusText, msg string) *adaptor.Error {
	status, ecode := 0, ""
	if statusText == "" {
		statusText = fixedCodes[code]
	}
	if s, ok := fixedErrors[statusText]; ok {
		status, ecode = s, statusText
	}
	if status == 0 {
		for _, k := range knownMessages {
			if strings.HasPrefix(msg, k.prefix) {
				status, ecode = k.status, k.code
				break
			}
		}
	}
	if status == 0 {
		switch {
		case httpStatus >= 400 && httpStatus < 600 && httpStatus != 500:
			status = httpStatus // a gateway's or proxy's own status says what happened
		case code >= 400 && code < 500:
			status = int(code)
		default:
			status = 502
		}
	}
	if msg == "" {
		switch {
		case statusText != "" && statusText != "error":
			msg = statusText
		case httpStatus >= 400:
			msg = "FastGPT answered HTTP " + strconv.Itoa(httpStatus)
		default:
			msg = "FastGPT answered without a chat completion"
			if ecode == "" {
				ecode = "bad_response"
			}
		}
	}
	return adaptor.UpstreamError(status, ecode, msg)
}
