package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
)

// hunyuanMock is a fast upstream shaped like Tencent Hunyuan's native API (ChatCompletions 2023-09-01,
// see the wire reference): POST / with X-TC-* headers and a PascalCase body; a non-stream answer wrapped
// in {"Response":...}; a stream of data-only SSE frames with Role on every Delta, cumulative Usage on
// every frame, FinishReason on the last, and no [DONE]: the answer ends when the connection's response
// ends. It has the same knobs as the OpenAI mock and, like it, renders every answer once at start.
//
// It does not verify the TC3-HMAC-SHA256 signature (the relay signs every request, and checking it would
// charge the mock for work the benchmark does not measure); it only checks that Authorization and
// X-TC-Action are there.
type hunyuanMock struct {
	opt        mockOptions
	completion []byte   // non-stream body
	frames     [][]byte // SSE frames; the last carries FinishReason
	fail       []byte   // the injected failure's body
}

const (
	hunyuanModel     = "bench-hunyuan"
	hunyuanRequestID = "3c9d1b2e-5f0a-4c8e-9b71-0a2d6e4f8c11"
	// hunyuanNote is the compliance disclaimer Hunyuan sends with every answer and frame.
	hunyuanNote = "以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记"
)

func newHunyuanMock(opt mockOptions) *hunyuanMock {
	opt.Chunks = max(opt.Chunks, 1)
	opt.Size = max(opt.Size, 0)
	answer := answerText(opt.Size)
	m := &hunyuanMock{opt: opt}
	completionTokens := max(opt.Size/4, 1)

	m.completion = fmt.Appendf(nil, `{"Response":{"RequestId":%q,"Note":%s,"Id":%q,"Created":%d,`+
		`"Choices":[{"Index":0,"Message":{"Role":"assistant","Content":%s},"FinishReason":"stop"}],%s}}`,
		hunyuanRequestID, jsonString(hunyuanNote), hunyuanRequestID, mockCreated, jsonString(answer),
		hunyuanUsage(completionTokens))

	// As in the OpenAI mock, the answer goes into the first Chunks-1 frames and the last carries only the
	// finish reason (with empty Content, as Hunyuan sends it). Usage is cumulative.
	content := max(opt.Chunks-1, 1)
	pieces := splitEven(answer, content)
	for i := range opt.Chunks {
		text, finish := "", ""
		if i < content {
			text = pieces[i]
		}
		if i == opt.Chunks-1 {
			finish = "stop"
		}
		tokens := completionTokens * min(i+1, content) / content
		m.frames = append(m.frames, fmt.Appendf(nil, "data: {\"Note\":%s,\"Choices\":[{\"Index\":0,"+
			"\"Delta\":{\"Role\":\"assistant\",\"Content\":%s},\"FinishReason\":%q}],\"Created\":%d,\"Id\":%q,%s}\n\n",
			jsonString(hunyuanNote), jsonString(text), finish, mockCreated, hunyuanRequestID, hunyuanUsage(tokens)))
	}
	m.fail = hunyuanError("InternalError", "injected failure")
	return m
}

// hunyuanUsage is the "Usage" member of an answer or frame.
func hunyuanUsage(completion int) string {
	return fmt.Sprintf(`"Usage":{"PromptTokens":%d,"CompletionTokens":%d,"TotalTokens":%d}`,
		mockPrompt, completion, mockPrompt+completion)
}

// hunyuanError is Tencent Cloud API 3.0's error body.
func hunyuanError(code, msg string) []byte {
	return fmt.Appendf(nil, `{"Response":{"Error":{"Code":%q,"Message":%s},"RequestId":%q}}`,
		code, jsonString(msg), hunyuanRequestID)
}

// writeHunyuanError answers with HTTP 200 and a Response.Error body, as Tencent does for business errors
// (also to stream requests, as JSON, when the error is found before streaming starts).
func writeHunyuanError(w http.ResponseWriter, body []byte) { writeJSON(w, body) }

func (m *hunyuanMock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeHunyuanError(w, hunyuanError("UnsupportedOperation", "only POST / is served"))
		return
	}
	if r.Header.Get("X-TC-Action") != "ChatCompletions" {
		writeHunyuanError(w, hunyuanError("InvalidAction", "X-TC-Action must be ChatCompletions"))
		return
	}
	if r.Header.Get("Authorization") == "" {
		writeHunyuanError(w, hunyuanError("AuthFailure.SignatureFailure", "no Authorization header"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req struct {
		Stream bool `json:"Stream"`
	}
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeHunyuanError(w, hunyuanError("InvalidParameter", "bad request body"))
		return
	}
	if m.opt.Fail > 0 && rand.Float64() < m.opt.Fail {
		writeHunyuanError(w, m.fail)
		return
	}
	if !req.Stream {
		writeJSON(w, m.completion)
		return
	}
	w.Header().Set("X-TC-RequestId", hunyuanRequestID)
	streamFrames(w, r, m.frames, m.opt.Delay)
	// No [DONE]: returning ends the response, which is Hunyuan's end of stream.
}
