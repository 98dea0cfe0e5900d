package relay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func mustTmpl(t *testing.T, text string) *strategy {
	t.Helper()
	tm, err := parseTemplate("system", text)
	if err != nil {
		t.Fatal(err)
	}
	return &strategy{name: "s", model: "m", system: tm}
}

func TestStrategyTemplateRendersNestedAndExactNumbers(t *testing.T) {
	params, err := decodeParams(`{"example_string":"a tutor & guide","example_object":{"key":"Go","key2":"tests"},"patient":{"age":67,"big":12345678901234567890}}`)
	if err != nil {
		t.Fatal(err)
	}
	st := mustTmpl(t, `Act as {{ .example_string }}; use {{ .example_object.key }} for {{ .example_object.key2 }}. Age {{ .patient.age }} {{ .patient.big }} {{ json .example_object }}`)
	got, err := render(st.system, params)
	if err != nil {
		t.Fatal(err)
	}
	want := `Act as a tutor & guide; use Go for tests. Age 67 12345678901234567890 {"key":"Go","key2":"tests"}`
	if got != want {
		t.Fatalf("rendered %q\nwant     %q", got, want)
	}
}

func TestStrategyTemplateMissingKeysNameTheParameter(t *testing.T) {
	st := mustTmpl(t, `Patient age {{ .patient.age }}.`)
	for _, tc := range []struct{ params, want string }{
		{`{}`, "parameters.patient.age"},                                 // parent missing
		{`{"patient":{"gender":"f"}}`, "parameters.patient.age"},         // leaf missing
		{`{"patient":"just a string"}`, "parameters.patient.age cannot"}, // wrong type
	} {
		params, _ := decodeParams(tc.params)
		_, err := render(st.system, params)
		if _, ok := err.(*renderError); !ok || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("params %s: err %v, want one naming %q", tc.params, err, tc.want)
		}
	}
	// No parameters at all renders a template that needs none.
	params, _ := decodeParams("")
	if got, err := render(mustTmpl(t, "plain").system, params); err != nil || got != "plain" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestStrategyBodyOrderAndOptions(t *testing.T) {
	temp := 0.2
	st := mustTmpl(t, `You are {{ .role }}.`)
	st.temperature, st.maxTokens, st.responseFormat = &temp, 300, "json_object"
	msgs, err := compileMessages("x", []TemplateMessage{{Role: "user", MultiContent: []TemplatePart{
		{Type: "text", Text: "Example for {{ .role }}"}, {Type: "image_url"}}}})
	if err != nil {
		t.Fatal(err)
	}
	st.messages = msgs
	params, _ := decodeParams(`{"role":"a nurse"}`)
	body, err := buildStrategyBody(st, params, nil, gjson.Parse(`[{"role":"user","content":"hi"}]`), "", true)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"m","messages":[{"role":"system","content":"You are a nurse."},{"role":"user","content":[{"type":"text","text":"Example for a nurse"}]},{"role":"user","content":"hi"}],"temperature":0.2,"max_tokens":300,"response_format":{"type":"json_object"},"stream":true,"stream_options":{"include_usage":true}}`
	if string(body) != want {
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
	if _, aerr := ParseChatRequest(body); aerr != nil {
		t.Fatal(aerr)
	}
	// The request's response_format wins over the strategy's.
	body, _ = buildStrategyBody(st, params, nil, gjson.Parse(`[{"role":"user","content":"hi"}]`), "text", false)
	if gjson.GetBytes(body, "response_format").Exists() || gjson.GetBytes(body, "stream").Exists() {
		t.Fatalf("text format or stream leaked: %s", body)
	}
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const strategyChannels = `
channels:
  - {name: demo, kind: demo, enabled: true, models: [demo]}
  - {name: off, kind: openai, enabled: false, models: [gpt-off], base_url: "http://x"}
`

func TestStrategyConfigLoadsAndRefusesBadOnes(t *testing.T) {
	good := strategyChannels + `
credit_groups:
  - {name: pro, quantity: 5, recoverable: true, recovery_period: 7, recovery_quantity: 5}
