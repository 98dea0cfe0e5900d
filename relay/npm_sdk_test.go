package relay_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"relay/adaptor"
	"relay/adaptor/fastgpt"
	"relay/adaptor/fastgpt/fastgpttest"
	"relay/adaptor/hunyuan"
	"relay/adaptor/hunyuan/hunyuantest"
	"relay/adaptor/openai/openaitest"
	"relay/adaptor/spark"
	"relay/adaptor/spark/sparktest"
	"relay/relay"
	"relay/relay/relaytest"
)

// The npm openai SDK (sdktest/npm, installed by .ci/run) must work against the relay as a drop-in base
// URL: its stream helper, a plain streamed create and a non-stream create, for each upstream kind.
func TestNpmOpenAISDK(t *testing.T) {
	dir, _ := filepath.Abs("../sdktest/npm")
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", "openai")); err != nil || serr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must have node and sdktest/npm/node_modules (npm ci): %v %v", err, serr)
		}
		t.Skip("node or sdktest/npm/node_modules missing; run: (cd sdktest/npm && npm ci)")
	}
	oa := openaitest.New(openaitest.Options{Answer: "from the openai mock", NoRole: true})
	defer oa.Close()
	fg := fastgpttest.NewServer(fastgpttest.Options{Key: "fastgpt-key", Answer: "工作流回答", NodeStatus: []string{"AI"}})
	defer fg.Close()
	hy := hunyuantest.NewServer(hunyuantest.Options{Answer: "混元的回答", Chunks: 3})
	defer hy.Close()
	sp := sparktest.NewServer(sparktest.Options{Answer: "星火的回答", Frames: 3})
	defer sp.Close()
	kinds := testKinds()
	kinds["fastgpt"], kinds["hunyuan"], kinds["spark"] = fastgpt.New(), hunyuan.New(), spark.New()
	r := relaytest.Start(t, map[string]adaptor.Adaptor(kinds), nil,
		demoChannel(),
		openaiChannel("oa", oa.BaseURL(), "gpt-mock"),
		relay.ChannelConfig{Name: "fg", Kind: "fastgpt", Enabled: "true", BaseURL: fg.URL, Keys: []string{"fastgpt-key"}, Models: []string{"fastgpt-app"}},
		relay.ChannelConfig{Name: "hy", Kind: "hunyuan", Enabled: "true", BaseURL: hy.URL, Models: []string{"hunyuan-lite"},
			Credentials: map[string]string{"secret_id": "AKIDtest", "secret_key": "secret"}},
		relay.ChannelConfig{Name: "sp", Kind: "spark", Enabled: "true", BaseURL: sp.WSURL("/v3.5/chat"), Models: []string{"generalv3.5"},
			Credentials: map[string]string{"app_id": sparktest.AppID, "api_key": sparktest.APIKey, "api_secret": sparktest.APISecret}},
	)
	cases := []struct{ model, extra, want string }{
		{"demo", "", "You said: hello npm"},
		{"gpt-mock", "", "from the openai mock"},
		{"fastgpt-app", `{"detail":true}`, "工作流回答"},
		{"hunyuan-lite", "", "混元的回答"},
		{"generalv3.5", "", "星火的回答"},
	}
	for _, c := range cases {
		t.Run(c.model, func(t *testing.T) {
			args := []string{filepath.Join(dir, "check.mjs"), r.URL, r.Key, c.model, "hello npm"}
			if c.extra != "" {
				args = append(args, c.extra)
			}
			cmd := exec.Command(node, args...)
			cmd.Dir = dir
			timer := time.AfterFunc(60*time.Second, func() {
				if cmd.Process != nil {
					cmd.Process.Kill()
				}
			})
			defer timer.Stop()
			out, err := cmd.Output()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				t.Fatalf("node: %v\n%s\n%s", err, out, stderr)
			}
			var res struct {
				Helper struct {
					Content, Deltas, Finish string
					Usage                   *struct {
						TotalTokens int `json:"total_tokens"`
					}
				}
				Stream struct {
					Content string
					Chunks  int
				}
				Create struct{ Content string }
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("output %s: %v", out, err)
			}
			if res.Helper.Content != c.want || res.Helper.Deltas != c.want || res.Helper.Finish != "stop" || res.Helper.Usage == nil || res.Helper.Usage.TotalTokens == 0 {
				t.Fatalf("stream helper: %+v", res.Helper)
			}
			if res.Stream.Content != c.want || res.Stream.Chunks < 2 || res.Create.Content != c.want {
				t.Fatalf("stream %+v create %+v", res.Stream, res.Create)
			}
		})
	}
}
