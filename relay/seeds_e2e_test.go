package relay_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"relay/adaptor"
	"relay/adaptor/fastgpt"
	"relay/adaptor/fastgpt/fastgpttest"
	"relay/adaptor/spark"
	"relay/adaptor/spark/sparktest"
	"relay/relay"
	"relay/relay/relaytest"
)

func streamAll(t *testing.T, client openai.Client, p openai.ChatCompletionNewParams) openai.ChatCompletionAccumulator {
	t.Helper()
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(context.Background(), p)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return acc
}

// FastGPT's detail events do not reach plain OpenAI clients; the answer and the node token usage do.
func TestSDKThroughFastGPT(t *testing.T) {
	up := fastgpttest.NewServer(fastgpttest.Options{Key: "fastgpt-appkey", Answer: "工作流的回答 workflow answer", NodeStatus: []string{"AI 对话"}})
	defer up.Close()
	r := relaytest.Start(t, map[string]adaptor.Adaptor{"fastgpt": fastgpt.New()}, nil, relay.ChannelConfig{
		Name: "fg", Kind: "fastgpt", Enabled: "true", BaseURL: up.URL, Keys: []string{"fastgpt-appkey"}, Models: []string{"fastgpt-app"}})
	client := openai.NewClient(optionBase(r.URL), optionKey(r.Key), optionNoRetry())
	acc := streamAll(t, client, userParams("fastgpt-app", "hi"))
	// Without detail FastGPT reports no real usage: the relay estimates it.
	if acc.Choices[0].Message.Content != "工作流的回答 workflow answer" || acc.Usage.CompletionTokens == 0 || acc.Usage.PromptTokens == 0 {
		t.Fatalf("stream: %q %+v", acc.Choices[0].Message.Content, acc.Usage)
	}
	// With detail on, the node token counts are the usage, and the named events stay away from an
	// OpenAI client: only unnamed chunks reach it.
	resp := r.Post(r.Key, `{"model":"fastgpt-app","stream":true,"detail":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "event:") || strings.Contains(string(body), "flowNodeStatus") {
		t.Fatalf("named events leaked to an OpenAI client:\n%s", body)
	}
	if !strings.Contains(string(body), `"usage":{"prompt_tokens":41,"completion_tokens":16,"total_tokens":57}`) {
		t.Fatalf("node usage missing:\n%s", body)
	}
	comp, err := client.Chat.Completions.New(context.Background(), userParams("fastgpt-app", "hi"))
	if err != nil || comp.Choices[0].Message.Content != "工作流的回答 workflow answer" || comp.ID == "" || comp.Created == 0 {
		t.Fatalf("non-stream: %+v %v", comp, err)
	}
}

func sparkRelay(t *testing.T, opts sparktest.Options) (*relaytest.Relay, *sparktest.Server) {
	up := sparktest.NewServer(opts)
	t.Cleanup(up.Close)
	r := relaytest.Start(t, map[string]adaptor.Adaptor{"spark": spark.New()}, nil, relay.ChannelConfig{
		Name: "sp", Kind: "spark", Enabled: "true", BaseURL: up.WSURL("/v3.5/chat"), Models: []string{"generalv3.5"},
		Credentials: map[string]string{"app_id": sparktest.AppID, "api_key": sparktest.APIKey, "api_secret": sparktest.APISecret}})
	return r, up
}

func TestSDKThroughSpark(t *testing.T) {
	r, _ := sparkRelay(t, sparktest.Options{Answer: "星火的回答，分成几帧。", Frames: 4})
	client := openai.NewClient(optionBase(r.URL), optionKey(r.Key), optionNoRetry())
	acc := streamAll(t, client, userParams("generalv3.5", "你好"))
	if acc.Choices[0].Message.Content != "星火的回答，分成几帧。" || acc.Usage.TotalTokens == 0 {
		t.Fatalf("stream: %q %+v", acc.Choices[0].Message.Content, acc.Usage)
	}
	comp, err := client.Chat.Completions.New(context.Background(), userParams("generalv3.5", "你好"))
	if err != nil || comp.Choices[0].Message.Content != "星火的回答，分成几帧。" || comp.Usage.TotalTokens != acc.Usage.TotalTokens {
		t.Fatalf("non-stream: %+v %v", comp, err)
	}
}

// A client that goes away closes the upstream WebSocket; a socket closed before the final frame is a
// failed stream, not a complete answer.
func TestSparkCancelAndEarlyClose(t *testing.T) {
	r, up := sparkRelay(t, sparktest.Options{Answer: "一二三四五六", Frames: 6, Hold: true})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/chat/completions",
		strings.NewReader(`{"model":"generalv3.5","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+r.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	io.ReadAtLeast(resp.Body, buf, 1)
	cancel()
	resp.Body.Close()
	select {
	case <-up.ClientClosed():
	case <-time.After(10 * time.Second): // generous: a loaded CI machine, not the relay, sets the pace
		t.Fatal("upstream socket not closed after client disconnect")
	}

	r2, _ := sparkRelay(t, sparktest.Options{Answer: "一二三四", Frames: 4, CloseBeforeEnd: true})
	resp = r2.Post(r2.Key, `{"model":"generalv3.5","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	frames := relaytest.SSEFrames(t, resp.Body)
	resp.Body.Close()
	last := frames[len(frames)-1]
	var v struct {
		Error struct{ Code string } `json:"error"`
	}
	if json.Unmarshal([]byte(last), &v) != nil || v.Error.Code != "upstream_stream_broken" {
		t.Fatalf("last frame %s", last)
	}
	resp = r2.Post(r2.Key, `{"model":"generalv3.5","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 502 {
		t.Fatalf("non-stream early close: %d", resp.StatusCode)
	}
	resp.Body.Close()
}
