package hunyuan

import (
	"strconv"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// buildBody turns the client's OpenAI body into a ChatCompletions body. It appends bytes in a fixed
// key order so the body that is signed is the body that is sent. OpenAI fields without a native
// equivalent (max_tokens, penalties, response_format, user, ...) are dropped.
func buildBody(req *adaptor.Request, stream bool) ([]byte, error) {
	if !gjson.ValidBytes(req.Body) {
		return nil, adaptor.BadRequest("", "request body is not valid JSON")
	}
	root := gjson.ParseBytes(req.Body)
	model := req.UpstreamModel
	if model == "" {
		model = req.Model
	}
	if model == "" {
		model = root.Get("model").String()
	}
	if model == "" {
		return nil, adaptor.BadRequest("model", "model is required")
	}
	if n := root.Get("n"); n.Exists() && n.Type != gjson.Null && n.Int() != 1 {
		return nil, adaptor.BadRequest("n", "hunyuan returns exactly one choice; n must be 1")
	}

	out := make([]byte, 0, len(req.Body)+128)
	out = append(out, `{"Model":`...)
	out = adaptor.AppendJSONString(out, model)
	out = append(out, `,"Messages":`...)
	out, err := appendMessages(out, root.Get("messages"))
	if err != nil {
		return nil, err
	}
	out = append(out, `,"Stream":`...)
	out = strconv.AppendBool(out, stream)
	if out, err = appendNumber(out, "Temperature", root.Get("temperature"), "temperature"); err != nil {
		return nil, err
	}
	if out, err = appendNumber(out, "TopP", root.Get("top_p"), "top_p"); err != nil {
		return nil, err
	}
	if out, err = appendSeed(out, root.Get("seed")); err != nil {
		return nil, err
	}
	if out, err = appendStop(out, root.Get("stop")); err != nil {
		return nil, err
	}
	if out, err = appendTools(out, root.Get("tools"), root.Get("tool_choice")); err != nil {
		return nil, err
	}
	// The snake_case switch Hunyuan's own OpenAI-compatible endpoint takes through extra_body.
	if e := root.Get("enable_enhancement"); e.IsBool() {
		out = append(out, `,"EnableEnhancement":`...)
		out = strconv.AppendBool(out, e.Bool())
	}
	return append(out, '}'), nil
}

func isNull(r gjson.Result) bool { return !r.Exists() || r.Type == gjson.Null }

// appendNumber copies a numeric field as the client wrote it.
func appendNumber(out []byte, key string, v gjson.Result, param string) ([]byte, error) {
	if isNull(v) {
		return out, nil
	}
	if v.Type != gjson.Number {
		return nil, adaptor.BadRequest(param, param+" must be a number")
	}
	out = append(out, `,"`...)
	out = append(out, key...)
	out = append(out, `":`...)
	return append(out, v.Raw...), nil
}

// appendSeed folds seeds outside Hunyuan's 1..10000 into that range, so a given seed still always
// maps to the same upstream seed (OpenAI clients commonly send 0 or large values).
func appendSeed(out []byte, v gjson.Result) ([]byte, error) {
	if isNull(v) {
		return out, nil
	}
	if v.Type != gjson.Number {
		return nil, adaptor.BadRequest("seed", "seed must be an integer")
	}
	s := v.Int()
	if s < 1 || s > 10000 {
		s %= 10000
		if s < 0 {
			s += 10000
		}
		s++
	}
	out = append(out, `,"Seed":`...)
	return strconv.AppendInt(out, s, 10), nil
}

// appendStop sends stop as an array; OpenAI also allows a single string.
func appendStop(out []byte, v gjson.Result) ([]byte, error) {
	switch {
	case isNull(v):
		return out, nil
	case v.Type == gjson.String:
		if v.Str == "" {
			return out, nil
		}
		out = append(out, `,"Stop":[`...)
		out = adaptor.AppendJSONString(out, v.Str)
		return append(out, ']'), nil
	case !v.IsArray():
		return nil, adaptor.BadRequest("stop", "stop must be a string or an array of strings")
	}
	start := len(out)
	out = append(out, `,"Stop":[`...)
	n := 0
	var err error
	v.ForEach(func(_, s gjson.Result) bool {
		if s.Type != gjson.String {
			err = adaptor.BadRequest("stop", "stop must be a string or an array of strings")
			return false
		}
		if s.Str == "" {
			return true
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = adaptor.AppendJSONString(out, s.Str)
		n++
		return true
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return out[:start], nil
	}
	return append(out, ']'), nil
}
