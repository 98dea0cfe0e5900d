package adaptor

import (
	"crypto/rand"
	"sync"

	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
	"github.com/tidwall/gjson"
)

// Token estimation for upstreams that report no usage. It uses the cl100k_base BPE (embedded, no
// download) so figures are real token counts for OpenAI-family models and close for the others.

var (
	encOnce sync.Once
	enc     *tiktoken.Tiktoken
)

func encoder() *tiktoken.Tiktoken {
	encOnce.Do(func() {
		tiktoken.SetBpeLoader(tiktoken_loader.NewOfflineLoader())
		e, err := tiktoken.GetEncoding("cl100k_base")
		if err == nil {
			enc = e
		}
	})
	return enc
}

// CountTokens counts the tokens of s.
func CountTokens(s string) int {
	if s == "" {
		return 0
	}
	if e := encoder(); e != nil {
		return len(e.EncodeOrdinary(s))
	}
	return (len(s) + 3) / 4 // the encoder failed to load: a rough bytes/4 estimate
}

// EstimatePromptTokens counts an OpenAI request's message tokens the way OpenAI documents it: a few
// tokens of framing per message plus the text of each message's content parts.
func EstimatePromptTokens(body []byte) int {
	n := 3 // every reply is primed with <|start|>assistant<|message|>
	gjson.GetBytes(body, "messages").ForEach(func(_, m gjson.Result) bool {
		n += 3
		n += CountTokens(m.Get("role").Str)
		n += CountTokens(MessageText(m.Get("content")))
		if name := m.Get("name").Str; name != "" {
			n += 1 + CountTokens(name)
		}
		return true
	})
	return n
}

// ParseOpenAIUsage reads an OpenAI-shaped usage object ({"prompt_tokens","completion_tokens",
// "total_tokens"}; a missing total is the sum). Anything but an object is no usage.
func ParseOpenAIUsage(u gjson.Result) Usage {
	if !u.IsObject() {
		return Usage{}
	}
	p, c, t := int(u.Get("prompt_tokens").Int()), int(u.Get("completion_tokens").Int()), int(u.Get("total_tokens").Int())
	if t == 0 {
		t = p + c
	}
	return Usage{PromptTokens: p, CompletionTokens: c, TotalTokens: t}
}

// EstimateUsage fills a usage from the request and answer text, marked estimated.
func EstimateUsage(reqBody []byte, answer string) Usage {
	p, c := EstimatePromptTokens(reqBody), CountTokens(answer)
	return Usage{PromptTokens: p, CompletionTokens: c, TotalTokens: p + c, Estimated: true}
}

// MessageText flattens an OpenAI message content (a string or an array of parts) to its text.
func MessageText(content gjson.Result) string {
	if content.Type == gjson.String {
		return content.Str
	}
	if !content.IsArray() {
		return ""
	}
	var out []byte
	content.ForEach(func(_, p gjson.Result) bool {
		if p.Get("type").Str == "text" {
			out = append(out, p.Get("text").Str...)
		}
		return true
	})
	return string(out)
}

// NewID returns prefix followed by 24 random base-62 characters (chatcmpl-..., say).
func NewID(prefix string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var raw [24]byte
	_, _ = rand.Read(raw[:])
	b := make([]byte, len(prefix)+len(raw))
	copy(b, prefix)
	for i, r := range raw {
		b[len(prefix)+i] = alphabet[int(r)%len(alphabet)]
	}
	return string(b)
}
