package relay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	"relay/adaptor"
	"relay/store"
)

// Configuration of the strategy surface (seed BytePower doc, /bp/ai/...): strategies, instructions and
// credit groups. Templates are parsed and models checked when the config loads, so a broken strategy
// stops the relay at start (or is refused by a reload) with a message naming it.

// StrategySurfaceConfig is squashed into Config: its keys are top-level in config.yaml.
type StrategySurfaceConfig struct {
	Strategies   []StrategyConfig    `mapstructure:"strategies"`
	Instructions []InstructionConfig `mapstructure:"instructions"`
	// CreditGroups give the defaults of each user's ai_credit asset; strategies and instructions name
	// theirs with credit_group (default "default", which exists even when not configured).
	CreditGroups []CreditGroupConfig `mapstructure:"credit_groups"`
	// BPAppID is reported as app_id in chat histories.
	BPAppID string `mapstructure:"bp_app_id"`

	tables *bpTables // built by validateStrategies
}

// StrategyConfig is one strategy: a relay model (so routing and failover apply) and a system prompt
// rendered from the request's parameters.
type StrategyConfig struct {
	Name  string `mapstructure:"name"`
	Model string `mapstructure:"model"`
	// System is the system prompt, a Go text/template over the request's parameters.
	System string `mapstructure:"system"`
	// Messages are further templated messages sent after the system prompt (few-shot examples, say).
	Messages    []TemplateMessage `mapstructure:"messages"`
	Temperature *float64          `mapstructure:"temperature"`
	MaxTokens   int               `mapstructure:"max_tokens"`
	// ResponseFormat is used when the request names none: "", "text" or "json_object".
	ResponseFormat string `mapstructure:"response_format"`
	// History keeps the chat (default true): answers carry a chat_id and the last HistoryTurns turns
	// (default 10; 0 none) go to the upstream before the new messages.
	History      *bool `mapstructure:"history"`
	HistoryTurns *int  `mapstructure:"history_turns"`
	// Cost is the credits one successful answer takes (default 1; 0 free).
	Cost        *int64 `mapstructure:"cost"`
	CreditGroup string `mapstructure:"credit_group"`
}

// InstructionConfig is a one-shot templated call (seed: name, model, max_token, temperature,
// response_format, messages with content or multi_content).
type InstructionConfig struct {
	Name           string            `mapstructure:"name"`
	Model          string            `mapstructure:"model"`
	MaxToken       int               `mapstructure:"max_token"`
	Temperature    *float64          `mapstructure:"temperature"`
	ResponseFormat string            `mapstructure:"response_format"`
	Messages       []TemplateMessage `mapstructure:"messages"`
	// Cost is the credits a successful call takes (default 0: instructions are free).
	Cost        int64  `mapstructure:"cost"`
	CreditGroup string `mapstructure:"credit_group"`
}

// TemplateMessage is a configured message: content, or multi_content parts (text and image_url),
// every string a template.
type TemplateMessage struct {
	Role         string         `mapstructure:"role"`
	Content      string         `mapstructure:"content"`
	MultiContent []TemplatePart `mapstructure:"multi_content"`
}

// TemplatePart is one content part of a configured message.
type TemplatePart struct {
	Type     string `mapstructure:"type"`
	Text     string `mapstructure:"text"`
	ImageURL struct {
		URL    string `mapstructure:"url"`
		Detail string `mapstructure:"detail"`
	} `mapstructure:"image_url"`
}

// CreditGroupConfig is the defaults of a user's ai_credit asset in one group.
type CreditGroupConfig struct {
	Name             string `mapstructure:"name"`
	Quantity         int64  `mapstructure:"quantity"`
	Recoverable      bool   `mapstructure:"recoverable"`
	RecoveryPeriod   int    `mapstructure:"recovery_period"` // days
	RecoveryQuantity int64  `mapstructure:"recovery_quantity"`
	ValidSeconds     int64  `mapstructure:"valid_seconds"`
}

// DefaultCreditGroup is the group used when a strategy names none; unless configured it grants 50
// credits recovering to 50 every day (the seed's example asset).
const DefaultCreditGroup = "default"

