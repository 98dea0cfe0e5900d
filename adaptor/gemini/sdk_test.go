package gemini_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/adaptor/gemini"
	"relay/adaptor/gemini/geminitest"
	"relay/relay"
	"relay/relay/relaytest"
)

const (
	upKey = "AIzaSy-upstream-secret"
	model = "gemini-2.0-flash"
)

// start runs a relay whose one channel is the mock; the client asks for "gemini-flash", the channel
// maps it to the upstream model name.
func start(t *testing.T, up *geminitest.Server) (*relaytest.Relay, openai.Client) {
	t.Helper()
	r := relaytest.Start(t, map[string]adaptor.Adaptor{"gemini": gemini.New()}, nil, relay.ChannelConfig{
		Name: "gem", Kind: "gemini", Enabled: "true", BaseURL: up.BaseURL(), Keys: []string{upKey},
		Models: []string{"gemini-flash"}, ModelMap: map[string]string{"gemini-flash": model},
	})
	return r, openai.NewClient(option.WithBaseURL(r.URL), option.WithAPIKey(r.Key), option.WithMaxRetries(0))
}

func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkUpstream asserts what every request to the mock looked like: the right path, the key only in
// the x-goog-api-key header.
func checkUpstream(t *testing.T, r geminitest.Request, stream bool) {
	t.Helper()
	want := "/v1beta/models/" + model + ":generateContent"
	query := ""
	if stream {
		want, query = "/v1beta/models/"+model+":streamGenerateContent", "alt=sse"
	}
	if r.Path != want || r.RawQuery != query {
		t.Fatalf("upstream request %s?%s, want %s?%s", r.Path, r.RawQuery, want, query)
	}
	if r.Header.Get("x-goog-api-key") != upKey || r.Header.Get("Authorization") != "" || strings.Contains(r.RawQuery, upKey) {
		t.Fatalf("upstream auth: header %q query %q", r.Header.Get("x-goog-api-key"), r.RawQuery)
	}
}

func TestSDKTextNonStreamAndStream(t *testing.T) {
	answer := "Paris is the capital. 巴黎。"
	up := geminitest.New(geminitest.Options{Answer: answer, Chunks: 4, Key: upKey})
	defer up.Close()
	r, client := start(t, up)
	params := openai.ChatCompletionNewParams{
		Model:       "gemini-flash",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("capital of France?")},
		Temperature: openai.Float(0.3),
	}

	comp, err := client.Chat.Completions.New(bounded(t), params)
	if err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].Message.Content != answer || comp.Choices[0].FinishReason != "stop" || comp.Model != "gemini-flash" ||
		comp.Usage.PromptTokens != 11 || comp.Usage.CompletionTokens != 4 || comp.Usage.TotalTokens != 15 {
		t.Fatalf("completion: %q %q %q %+v", comp.Choices[0].Message.Content, comp.Choices[0].FinishReason, comp.Model, comp.Usage)
	}
	checkUpstream(t, up.Last(), false)
	body := up.Last().Body
	if gjson.GetBytes(body, "systemInstruction.parts.0.text").Str != "be brief" || gjson.GetBytes(body, "contents.0.role").Str != "user" ||
		gjson.GetBytes(body, "contents.0.parts.0.text").Str != "capital of France?" || gjson.GetBytes(body, "generationConfig.temperature").Float() != 0.3 {
		t.Fatalf("upstream body %s", body)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(bounded(t), params)
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != answer || acc.Choices[0].FinishReason != "stop" || chunks < 4 ||
		acc.Usage.PromptTokens != 11 || acc.Usage.CompletionTokens != 4 || acc.Usage.TotalTokens != 15 {
		t.Fatalf("stream: %q %q %d chunks, usage %+v", acc.Choices[0].Message.Content, acc.Choices[0].FinishReason, chunks, acc.Usage)
	}
	checkUpstream(t, up.Last(), true)

	rows := r.Logs()
	if len(rows) != 2 {
		t.Fatalf("log rows %+v", rows)
	}
	for _, row := range rows {
		if row.Status != 200 || row.Channel != "gem" || row.UpstreamModel != model || row.Usage.TotalTokens != 15 || row.Usage.Estimated {
			t.Fatalf("log row %+v", row)
		}
	}
}

