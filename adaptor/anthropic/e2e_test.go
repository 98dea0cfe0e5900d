package anthropic_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/anthropic"
	"relay/adaptor/anthropic/anthropictest"
	"relay/relay"
	"relay/relay/relaytest"
)

// startRelay runs a relay whose model "claude" is served by the mock through the anthropic adaptor.
func startRelay(t *testing.T, up *anthropictest.Server) openai.Client {
	t.Helper()
	r := relaytest.Start(t, map[string]adaptor.Adaptor{"anthropic": anthropic.New()}, nil, relay.ChannelConfig{
		Name: "claude", Kind: "anthropic", Enabled: "true", BaseURL: up.BaseURL(), Keys: []string{"sk-ant-e2e"},
		Models: []string{"claude"}, ModelMap: map[string]string{"claude": "claude-3-5-haiku-20241022"},
	})
	return openai.NewClient(option.WithBaseURL(r.URL), option.WithAPIKey(r.Key), option.WithMaxRetries(0),
		option.WithRequestTimeout(10*time.Second))
}

func sdkContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSDKText(t *testing.T) {
	const answer = "Bonjour ! Paris est la capitale. 巴黎。"
	up := anthropictest.New(anthropictest.Options{Answer: answer, Chunks: 6, InputTokens: 14, Key: "sk-ant-e2e"})
	defer up.Close()
	client := startRelay(t, up)
	params := openai.ChatCompletionNewParams{
		Model:    "claude",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Reply in French."), openai.UserMessage("Good morning")},
	}

	comp, err := client.Chat.Completions.New(sdkContext(t), params)
	if err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].Message.Content != answer || comp.Model != "claude" || comp.Choices[0].FinishReason != "stop" {
		t.Fatalf("completion %+v", comp)
	}
	if comp.Usage.PromptTokens != 14 || comp.Usage.CompletionTokens != 6 || comp.Usage.TotalTokens != 20 {
		t.Fatalf("usage %+v", comp.Usage)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(sdkContext(t), params)
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != answer || acc.Choices[0].FinishReason != "stop" || chunks < 6 {
		t.Fatalf("stream %q finish %q chunks %d", acc.Choices[0].Message.Content, acc.Choices[0].FinishReason, chunks)
	}
	// Real usage: input from message_start, the last output_tokens, no placeholder added.
	if acc.Usage.PromptTokens != 14 || acc.Usage.CompletionTokens != 6 || acc.Usage.TotalTokens != 20 {
		t.Fatalf("stream usage %+v", acc.Usage)
	}
	for i, b := range up.Bodies() {
		g := gjson.ParseBytes(b)
		if g.Get("model").Str != "claude-3-5-haiku-20241022" || g.Get("system").Str != "Reply in French." ||
			g.Get("messages.0.content").Str != "Good morning" || g.Get("max_tokens").Int() != anthropic.DefaultMaxTokens || g.Get("stream").Bool() != (i == 1) {
			t.Fatalf("upstream body %d: %s", i, b)
		}
	}
}