var defaultCredits = store.AssetDefaults{Quantity: 50, Recoverable: true, RecoveryDays: 1, RecoveryQuantity: 50}

// bpTables are the compiled strategies, instructions and credit groups in force.
type bpTables struct {
	strategies   map[string]*strategy
	instructions map[string]*instruction
	groups       map[string]store.AssetDefaults
	appID        string
}

type strategy struct {
	name, model    string
	system         *template.Template // nil: no system prompt
	messages       []tmplMessage
	temperature    *float64
	maxTokens      int
	responseFormat string
	history        bool
	turns          int
	cost           int64
	group          string
}

type instruction struct {
	name, model    string
	messages       []tmplMessage
	temperature    *float64
	maxTokens      int
	responseFormat string
	cost           int64
	group          string
}

type tmplMessage struct {
	role    string
	content *template.Template
	parts   []tmplPart // when set, content is nil
}

type tmplPart struct {
	typ    string
	text   *template.Template
	url    *template.Template
	detail string
}

// templateFuncs are available in every template: json renders a value as JSON (objects, say).
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Funcs(templateFuncs).Parse(text)
}

var messageRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true}

func compileMessages(where string, msgs []TemplateMessage) ([]tmplMessage, error) {
	out := make([]tmplMessage, 0, len(msgs))
	for i, m := range msgs {
		at := fmt.Sprintf("%s.messages[%d]", where, i)
		if !messageRoles[m.Role] {
			return nil, fmt.Errorf("%s.role must be system, developer, user or assistant, not %q", at, m.Role)
		}
		tm := tmplMessage{role: m.Role}
		if len(m.MultiContent) == 0 {
			t, err := parseTemplate(fmt.Sprintf("messages[%d].content", i), m.Content)
			if err != nil {
				return nil, fmt.Errorf("%s.content: config_invalid: %w", at, err)
			}
			tm.content = t
		} else if m.Content != "" {
			return nil, fmt.Errorf("%s: give content or multi_content, not both", at)
		}
		for j, p := range m.MultiContent {
			pat := fmt.Sprintf("%s.multi_content[%d]", at, j)
			tp := tmplPart{typ: p.Type, detail: p.ImageURL.Detail}
			var err error
			switch p.Type {
			case "text":
				tp.text, err = parseTemplate(fmt.Sprintf("messages[%d].multi_content[%d].text", i, j), p.Text)
			case "image_url":
				tp.url, err = parseTemplate(fmt.Sprintf("messages[%d].multi_content[%d].image_url.url", i, j), p.ImageURL.URL)
			default:
				return nil, fmt.Errorf("%s.type must be text or image_url, not %q", pat, p.Type)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: config_invalid: %w", pat, err)
			}
			tm.parts = append(tm.parts, tp)
		}
		out = append(out, tm)
	}
	return out, nil
}

func checkResponseFormat(where, rf string) error {
	switch rf {
	case "", "text", "json_object":
		return nil
	}
	return fmt.Errorf("%s.response_format must be empty, text or json_object, not %q", where, rf)
}

