package relay_test

import (
	"context"
	"errors"
	"testing"

	"github.com/openai/openai-go/v3"

	"relay/adaptor"
	"relay/adaptor/hunyuan"
	"relay/adaptor/hunyuan/hunyuantest"
	"relay/relay"
	"relay/relay/relaytest"
)

func hunyuanRelay(t *testing.T, opts hunyuantest.Options) (*relaytest.Relay, *hunyuantest.Server) {
	opts.VerifySignature, opts.SecretID, opts.SecretKey = true, "AKIDtest", "secret-key-test"
	up := hunyuantest.NewServer(opts)
	t.Cleanup(up.Close)
	t.Setenv("TEST_HUNYUAN_SECRET", "secret-key-test")
	r := relaytest.Start(t, map[string]adaptor.Adaptor{"hunyuan": hunyuan.New()}, nil, relay.ChannelConfig{
		Name: "hy", Kind: "hunyuan", Enabled: "true", BaseURL: up.URL, Models: []string{"gpt-4o"},
		ModelMap:    map[string]string{"gpt-4o": "hunyuan-turbo"},
		Credentials: map[string]string{"secret_id": "AKIDtest", "secret_key": "${TEST_HUNYUAN_SECRET}"},
	})
	return r, up
}

// The openai-go SDK streams through the relay from a signed Hunyuan upstream and gets the full text and
// usage; the non-stream path too.
func TestSDKThroughHunyuan(t *testing.T) {
	r, _ := hunyuanRelay(t, hunyuantest.Options{Answer: "巴黎是法国的首都。Paris.", Chunks: 4, PromptTokens: 12})
	client := openai.NewClient(optionBase(r.URL), optionKey(r.Key), optionNoRetry())
	p := userParams("gpt-4o", "法国的首都是哪里？")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(context.Background(), p)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		if c := stream.Current(); c.Model != "gpt-4o" {
			t.Fatalf("chunk model %q", c.Model)
		}
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != "巴黎是法国的首都。Paris." || acc.Usage.PromptTokens != 12 || acc.Usage.CompletionTokens == 0 || acc.Choices[0].FinishReason != "stop" {
		t.Fatalf("stream: %q %+v %q", acc.Choices[0].Message.Content, acc.Usage, acc.Choices[0].FinishReason)
	}
	comp, err := client.Chat.Completions.New(context.Background(), userParams("gpt-4o", "again"))
	if err != nil || comp.Choices[0].Message.Content != "巴黎是法国的首都。Paris." || comp.Usage.PromptTokens != 12 || comp.Model != "gpt-4o" {
		t.Fatalf("non-stream: %+v %v", comp, err)
	}
	rows := r.Logs()
	if len(rows) != 2 || rows[0].UpstreamModel != "hunyuan-turbo" || rows[0].Status != 200 || rows[1].Usage.PromptTokens != 12 {
		t.Fatalf("logs %+v", rows)
	}
}

func TestSDKHunyuanErrors(t *testing.T) {
	r, _ := hunyuanRelay(t, hunyuantest.Options{ErrorCode: "LimitExceeded", ErrorMessage: "too many"})
	client := openai.NewClient(optionBase(r.URL), optionKey(r.Key), optionNoRetry())
	_, err := client.Chat.Completions.New(context.Background(), userParams("gpt-4o", "hi"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 {
		t.Fatalf("want 429, got %v", err)
	}
}