// The model asks for a tool in a stream; the SDK's accumulator rebuilds the call; the client runs it
// and sends the result back; the model answers. The mock checks (like the real API) that the second
// request's tool_result answers the tool_use of the assistant turn before it.
func TestSDKToolRoundTrip(t *testing.T) {
	const args = `{"port":"Brest","day":"tomorrow","note":"marée \"haute\" 🌊"}`
	up := anthropictest.New(anthropictest.Options{
		Answer:    "High tide in Brest tomorrow is at 06:12.",
		ToolCalls: []anthropictest.ToolCall{{ID: "toolu_01Tide", Name: "get_tide", Input: args}},
		ArgChunks: 7,
	})
	defer up.Close()
	client := startRelay(t, up)
	params := openai.ChatCompletionNewParams{
		Model:    "claude",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("When is high tide in Brest tomorrow?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:        "get_tide",
			Description: openai.String("Tide times for a port"),
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{
				"port": map[string]any{"type": "string"}, "day": map[string]any{"type": "string"}}, "required": []string{"port"}},
		})},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}

	stream := client.Chat.Completions.NewStreaming(sdkContext(t), params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	msg := acc.Choices[0].Message
	if acc.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 1 {
		t.Fatalf("finish %q message %+v", acc.Choices[0].FinishReason, msg)
	}
	tc := msg.ToolCalls[0]
	if tc.ID != "toolu_01Tide" || tc.Function.Name != "get_tide" || tc.Function.Arguments != args || tc.Type != "function" {
		t.Fatalf("tool call %+v", tc)
	}

	params.Messages = append(params.Messages, msg.ToParam(), openai.ToolMessage("06:12 and 18:40", tc.ID))
	comp, err := client.Chat.Completions.New(sdkContext(t), params)
	if err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].Message.Content != "High tide in Brest tomorrow is at 06:12." || comp.Choices[0].FinishReason != "stop" {
		t.Fatalf("final %+v", comp.Choices[0])
	}

	bodies := up.Bodies()
	t.Logf("second upstream request: %s", bodies[len(bodies)-1])
	if len(bodies) != 2 {
		t.Fatalf("%d upstream requests", len(bodies))
	}
	first := gjson.ParseBytes(bodies[0])
	if first.Get("tools.0.name").Str != "get_tide" || first.Get("tools.0.input_schema.required.0").Str != "port" ||
		first.Get("tools.0.description").Str != "Tide times for a port" || first.Get("tools.0.function").Exists() {
		t.Fatalf("first request tools: %s", first.Get("tools").Raw)
	}
	second := gjson.ParseBytes(bodies[1])
	msgs := second.Get("messages").Array()
	if len(msgs) != 3 || msgs[0].Get("role").Str != "user" || msgs[1].Get("role").Str != "assistant" || msgs[2].Get("role").Str != "user" {
		t.Fatalf("second request messages: %s", second.Get("messages").Raw)
	}
	use := msgs[1].Get(`content.#(type=="tool_use")`)
	if use.Get("id").Str != "toolu_01Tide" || use.Get("name").Str != "get_tide" || !use.Get("input").IsObject() ||
		use.Get("input.port").Str != "Brest" || use.Get("input.note").Str != `marée "haute" 🌊` {
		t.Fatalf("tool_use block: %s", msgs[1].Raw)
	}
	res := msgs[2].Get("content.0")
	if res.Get("type").Str != "tool_result" || res.Get("tool_use_id").Str != "toolu_01Tide" || res.Get("content").Str != "06:12 and 18:40" {
		t.Fatalf("tool_result block: %s", msgs[2].Raw)
	}
}

func TestSDKUpstreamErrors(t *testing.T) {
	t.Run("overloaded becomes 503", func(t *testing.T) {
		up := anthropictest.New(anthropictest.Options{Status: 529, ErrorMessage: "Overloaded"})
		defer up.Close()
		client := startRelay(t, up)
		_, err := client.Chat.Completions.New(sdkContext(t), openai.ChatCompletionNewParams{
			Model: "claude", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Code != "overloaded_error" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("error event mid-stream", func(t *testing.T) {
		up := anthropictest.New(anthropictest.Options{Chunks: 6, ErrorAfter: 2})
		defer up.Close()
		client := startRelay(t, up)
		stream := client.Chat.Completions.NewStreaming(sdkContext(t), openai.ChatCompletionNewParams{
			Model: "claude", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		n := 0
		for stream.Next() {
			n++
		}
		if stream.Err() == nil || n == 0 {
			t.Fatalf("want chunks then an error, got %d chunks, err %v", n, stream.Err())
		}
	})
	t.Run("early close", func(t *testing.T) {
		up := anthropictest.New(anthropictest.Options{Chunks: 6, CloseAfter: 3})
		defer up.Close()
		client := startRelay(t, up)
		stream := client.Chat.Completions.NewStreaming(sdkContext(t), openai.ChatCompletionNewParams{
			Model: "claude", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		n := 0
		for stream.Next() {
			n++
		}
		if stream.Err() == nil || n == 0 {
			t.Fatalf("want chunks then an error, got %d chunks, err %v", n, stream.Err())
		}
	})
}