// validateStrategies compiles the strategy surface's configuration. A strategy or instruction whose
// model no channel lists (disabled channels left out) is config_invalid, as is a template that does
// not parse; both stop the relay at start.
func (c *Config) validateStrategies() error {
	served := map[string]bool{}
	for _, ch := range c.Channels {
		if ch.Enabled == "false" {
			continue
		}
		for _, m := range ch.Models {
			served[m] = true
		}
	}
	t := &bpTables{strategies: map[string]*strategy{}, instructions: map[string]*instruction{},
		groups: map[string]store.AssetDefaults{DefaultCreditGroup: defaultCredits}, appID: c.BPAppID}
	seenGroup := map[string]bool{}
	for i, g := range c.CreditGroups {
		where := fmt.Sprintf("config: credit_groups[%d] (%s)", i, g.Name)
		switch {
		case g.Name == "":
			return fmt.Errorf("config: credit_groups[%d].name is required", i)
		case seenGroup[g.Name]:
			return fmt.Errorf("%s.name is used twice", where)
		case g.Quantity < 0 || g.RecoveryQuantity < 0 || g.ValidSeconds < 0 || g.RecoveryPeriod < 0:
			return fmt.Errorf("%s: quantity, recovery_period, recovery_quantity and valid_seconds must not be negative", where)
		case g.Recoverable && g.RecoveryPeriod == 0:
			return fmt.Errorf("%s: a recoverable group needs recovery_period (days)", where)
		}
		seenGroup[g.Name] = true
		t.groups[g.Name] = store.AssetDefaults{Quantity: g.Quantity, Recoverable: g.Recoverable, RecoveryDays: g.RecoveryPeriod,
			RecoveryQuantity: g.RecoveryQuantity, ValidSeconds: g.ValidSeconds}
	}
	group := func(where, g string) (string, error) {
		if g == "" {
			return DefaultCreditGroup, nil
		}
		if _, ok := t.groups[g]; !ok {
			return "", fmt.Errorf("%s.credit_group %q is not configured in credit_groups", where, g)
		}
		return g, nil
	}
	for i, sc := range c.Strategies {
		if sc.Name == "" {
			return fmt.Errorf("config: strategies[%d].name is required", i)
		}
		where := fmt.Sprintf("config: strategies[%d] (%s)", i, sc.Name)
		if t.strategies[sc.Name] != nil {
			return fmt.Errorf("%s.name is used twice", where)
		}
		if err := checkModel(where, sc.Model, served); err != nil {
			return err
		}
		st := &strategy{name: sc.Name, model: sc.Model, temperature: sc.Temperature, maxTokens: sc.MaxTokens,
			responseFormat: sc.ResponseFormat, history: true, turns: 10, cost: 1}
		if sc.System != "" {
			tm, err := parseTemplate("system", sc.System)
			if err != nil {
				return fmt.Errorf("%s.system: config_invalid: %w", where, err)
			}
			st.system = tm
		}
		var err error
		if st.messages, err = compileMessages(where, sc.Messages); err != nil {
			return err
		}
		if err := checkResponseFormat(where, sc.ResponseFormat); err != nil {
			return err
		}
		if sc.History != nil {
			st.history = *sc.History
		}
		if sc.HistoryTurns != nil {
			st.turns = *sc.HistoryTurns
		}
		if sc.Cost != nil {
			st.cost = *sc.Cost
		}
		if st.turns < 0 || st.cost < 0 || sc.MaxTokens < 0 {
			return fmt.Errorf("%s: history_turns, cost and max_tokens must not be negative", where)
		}
		if st.turns > store.MaxPageSize {
			return fmt.Errorf("%s.history_turns must be at most %d", where, store.MaxPageSize)
		}
		if st.group, err = group(where, sc.CreditGroup); err != nil {
			return err
		}
		t.strategies[sc.Name] = st
	}
	for i, ic := range c.Instructions {
		if ic.Name == "" {
			return fmt.Errorf("config: instructions[%d].name is required", i)
		}
		where := fmt.Sprintf("config: instructions[%d] (%s)", i, ic.Name)
		if t.instructions[ic.Name] != nil {
			return fmt.Errorf("%s.name is used twice", where)
		}
		if err := checkModel(where, ic.Model, served); err != nil {
			return err
		}
		if len(ic.Messages) == 0 {
			return fmt.Errorf("%s.messages must list at least one message", where)
		}
		in := &instruction{name: ic.Name, model: ic.Model, temperature: ic.Temperature, maxTokens: ic.MaxToken,
			responseFormat: ic.ResponseFormat, cost: ic.Cost}
		var err error
		if in.messages, err = compileMessages(where, ic.Messages); err != nil {
			return err
		}
		if err := checkResponseFormat(where, ic.ResponseFormat); err != nil {
			return err
		}
		if ic.Cost < 0 || ic.MaxToken < 0 {
			return fmt.Errorf("%s: cost and max_token must not be negative", where)
		}
		if in.group, err = group(where, ic.CreditGroup); err != nil {
			return err
		}
		t.instructions[ic.Name] = in
	}
	c.tables = t
	return nil
}

