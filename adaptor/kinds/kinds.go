// Package kinds lists every adaptor kind the relay knows. A new upstream kind adds one line here.
package kinds

import (
	"relay/adaptor"
	"relay/adaptor/anthropic"
	"relay/adaptor/demo"
	"relay/adaptor/fastgpt"
	"relay/adaptor/gemini"
	"relay/adaptor/hunyuan"
	"relay/adaptor/ollama"
	"relay/adaptor/openai"
	"relay/adaptor/spark"
)

// All returns the adaptors by kind name, as used in config.yaml's channels[].kind.
func All() map[string]adaptor.Adaptor {
	return map[string]adaptor.Adaptor{
		"anthropic": anthropic.New(),
		"demo":      demo.New(),
		"fastgpt":   fastgpt.New(),
		"gemini":    gemini.New(),
		"hunyuan":   hunyuan.New(),
		"ollama":    ollama.New(),
		"openai":    openai.New(),
		"spark":     spark.New(),
	}
}
