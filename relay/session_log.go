package relay

import (
	"strings"

	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/store"
)

// Logging conversations of the OpenAI and workflow surfaces into the sessions of the relay key's user.
// Nothing here touches the database: the turn is handed to the store's async writer, which creates the
// session on first use and appends the record (store.Sessions.LogConversation).

// HeaderSession names the session an OpenAI-surface call is appended to.
const HeaderSession = "X-Relay-Session"

// maxExtID bounds an external session key.
const maxExtID = 200

// sessionLogging reports whether calls made with key are logged into its user's sessions.
func (s *Server) sessionLogging(key *store.Key) bool {
	return key.UserID != 0 && s.cfg.Sessions.LogEnabled()
}

// conversationKey is the external key of the session a call belongs to: the X-Relay-Session header
// (session), then the FastGPT chat_id, then the OpenAI `user`; a call with none is a one-turn session
// of its own.
func conversationKey(session string, req *adaptor.Request, requestID string) string {
	k := "req:" + requestID
	switch {
	case strings.TrimSpace(session) != "":
		k = "session:" + strings.TrimSpace(session)
	case req.ChatID != "":
		k = "chat:" + req.ChatID
	case req.User != "":
		k = "user:" + req.User
	}
	if len(k) > maxExtID {
		k = k[:maxExtID]
	}
	return k
}

// lastUserText is the text of the request's last user message.
func lastUserText(body []byte) string {
	var last gjson.Result
	gjson.GetBytes(body, "messages").ForEach(func(_, m gjson.Result) bool {
		if m.Get("role").Str == "user" {
			last = m.Get("content")
		}
		return true
	})
	return adaptor.MessageText(last)
}

// logConversation queues the call's turn for its key's user. session is the call's X-Relay-Session
// header ("" for none); answer is the streamed answer text, or for a non-stream call the completion body
// (its first choice's content is taken).
func (s *Server) logConversation(session string, key *store.Key, call *Call, answer []byte, stream bool) {
	req := call.Req
	text := string(answer)
	if !stream {
		text = adaptor.MessageText(gjson.GetBytes(answer, "choices.0.message.content"))
	}
	rec := store.Record{Model: req.Model, ContentType: "text", ProblemText: lastUserText(req.Body), AnswerText: text,
		AuthorID: key.UserID, CreatedAt: call.Start,
		Usage: store.Usage{PromptTokens: call.Usage.PromptTokens, CompletionTokens: call.Usage.CompletionTokens,
			TotalTokens: call.Usage.TotalTokens, Estimated: call.Usage.Estimated}}
	if m, ok := s.sessionModelByCode(req.Model); ok {
		rec.ModelID = m.ID
	}
	switch e := call.Err; {
	case e == nil:
		rec.Status = store.StatusSuccess
	case e.Type == adaptor.TypeTimeout || e.Status == 504:
		rec.Status, rec.Error = store.StatusTimeout, errStatusText(e)
	default:
		rec.Status, rec.Error = store.StatusFail, errStatusText(e)
	}
	s.store.LogConversation(store.Conversation{UserID: key.UserID, Module: store.ModuleChat, Type: "chat",
		ExtID: conversationKey(session, req, call.ID), Title: rec.ProblemText, Record: rec})
}