// bpTablesOf returns the config's compiled tables; when they do not compile (only possible for a Config
// changed after LoadConfig) the last good ones, or none.
func (c *Config) bpTablesOf() *bpTables {
	// Compiled again: a Config may have been changed after LoadConfig validated it (tests do).
	if err := c.validateStrategies(); err != nil && c.tables == nil {
		return &bpTables{strategies: map[string]*strategy{}, instructions: map[string]*instruction{},
			groups: map[string]store.AssetDefaults{DefaultCreditGroup: defaultCredits}}
	}
	return c.tables
}

// --- rendering ---

// renderError is a template execution failure mapped to invalid_parameter: it names the parameter.
type renderError struct{ msg string }

func (e *renderError) Error() string { return e.msg }

var (
	reAt      = regexp.MustCompile(`at <([^>]*)>`)
	reMissing = regexp.MustCompile(`no entry for key "([^"]*)"`)
)

// render executes t over params. A missing key names the parameter path the template asked for.
func render(t *template.Template, params map[string]any) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, params); err != nil {
		msg := err.Error()
		path := ""
		if m := reAt.FindStringSubmatch(msg); m != nil {
			path = strings.TrimPrefix(strings.TrimSpace(m[1]), ".")
		}
		if m := reMissing.FindStringSubmatch(msg); m != nil {
			if path == "" {
				path = m[1]
			}
			return "", &renderError{msg: fmt.Sprintf("parameters.%s is required by the template (%s): missing key %q", path, t.Name(), m[1])}
		}
		// A type mismatch (a string where the template walks into an object, say).
		detail := msg
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			detail = msg[i+2:]
		}
		if path != "" {
			return "", &renderError{msg: fmt.Sprintf("parameters.%s cannot be rendered (%s): %s", path, t.Name(), detail)}
		}
		return "", &renderError{msg: fmt.Sprintf("parameters cannot be rendered (%s): %s", t.Name(), detail)}
	}
	return b.String(), nil
}

// decodeParams decodes the request's parameters object with numbers kept as sent (UseNumber).
func decodeParams(raw string) (map[string]any, error) {
	params := map[string]any{}
	if raw == "" {
		return params, nil
	}
	d := json.NewDecoder(strings.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&params); err != nil {
		return nil, err
	}
	if params == nil { // "parameters": null
		params = map[string]any{}
	}
	return params, nil
}

// appendRenderedMessages renders configured messages as OpenAI message objects, each preceded by a
// comma unless it is the array's first element (first tells).
func appendRenderedMessages(dst []byte, msgs []tmplMessage, params map[string]any, first bool) ([]byte, error) {
	for _, m := range msgs {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, `{"role":`...)
		dst = adaptor.AppendJSONString(dst, m.role)
		dst = append(dst, `,"content":`...)
		if m.content != nil {
			s, err := render(m.content, params)
			if err != nil {
				return nil, err
			}
			dst = adaptor.AppendJSONString(dst, s)
			dst = append(dst, '}')
			continue
		}
		dst = append(dst, '[')
		n := 0
		for _, p := range m.parts {
			if p.typ == "text" {
				if n > 0 {
					dst = append(dst, ',')
				}
				n++
				s, err := render(p.text, params)
				if err != nil {
					return nil, err
				}
				dst = append(dst, `{"type":"text","text":`...)
				dst = adaptor.AppendJSONString(dst, s)
				dst = append(dst, '}')
				continue
			}
			u, err := render(p.url, params)
			if err != nil {
				return nil, err
			}
			if u == "" { // an image slot the parameters left empty is left out
				continue
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = append(dst, `{"type":"image_url","image_url":{"url":`...)
			dst = adaptor.AppendJSONString(dst, u)
			if p.detail != "" {
				dst = append(dst, `,"detail":`...)
				dst = adaptor.AppendJSONString(dst, p.detail)
			}
			dst = append(dst, "}}"...)
		}
		dst = append(dst, "]}"...)
	}
	return dst, nil
}

// checkModel requires a strategy's or instruction's model, served by an enabled channel.
func checkModel(where, model string, served map[string]bool) error {
	if model == "" {
		return fmt.Errorf("%s.model is required", where)
	}
	if !served[model] {
		return fmt.Errorf("%s: config_invalid: model %q is served by no enabled channel", where, model)
	}
	return nil
}
