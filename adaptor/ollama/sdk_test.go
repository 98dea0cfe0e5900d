package ollama_test

import (
	"context"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/ollama"
	"relay/adaptor/ollama/ollamatest"
	"relay/relay"
	"relay/relay/relaytest"
)

// startRelay runs a relay with one ollama channel in front of up, serving model "local" as
// upstream "llama3.2".
func startRelay(t *testing.T, up *ollamatest.Server) (openai.Client, *relaytest.Relay) {
	t.Helper()
	r := relaytest.Start(t, map[string]adaptor.Adaptor{"ollama": ollama.New()}, nil, relay.ChannelConfig{
		Name: "ol", Kind: "ollama", Enabled: "true", BaseURL: up.URL, Models: []string{"local"},
		ModelMap: map[string]string{"local": "llama3.2"}, Credentials: map[string]string{"num_ctx": "4096"},
	})
	return openai.NewClient(option.WithBaseURL(r.URL), option.WithAPIKey(r.Key), option.WithMaxRetries(0),
		option.WithRequestTimeout(10*time.Second)), r
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSDKText(t *testing.T) {
	up := ollamatest.New(ollamatest.Options{Answer: "Paris is the capital. 巴黎。", Chunks: 5, PromptEvalCount: 24})
	defer up.Close()
	client, r := startRelay(t, up)
	params := openai.ChatCompletionNewParams{
		Model:       "local",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("capital of France?")},
		Temperature: openai.Float(0.2),
		MaxTokens:   openai.Int(64),
	}

	// (a) non-stream
	comp, err := client.Chat.Completions.New(timeout(t), params)
	if err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].Message.Content != "Paris is the capital. 巴黎。" || comp.Model != "local" || comp.Choices[0].FinishReason != "stop" {
		t.Fatalf("completion %+v", comp)
	}
	if comp.Usage.PromptTokens != 24 || comp.Usage.CompletionTokens != 5 || comp.Usage.TotalTokens != 29 {
		t.Fatalf("usage %+v", comp.Usage)
	}

	// (a) stream with usage
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(timeout(t), params)
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != "Paris is the capital. 巴黎。" || acc.Choices[0].FinishReason != "stop" || chunks < 5 {
		t.Fatalf("stream: %q finish %q chunks %d", acc.Choices[0].Message.Content, acc.Choices[0].FinishReason, chunks)
	}
	if acc.Usage.PromptTokens != 24 || acc.Usage.CompletionTokens != 5 || acc.Usage.TotalTokens != 29 {
		t.Fatalf("stream usage %+v", acc.Usage)
	}

	// The upstream saw Ollama's shape: its own model name, stream flag, options.
	bodies := up.Bodies()
	if len(bodies) != 2 {
		t.Fatalf("%d upstream requests", len(bodies))
	}
	for i, b := range bodies {
		g := gjson.ParseBytes(b)
		if g.Get("model").Str != "llama3.2" || g.Get("stream").Bool() != (i == 1) || g.Get("options.temperature").Float() != 0.2 ||
			g.Get("options.num_predict").Int() != 64 || g.Get("options.num_ctx").Int() != 4096 || g.Get("messages.0.role").Str != "system" {
			t.Fatalf("upstream body %d: %s", i, b)
		}
	}
	rows := r.Logs()
	if len(rows) != 2 || rows[0].Usage.TotalTokens != 29 || rows[0].Usage.Estimated || rows[0].Status != 200 || rows[0].Channel != "ol" {
		t.Fatalf("log rows %+v", rows)
	}
}

// (b) The model asks for a tool in a stream; the SDK accumulator rebuilds the call; the client sends the
// tool result; the model answers.
func TestSDKToolRoundTrip(t *testing.T) {
	up := ollamatest.New(ollamatest.Options{
		Answer:    "High tide in Brest is at 14:05.",
		ToolCalls: []ollamatest.ToolCall{{Name: "get_tide", Arguments: `{"port":"Brest","day":"today","tz":"Europe/Paris"}`}},
	})
	defer up.Close()
	client, _ := startRelay(t, up)
	params := openai.ChatCompletionNewParams{
		Model:    "local",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("When is high tide in Brest?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:        "get_tide",
			Description: openai.String("Tide times for a port"),
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{
				"port": map[string]any{"type": "string"}, "day": map[string]any{"type": "string"}, "tz": map[string]any{"type": "string"}}},
		})},
	}
	stream := client.Chat.Completions.NewStreaming(timeout(t), params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	msg := acc.Choices[0].Message
	if len(msg.ToolCalls) != 1 || acc.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("accumulated %+v finish %q", msg, acc.Choices[0].FinishReason)
	}
	call := msg.ToolCalls[0]
	if call.Function.Name != "get_tide" || call.ID == "" || call.Type != "function" {
		t.Fatalf("tool call %+v", call)
	}
	if got := acc.Choices[0].Message.ToolCalls[0].Function.Arguments; got != `{"port":"Brest","day":"today","tz":"Europe/Paris"}` {
		t.Fatalf("arguments %s", got)
	}

	params.Messages = append(params.Messages, msg.ToParam(), openai.ToolMessage("14:05 CET", call.ID))
	comp, err := client.Chat.Completions.New(timeout(t), params)
	if err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].Message.Content != "High tide in Brest is at 14:05." || comp.Choices[0].FinishReason != "stop" || len(comp.Choices[0].Message.ToolCalls) != 0 {
		t.Fatalf("final answer %+v", comp.Choices[0])
	}

	bodies := up.Bodies()
	if len(bodies) != 2 {
		t.Fatalf("%d upstream requests", len(bodies))
	}
	first := gjson.ParseBytes(bodies[0])
	if first.Get("tools.0.function.name").Str != "get_tide" || first.Get("tools.0.type").Str != "function" {
		t.Fatalf("first request tools: %s", bodies[0])
	}
	second := gjson.ParseBytes(bodies[1])
	msgs := second.Get("messages").Array()
	if len(msgs) != 3 {
		t.Fatalf("second request messages: %s", second.Get("messages").Raw)
	}
	asst, tool := msgs[1], msgs[2]
	args := asst.Get("tool_calls.0.function.arguments")
	if asst.Get("role").Str != "assistant" || asst.Get("tool_calls.0.function.name").Str != "get_tide" || !args.IsObject() ||
		args.Get("port").Str != "Brest" || args.Get("day").Str != "today" || args.Get("tz").Str != "Europe/Paris" {
		t.Fatalf("assistant message upstream: %s", asst.Raw)
	}
	if tool.Get("role").Str != "tool" || tool.Get("content").Str != "14:05 CET" || tool.Get("tool_name").Str != "get_tide" {
		t.Fatalf("tool message upstream: %s", tool.Raw)
	}
}