func TestSDKToolRoundTrip(t *testing.T) {
	up := geminitest.New(geminitest.Options{
		FunctionCalls: []geminitest.FunctionCall{{Name: "get_tide", Args: `{"port":"Brest","day":"2024-06-01"}`}},
		Answer:        "High tide in Brest is at 06:12.",
	})
	defer up.Close()
	_, client := start(t, up)
	params := openai.ChatCompletionNewParams{
		Model:    "gemini-flash",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("When is high tide in Brest?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:        "get_tide",
			Description: openai.String("Tide times for a port"),
			Parameters: shared.FunctionParameters{
				"type": "object", "additionalProperties": false,
				"properties": map[string]any{"port": map[string]any{"type": "string"}, "day": map[string]any{"type": "string"}},
				"required":   []string{"port"},
			},
		})},
		ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("auto")},
	}

	// 1. The model asks for the tool in a stream; the SDK's accumulator rebuilds the call.
	stream := client.Chat.Completions.NewStreaming(bounded(t), params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || len(acc.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("accumulated %+v", acc.Choices)
	}
	call := acc.Choices[0].Message.ToolCalls[0]
	if call.Function.Name != "get_tide" || call.Function.Arguments != `{"port":"Brest","day":"2024-06-01"}` ||
		!strings.HasPrefix(call.ID, "call_") || acc.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("tool call %+v finish %q", call, acc.Choices[0].FinishReason)
	}
	first := up.Last().Body
	checkUpstream(t, up.Last(), true)
	if gjson.GetBytes(first, "tools.0.functionDeclarations.0.name").Str != "get_tide" ||
		gjson.GetBytes(first, "tools.0.functionDeclarations.0.parameters.additionalProperties").Exists() ||
		gjson.GetBytes(first, "toolConfig.functionCallingConfig.mode").Str != "AUTO" {
		t.Fatalf("first upstream body %s", first)
	}

	// 2. The client runs the tool and sends the result; the model finishes.
	params.Messages = append(params.Messages, acc.Choices[0].Message.ToParam(), openai.ToolMessage(`{"high":"06:12"}`, call.ID))
	comp, err := client.Chat.Completions.New(bounded(t), params)
	if err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].Message.Content != "High tide in Brest is at 06:12." || comp.Choices[0].FinishReason != "stop" {
		t.Fatalf("final answer %+v", comp.Choices[0])
	}
	second := gjson.ParseBytes(up.Last().Body)
	checkUpstream(t, up.Last(), false)
	contents := second.Get("contents").Array()
	if len(contents) != 3 {
		t.Fatalf("second upstream body %s", second.Raw)
	}
	fc := contents[1]
	if fc.Get("role").Str != "model" || fc.Get("parts.#").Int() != 1 || fc.Get("parts.0.functionCall.name").Str != "get_tide" ||
		fc.Get("parts.0.functionCall.args.port").Str != "Brest" || fc.Get("parts.0.functionCall.args.day").Str != "2024-06-01" {
		t.Fatalf("functionCall turn %s", fc.Raw)
	}
	fr := contents[2]
	if fr.Get("role").Str != "user" || fr.Get("parts.0.functionResponse.name").Str != "get_tide" ||
		fr.Get("parts.0.functionResponse.response.high").Str != "06:12" {
		t.Fatalf("functionResponse turn %s", fr.Raw)
	}
}

func TestSDKImages(t *testing.T) {
	up := geminitest.New(geminitest.Options{Answer: "A heron."})
	defer up.Close()
	_, client := start(t, up)
	ask := func(url string) gjson.Result {
		t.Helper()
		_, err := client.Chat.Completions.New(bounded(t), openai.ChatCompletionNewParams{
			Model: "gemini-flash",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("What animal is on this sign?"),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: url, Detail: "low"}),
			})},
		})
		if err != nil {
			t.Fatal(err)
		}
		parts := gjson.GetBytes(up.Last().Body, "contents.0.parts")
		if parts.Get("0.text").Str != "What animal is on this sign?" {
			t.Fatalf("parts %s", parts.Raw)
		}
		return parts.Get("1.inlineData")
	}

	// A data: URL goes through as it is.
	if got := ask("data:image/png;base64,iVBORw0KGgo="); got.Get("mimeType").Str != "image/png" || got.Get("data").Str != "iVBORw0KGgo=" {
		t.Fatalf("inlineData %s", got.Raw)
	}

	// An http URL is fetched by the relay (Gemini cannot fetch it) and inlined.
	jpeg := []byte("\xff\xd8\xff\xe0 not really a jpeg")
	var fetched atomic.Int32
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(jpeg)
	}))
	defer img.Close()
	old := adaptor.Images.AllowPrivate
	adaptor.Images.AllowPrivate = true
	defer func() { adaptor.Images.AllowPrivate = old }()
	got := ask(img.URL + "/heron.jpg")
	if got.Get("mimeType").Str != "image/jpeg" || got.Get("data").Str != base64.StdEncoding.EncodeToString(jpeg) || fetched.Load() != 1 {
		t.Fatalf("inlineData %s (fetched %d)", got.Raw, fetched.Load())
	}
}

func TestSDKUpstreamErrors(t *testing.T) {
	for name, c := range map[string]struct {
		opts   geminitest.Options
		status int
		code   string
	}{
		"invalid key is 401": {geminitest.Options{Key: "another-key"}, 401, "invalid_api_key"},
		"quota is 429":       {geminitest.Options{Status: 429, ErrorMessage: "Resource has been exhausted", RetryDelay: "37s"}, 429, "rate_limit_exceeded"},
		"prompt blocked":     {geminitest.Options{BlockReason: "SAFETY"}, 200, ""},
	} {
		t.Run(name, func(t *testing.T) {
			up := geminitest.New(c.opts)
			defer up.Close()
			_, client := start(t, up)
			comp, err := client.Chat.Completions.New(bounded(t), openai.ChatCompletionNewParams{
				Model: "gemini-flash", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			if c.status == 200 {
				if err != nil || comp.Choices[0].FinishReason != "content_filter" || comp.Choices[0].Message.Content != "" {
					t.Fatalf("%v %+v", err, comp)
				}
				return
			}
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != c.status || apiErr.Code != c.code || strings.Contains(apiErr.Message, upKey) {
				t.Fatalf("%v", err)
			}
		})
	}
}
