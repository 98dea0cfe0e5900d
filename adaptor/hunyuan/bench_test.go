package hunyuan

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"relay/adaptor"
	"relay/adaptor/streamtest"
)

// benchChunks measures one translated chunk: SSE framing, decoding, chunk building.
func benchChunks(b *testing.B, frame string) {
	ev := newEvents(context.Background(), streamtest.NewLoop("data: "+frame+"\n\n"), "")
	if _, err := ev.Next(); err != nil { // the first chunk carries the role; measure the steady state
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frame) + 8))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := ev.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// A frame as the wire reference shows it (with Note, Created, Id and Usage).
const docFrame = `{"Note":"以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记","Choices":[{"Index":0,"Delta":{"Role":"assistant","Content":" is the"},"FinishReason":""}],"Created":1700000002,"Id":"9e1f0c3a-27b4-4d65-a0c8-51d2e7f6b903","Usage":{"PromptTokens":9,"CompletionTokens":3,"TotalTokens":12}}`

func BenchmarkStreamChunk(b *testing.B) { benchChunks(b, docFrame) }

// Content with JSON escapes (newlines, quotes) makes gjson unescape into a new string.
func BenchmarkStreamChunkEscaped(b *testing.B) {
	benchChunks(b, `{"Note":"以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记","Choices":[{"Index":0,"Delta":{"Role":"assistant","Content":"巴黎\n\n\"首都\""},"FinishReason":""}],"Created":1700000002,"Id":"9e1f0c3a-27b4-4d65-a0c8-51d2e7f6b903","Usage":{"PromptTokens":9,"CompletionTokens":3,"TotalTokens":12}}`)
}

// An argument fragment of a streamed tool call.
func BenchmarkStreamChunkToolArgs(b *testing.B) {
	benchChunks(b, `{"Note":"以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记","Choices":[{"Index":0,"Delta":{"Role":"assistant","Content":"","ToolCalls":[{"Id":"call_a","Type":"function","Function":{"Name":"","Arguments":"{\"city\":"},"Index":0}]},"FinishReason":""}],"Created":1700000002,"Id":"x","Usage":{"PromptTokens":20,"CompletionTokens":6,"TotalTokens":26}}`)
}

// Request translation happens once per request; measured for reference.
func BenchmarkBuildBody(b *testing.B) {
	body, err := os.ReadFile("testdata/request/tool_history.json")
	if err != nil {
		b.Fatal(err)
	}
	req := requestFor(body)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := buildBody(req, true); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	in := SignInput{SecretID: testID, SecretKey: testKey, Service: "hunyuan", Host: "hunyuan.tencentcloudapi.com",
		ContentType: contentType, Timestamp: 1700000000, Payload: []byte(docFrame)}
	b.ReportAllocs()
	for b.Loop() {
		_ = Authorization(in)
	}
}

// BenchmarkTranslateResponse is one non-stream answer of about 2 KB turned into a chat.completion.
func BenchmarkTranslateResponse(b *testing.B) {
	body := []byte(`{"Response":{"RequestId":"e3d7a8c2-1f4b-4c9e-9a55-2d6b7f0c1e8a","Note":"以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记","Choices":[{"Index":0,"Message":{"Role":"assistant","Content":"` +
		strings.Repeat("It is a heron, standing in the water. ", 54) + `"},"FinishReason":"stop"}],"Created":1700000002,"Id":"9e1f0c3a-27b4-4d65-a0c8-51d2e7f6b903","Usage":{"PromptTokens":9,"CompletionTokens":400,"TotalTokens":409}}}`)
	req := &adaptor.Request{Model: "hunyuan-turbo"}
	now := time.Now()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := translateResponse(body, req, now); err != nil {
			b.Fatal(err)
		}
	}
}
