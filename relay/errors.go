package relay

import (
	"strconv"

	"github.com/gin-gonic/gin"

	"relay/adaptor"
)

// appendOpenAIError renders e as OpenAI's error object {"error":{"message","type","param","code"}}.
func appendOpenAIError(dst []byte, e *adaptor.Error) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = adaptor.AppendJSONString(dst, e.Message)
	dst = append(dst, `,"type":`...)
	typ := e.Type
	if typ == "" {
		typ = adaptor.TypeForStatus(e.Status)
	}
	dst = adaptor.AppendJSONString(dst, typ)
	dst = append(dst, `,"param":`...)
	dst = appendNullable(dst, e.Param)
	dst = append(dst, `,"code":`...)
	dst = appendNullable(dst, e.Code)
	return append(dst, "}}"...)
}

func appendNullable(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return adaptor.AppendJSONString(dst, s)
}

// writeOpenAIError answers with e in OpenAI's shape, before any body was sent. This is the one error
// writer of the OpenAI surface; every path that fails a request goes through it.
func writeOpenAIError(c *gin.Context, e *adaptor.Error) {
	status := e.Status
	if status < 400 || status > 599 {
		status = 502
	}
	if status == 499 { // the client is gone; nobody reads this, but keep the log honest
		c.Status(status)
		return
	}
	if e.RetryAfter != "" {
		c.Header("Retry-After", e.RetryAfter)
	}
	if status == 429 || status == 503 {
		if c.Writer.Header().Get("Retry-After") == "" {
			c.Header("Retry-After", "1")
		}
	}
	// Tell SDKs not to retry what retrying cannot fix (an exhausted quota, a permanent upstream error).
	if !e.Retryable && (status >= 500 || status == 429) {
		c.Header("X-Should-Retry", "false")
	}
	c.Data(status, "application/json", appendOpenAIError(nil, e))
}

// errStatusText is used in logs: "502 upstream_unreachable: ..."
func errStatusText(e *adaptor.Error) string {
	s := strconv.Itoa(e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	return s + ": " + e.Message
}
