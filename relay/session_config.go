package relay

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// SessionsConfig configures the session surface (seed session.api) and the logging of conversations
// into users' sessions.
type SessionsConfig struct {
	// Log (default true) logs OpenAI- and workflow-surface conversations of keys that belong to a user
	// into that user's sessions: calls with X-Relay-Session, a FastGPT chat_id or `user` are appended
	// to that session; others become one-turn sessions.
	Log *bool `mapstructure:"log"`
	// ContextTurns is how many earlier finished turns a conversation sends upstream (default 10).
	ContextTurns int `mapstructure:"context_turns"`
	// TurnTimeout bounds one conversation turn; past it the record is finished_timeout (default 5m).
	TurnTimeout time.Duration `mapstructure:"turn_timeout"`
	// Models are the models GET /v1/chat/models lists and conversations name by modelId. Code is the
	// model name routed to a channel. Empty: every routed model, with ids 1.. in name order.
	Models []SessionModel `mapstructure:"models"`
	// WSOrigins are the browser origins (host patterns such as "chat.example.com" or "*.example.com")
	// allowed to open the conversation WebSocket besides the relay's own; clients that send no Origin
	// (non-browsers) are always allowed.
	WSOrigins []string `mapstructure:"ws_origins"`
}

// SessionModel is one entry of GET /v1/chat/models.
type SessionModel struct {
	ID   int64  `mapstructure:"id" json:"id"`
	Name string `mapstructure:"name" json:"name"`
	Code string `mapstructure:"code" json:"code"`
	Logo string `mapstructure:"logo" json:"logo"`
}

// LogEnabled reports whether conversations are logged into sessions.
func (c SessionsConfig) LogEnabled() bool { return c.Log == nil || *c.Log }

func (c SessionsConfig) contextTurns() int {
	if c.ContextTurns > 0 {
		return min(c.ContextTurns, 100)
	}
	if c.ContextTurns < 0 {
		return 0
	}
	return 10
}

func (c SessionsConfig) turnTimeout() time.Duration {
	if c.TurnTimeout > 0 {
		return c.TurnTimeout
	}
	return 5 * time.Minute
}

// sessionModels is the model list in force: the configured one, or every routed model.
func (s *Server) sessionModels() []SessionModel {
	if len(s.cfg.Sessions.Models) > 0 {
		return s.cfg.Sessions.Models
	}
	names := slices.Sorted(slices.Values(s.core.router.Load().Models())) // a copy: the router's slice is shared
	out := make([]SessionModel, len(names))
	for i, n := range names {
		out[i] = SessionModel{ID: int64(i + 1), Name: n, Code: n}
	}
	return out
}

// sessionModel finds a model by id (ok false when unknown).
func (s *Server) sessionModel(id int64) (SessionModel, bool) {
	for _, m := range s.sessionModels() {
		if m.ID == id {
			return m, true
		}
	}
	return SessionModel{}, false
}

// sessionModelByCode finds a model by its routed name (ok false when unlisted).
func (s *Server) sessionModelByCode(code string) (SessionModel, bool) {
	for _, m := range s.sessionModels() {
		if m.Code == code {
			return m, true
		}
	}
	return SessionModel{}, false
}

// validate checks the session models: positive unique ids, a code each.
func (c SessionsConfig) validate() error {
	ids := map[int64]bool{}
	for i, m := range c.Models {
		where := fmt.Sprintf("config: sessions.models[%d]", i)
		if m.ID <= 0 {
			return fmt.Errorf("%s.id must be a positive integer", where)
		}
		if ids[m.ID] {
			return fmt.Errorf("%s.id %d is used twice", where, m.ID)
		}
		ids[m.ID] = true
		if m.Code == "" {
			return fmt.Errorf("%s.code (the routed model name) is required", where)
		}
	}
	if c.ContextTurns > 100 || c.TurnTimeout < 0 {
		return errors.New("config: sessions.context_turns must be at most 100 and sessions.turn_timeout not negative")
	}
	return nil
}
