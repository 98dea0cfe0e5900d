package hunyuan

import (
	"strconv"

	"github.com/tidwall/gjson"

	"relay/adaptor"
)

// appendTools writes Tools, ToolChoice and CustomTool. Hunyuan forces a tool with ToolChoice "custom"
// plus the tool itself in CustomTool.
func appendTools(out []byte, tools, choice gjson.Result) ([]byte, error) {
	var list []gjson.Result
	if tools.IsArray() {
		list = tools.Array()
	} else if !isNull(tools) {
		return nil, adaptor.BadRequest("tools", "tools must be an array")
	}
	if len(list) == 0 {
		return out, nil // tool_choice without tools means nothing upstream
	}
	var err error
	out = append(out, `,"Tools":[`...)
	for i, t := range list {
		if i > 0 {
			out = append(out, ',')
		}
		if out, err = appendTool(out, t, "tools["+strconv.Itoa(i)+"]"); err != nil {
			return nil, err
		}
	}
	out = append(out, ']')

	var forced gjson.Result
	switch {
	case isNull(choice):
		return out, nil
	case choice.Type == gjson.String:
		switch choice.Str {
		case "none", "auto":
			out = append(out, `,"ToolChoice":`...)
			return adaptor.AppendJSONString(out, choice.Str), nil
		case "required":
			// No native "any tool"; with a single tool, forcing that tool is the same thing.
			if len(list) != 1 {
				return nil, adaptor.BadRequest("tool_choice",
					`hunyuan cannot force "some tool" among several; name the tool in tool_choice`)
			}
			forced = list[0]
		default:
			return nil, adaptor.BadRequest("tool_choice", "unknown tool_choice "+strconv.Quote(choice.Str))
		}
	case choice.IsObject():
		name := choice.Get("function.name").String()
		for _, t := range list {
			if t.Get("function.name").String() == name {
				forced = t
				break
			}
		}
		if !forced.Exists() {
			return nil, adaptor.BadRequest("tool_choice", "tool_choice names a tool that is not in tools")
		}
	default:
		return nil, adaptor.BadRequest("tool_choice", "tool_choice must be a string or an object")
	}
	out = append(out, `,"ToolChoice":"custom","CustomTool":`...)
	return appendTool(out, forced, "tool_choice")
}

// appendTool writes {Type, Function:{Name, Parameters, Description}}; Parameters is a JSON string.
func appendTool(out []byte, t gjson.Result, param string) ([]byte, error) {
	if typ := t.Get("type").String(); typ != "" && typ != "function" {
		return nil, adaptor.BadRequest(param+".type", "hunyuan supports only function tools")
	}
	fn := t.Get("function")
	name := fn.Get("name").String()
	if name == "" {
		return nil, adaptor.BadRequest(param+".function.name", "tool name is required")
	}
	out = append(out, `{"Type":"function","Function":{"Name":`...)
	out = adaptor.AppendJSONString(out, name)
	if p := fn.Get("parameters"); !isNull(p) {
		out = append(out, `,"Parameters":`...)
		out = adaptor.AppendJSONString(out, jsonText(p))
	}
	if d := fn.Get("description").String(); d != "" {
		out = append(out, `,"Description":`...)
		out = adaptor.AppendJSONString(out, d)
	}
	return append(out, "}}"...), nil
}

// jsonText renders a value that Hunyuan wants as a JSON string: a string stays as it is (clients that
// already serialised it), anything else is sent compacted.
func jsonText(v gjson.Result) string {
	if v.Type == gjson.String {
		return v.Str
	}
	return v.Get("@ugly").Raw
}
