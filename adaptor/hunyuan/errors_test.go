package hunyuan

import (
	"testing"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

func TestAPIErrorClasses(t *testing.T) {
	tests := []struct {
		code      string
		status    int
		typ       string
		oaCode    string
		retryable bool
	}{
		{"AuthFailure.SignatureFailure", 401, adaptor.TypeAuthentication, "AuthFailure.SignatureFailure", true},
		{"AuthFailure.SignatureExpire", 401, adaptor.TypeAuthentication, "AuthFailure.SignatureExpire", true},
		{"AuthFailure.SecretIdNotFound", 401, adaptor.TypeAuthentication, "AuthFailure.SecretIdNotFound", true},
		{"AuthFailure.InvalidSecretId", 401, adaptor.TypeAuthentication, "AuthFailure.InvalidSecretId", true},
		{"LimitExceeded", 429, adaptor.TypeRateLimit, "rate_limit_exceeded", true},
		{"RequestLimitExceeded", 429, adaptor.TypeRateLimit, "rate_limit_exceeded", true},
		{"RequestLimitExceeded.UinLimitExceeded", 429, adaptor.TypeRateLimit, "rate_limit_exceeded", true},
		{"FailedOperation.EngineServerLimitExceeded", 429, adaptor.TypeRateLimit, "rate_limit_exceeded", true},
		{"InvalidParameterValue.Model", 404, adaptor.TypeNotFound, "model_not_found", false},
		{"InvalidParameter", 400, adaptor.TypeInvalidRequest, "InvalidParameter", false},
		{"InvalidParameter.InvalidParameter", 400, adaptor.TypeInvalidRequest, "InvalidParameter.InvalidParameter", false},
		{"InvalidParameterValue", 400, adaptor.TypeInvalidRequest, "InvalidParameterValue", false},
		{"InvalidParameterValue.ParameterValueError", 400, adaptor.TypeInvalidRequest, "InvalidParameterValue.ParameterValueError", false},
		{"MissingParameter", 400, adaptor.TypeInvalidRequest, "MissingParameter", false},
		{"UnknownParameter", 400, adaptor.TypeInvalidRequest, "UnknownParameter", false},
		{"OperationDenied.TextIllegalDetected", 400, adaptor.TypeInvalidRequest, "content_filter", false},
		{"OperationDenied.ImageIllegalDetected", 400, adaptor.TypeInvalidRequest, "content_filter", false},
		{"FailedOperation.EngineRequestTimeout", 504, adaptor.TypeTimeout, "FailedOperation.EngineRequestTimeout", true},
		{"FailedOperation.EngineServerError", 503, adaptor.TypeServer, "FailedOperation.EngineServerError", true},
		{"InternalError", 502, adaptor.TypeServer, "InternalError", true},
		{"FailedOperation.UserUnAuthError", 403, adaptor.TypePermission, "FailedOperation.UserUnAuthError", true},
		{"UnauthorizedOperation", 403, adaptor.TypePermission, "UnauthorizedOperation", true},
		{"FailedOperation.ServiceNotActivated", 403, adaptor.TypePermission, "insufficient_quota", true},
		{"FailedOperation.ServiceStopArrears", 403, adaptor.TypePermission, "insufficient_quota", true},
		{"FailedOperation.FreeResourcePackExhausted", 403, adaptor.TypePermission, "insufficient_quota", true},
		{"ResourceUnavailable.InArrears", 403, adaptor.TypePermission, "insufficient_quota", true},
		{"ResourceInsufficient.ChargeResourceExhaust", 403, adaptor.TypePermission, "insufficient_quota", true},
		{"FailedOperation.SomethingNew", 502, adaptor.TypeServer, "FailedOperation.SomethingNew", true},
		{"", 502, adaptor.TypeServer, "", true},
	}
	for _, tc := range tests {
		e := apiError(tc.code, "msg", "rid-1")
		if e.Status != tc.status || e.Type != tc.typ || e.Code != tc.oaCode || e.Retryable != tc.retryable {
			t.Errorf("%q: got %d %s %s retryable=%v, want %d %s %s %v", tc.code, e.Status, e.Type, e.Code, e.Retryable,
				tc.status, tc.typ, tc.oaCode, tc.retryable)
		}
		if want := "upstream: hunyuan " + tc.code + ": msg (RequestId rid-1)"; e.Message != want {
			t.Errorf("%q: message %q", tc.code, e.Message)
		}
	}
}

// A non-2xx answer: the Tencent error body decides; without one the HTTP status does.
func TestParseHTTPError(t *testing.T) {
	e := parseHTTPError(500, []byte(`{"Response":{"Error":{"Code":"LimitExceeded","Message":"slow down"},"RequestId":"r"}}`))
	if e.Status != 429 || e.Message != "upstream: hunyuan LimitExceeded: slow down (RequestId r)" {
		t.Errorf("got %+v", e)
	}
	e = parseHTTPError(503, []byte(`<html>busy</html>`))
	if e.Status != 503 || e.Type != adaptor.TypeServer || !e.Retryable {
		t.Errorf("got %+v", e)
	}
}

func TestStreamErrorCodes(t *testing.T) {
	e := streamError(gjson.Parse(`{"Code":4000,"Msg":"internal error"}`), "rid")
	if e.Status != 502 || e.Code != "upstream_error" || e.Message != "upstream: hunyuan stream error 4000: internal error (RequestId rid)" {
		t.Errorf("4000: %+v", e)
	}
	e = streamError(gjson.Parse(`{"Code":4001,"Msg":"timeout"}`), "")
	if e.Status != 504 || e.Type != adaptor.TypeTimeout || e.Message != "upstream: hunyuan stream error 4001: timeout" {
		t.Errorf("4001: %+v", e)
	}
}

func TestFinishReasonMap(t *testing.T) {
	for in, want := range map[string]string{"": "", "stop": "stop", "tool_calls": "tool_calls", "sensitive": "content_filter",
		"length": "length", "weird": "stop"} {
		if got := finishReason(in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}
