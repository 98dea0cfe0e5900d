package adaptor

import (
	"strconv"
	"unicode/utf8"
)

// ChunkBuilder builds the choices array of OpenAI chunks for adaptors that translate another wire format.
// The first chunk it builds carries the assistant role. The returned slice is reused by the next call.
type ChunkBuilder struct {
	buf      []byte
	roleSent bool
}

// Delta holds what one translated upstream frame says. ToolCalls, when set, is a raw JSON array in the
// OpenAI delta shape (each element with its index).
type Delta struct {
	Content          string
	ReasoningContent string
	ToolCalls        []byte
	FinishReason     string
}

// Choices returns `[{"index":0,"delta":{...},"finish_reason":...}]` for d.
func (b *ChunkBuilder) Choices(d Delta) []byte {
	buf := append(b.buf[:0], `[{"index":0,"delta":{`...)
	sep := false
	if !b.roleSent {
		buf = append(buf, `"role":"assistant"`...)
		b.roleSent = true
		sep = true
	}
	if d.Content != "" || (!sep && d.ToolCalls == nil && d.ReasoningContent == "" && d.FinishReason == "") {
		if sep {
			buf = append(buf, ',')
		}
		buf = append(buf, `"content":`...)
		buf = AppendJSONString(buf, d.Content)
		sep = true
	}
	if d.ReasoningContent != "" {
		if sep {
			buf = append(buf, ',')
		}
		buf = append(buf, `"reasoning_content":`...)
		buf = AppendJSONString(buf, d.ReasoningContent)
		sep = true
	}
	if d.ToolCalls != nil {
		if sep {
			buf = append(buf, ',')
		}
		buf = append(buf, `"tool_calls":`...)
		buf = append(buf, d.ToolCalls...)
	}
	buf = append(buf, `},"finish_reason":`...)
	if d.FinishReason == "" {
		buf = append(buf, "null"...)
	} else {
		buf = AppendJSONString(buf, d.FinishReason)
	}
	buf = append(buf, "}]"...)
	b.buf = buf
	return buf
}

// RoleSent reports whether a chunk with the role was built already.
func (b *ChunkBuilder) RoleSent() bool { return b.roleSent }

// NewToolCallID names a tool call that the upstream sent without an id ("call_" and 24 random
// characters): OpenAI clients need one to match the tool result to the call. Tests replace it for
// stable output.
var NewToolCallID = func() string { return NewID("call_") }

// AppendToolCallStart appends the first delta of a tool call, as an element of an OpenAI
// delta.tool_calls array: {"index":N,"id":...,"type":"function","function":{"name":...,"arguments":...}}.
// arguments is the first fragment (or the whole) of the arguments' JSON text.
func AppendToolCallStart(dst []byte, index int, id, name, arguments string) []byte {
	dst = append(dst, `{"index":`...)
	dst = strconv.AppendInt(dst, int64(index), 10)
	dst = append(dst, `,"id":`...)
	dst = AppendJSONString(dst, id)
	dst = append(dst, `,"type":"function","function":{"name":`...)
	dst = AppendJSONString(dst, name)
	return appendArguments(append(dst, ','), arguments)
}

// AppendToolCallDelta appends a later delta of the tool call at index: {"index":N,"function":{...}}
// with the name only when given (an upstream that names the call late) and the next arguments fragment.
func AppendToolCallDelta(dst []byte, index int, name, arguments string) []byte {
	dst = append(dst, `{"index":`...)
	dst = strconv.AppendInt(dst, int64(index), 10)
	dst = append(dst, `,"function":{`...)
	if name != "" {
		dst = append(dst, `"name":`...)
		dst = AppendJSONString(dst, name)
		dst = append(dst, ',')
	}
	return appendArguments(dst, arguments)
}

func appendArguments(dst []byte, arguments string) []byte {
	dst = append(dst, `"arguments":`...)
	dst = AppendJSONString(dst, arguments)
	return append(dst, "}}"...)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string literal. Invalid UTF-8 becomes U+FFFD; <, > and & stay as
// they are (no HTML escaping).
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				// Then eight plain ASCII bytes at a time, while they last.
				for i+8 <= len(s) {
					if x := load8(s, i); x&highs8 != 0 || !plain8(x) {
						break
					}
					i += 8
				}
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendUsage appends an OpenAI usage object.
func AppendUsage(dst []byte, u Usage) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(u.PromptTokens), 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(u.CompletionTokens), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(u.TotalTokens), 10)
	return append(dst, '}')
}