strategies:
  - name: free-normal
    model: demo
    system: "Act as {{ .example_string }} using {{ .example_object.key }}."
    history_turns: 3
    cost: 2
    credit_group: pro
  - {name: oneshot, model: demo, history: false, cost: 0, temperature: 0.5, max_tokens: 99, response_format: json_object}
instructions:
  - name: test
    model: demo
    max_token: 1000
    temperature: 1
    messages:
      - {role: system, content: "you are a professional {{ .role }}."}
      - role: user
        multi_content:
          - {type: text, text: "Tell me about {{ .question }}. Age {{ .patient.age }}"}
          - {type: image_url, image_url: {url: ""}}
`
	cfg, err := LoadConfig(writeConfig(t, good))
	if err != nil {
		t.Fatal(err)
	}
	tb := cfg.bpTablesOf()
	fn, one, in := tb.strategies["free-normal"], tb.strategies["oneshot"], tb.instructions["test"]
	if fn == nil || fn.turns != 3 || fn.cost != 2 || fn.group != "pro" || !fn.history || fn.system == nil {
		t.Fatalf("free-normal = %+v", fn)
	}
	if one == nil || one.history || one.cost != 0 || one.group != DefaultCreditGroup || *one.temperature != 0.5 || one.maxTokens != 99 || one.responseFormat != "json_object" {
		t.Fatalf("oneshot = %+v", one)
	}
	if in == nil || in.maxTokens != 1000 || len(in.messages) != 2 || len(in.messages[1].parts) != 2 {
		t.Fatalf("instruction = %+v", in)
	}
	if g := tb.groups["pro"]; g.Quantity != 5 || g.RecoveryDays != 7 || !g.Recoverable || tb.groups[DefaultCreditGroup] != defaultCredits {
		t.Fatalf("groups = %+v", tb.groups)
	}

	for name, tc := range map[string]struct{ yaml, want string }{
		"syntax":        {"strategies:\n  - {name: broken, model: demo, system: \"Hi {{ .name \"}\n", "strategies[0] (broken).system: config_invalid"},
		"unserved":      {"strategies:\n  - {name: ghost, model: nope, system: hi}\n", `strategies[0] (ghost): config_invalid: model "nope" is served by no enabled channel`},
		"disabled":      {"strategies:\n  - {name: off, model: gpt-off}\n", "(off): config_invalid"},
		"instr-syntax":  {"instructions:\n  - {name: bad, model: demo, messages: [{role: user, content: \"{{ if }}\"}]}\n", "instructions[0] (bad).messages[0].content: config_invalid"},
		"instr-model":   {"instructions:\n  - {name: far, model: nope, messages: [{role: user, content: x}]}\n", "instructions[0] (far): config_invalid"},
		"group":         {"strategies:\n  - {name: g, model: demo, credit_group: vip}\n", `credit_group "vip" is not configured`},
		"format":        {"strategies:\n  - {name: f, model: demo, response_format: xml}\n", "response_format must be"},
		"duplicate":     {"strategies:\n  - {name: d, model: demo}\n  - {name: d, model: demo}\n", "(d).name is used twice"},
		"role":          {"instructions:\n  - {name: r, model: demo, messages: [{role: tool, content: x}]}\n", "role must be"},
		"negative-cost": {"strategies:\n  - {name: n, model: demo, cost: -1}\n", "must not be negative"},
	} {
		_, err := LoadConfig(writeConfig(t, strategyChannels+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
}

// The repo's config.yaml carries a runnable strategy and instruction on the demo model.
func TestStrategyRepoConfig(t *testing.T) {
	cfg, err := LoadConfig("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tb := cfg.bpTablesOf()
	st, in := tb.strategies["free-normal"], tb.instructions["test"]
	if st == nil || st.model != "demo" || !st.history || st.turns != 10 || st.cost != 1 || in == nil || in.maxTokens != 1000 {
		t.Fatalf("strategies %+v instructions %+v", tb.strategies, tb.instructions)
	}
	params, _ := decodeParams(`{"example_string":"a guide","example_object":{"key":"Go","key2":"tests"}}`)
	if got, err := render(st.system, params); err != nil || got != "现在你扮演 a guide, 告诉我如何使用 Go 完成 tests。" {
		t.Fatalf("%q %v", got, err)
	}
}
