package relay

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/store"
)

// bpTime is the seed's time format for history entries: RFC 3339 in UTC with up to microseconds
// ("2023-12-19T04:17:31.940758Z").
func bpTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.999999Z07:00") }

// queryInt reads an optional positive integer query parameter.
func queryInt(c *gin.Context, name string, def, max int) (int, *bpError) {
	v, ok := c.GetQuery(name)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, bpErr(400, bpInvalidParameter, name+" must be an integer from 1 to "+strconv.Itoa(max))
	}
	return n, nil
}

// bpHistory answers GET .../ai/chat/history?chat_id=&page=1&page_size=10: the chat's turns, newest
// first, each as one entry with its user and assistant messages; total_chat counts the chat's turns.
// Another user's chat is item_not_found (the owner is part of every query).
func (s *Server) bpHistory(c *gin.Context) {
	chatID := c.Query("chat_id")
	if chatID == "" {
		writeBPError(c, bpErr(400, bpInvalidParameter, "chat_id is required"))
		return
	}
	page, e := queryInt(c, "page", 1, 1_000_000)
	if e != nil {
		writeBPError(c, e)
		return
	}
	size, e := queryInt(c, "page_size", 10, store.MaxPageSize)
	if e != nil {
		writeBPError(c, e)
		return
	}
	ctx := c.Request.Context()
	u := userFrom(c)
	sess, err := s.store.SessionByExtID(ctx, u.ID, store.ModuleStrategy, chatID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(chatID) < len(chatIDPrefix)) || (err == nil && chatID[:len(chatIDPrefix)] != chatIDPrefix) {
		writeBPError(c, bpErr(404, bpItemNotFound, "chat "+chatID+" not found"))
		return
	}
	if err != nil {
		s.log.Error("chat lookup failed", "err", err)
		writeBPError(c, bpErr(503, bpUnavailable, "cannot read the chat right now"))
		return
	}
	recs, total, err := s.store.ListRecords(ctx, u.ID, sess.ID, page, size)
	if err != nil {
		s.log.Error("chat history read failed", "err", err)
		writeBPError(c, bpErr(503, bpUnavailable, "cannot read the chat right now"))
		return
	}
	appID := s.bpNow().appID
	userID := strconv.FormatInt(u.ID, 10)
	b := make([]byte, 0, 256+len(recs)*256)
	b = append(b, `{"chat_histories":[`...)
	for i, r := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"chat_id":`...)
		b = adaptor.AppendJSONString(b, chatID)
		b = append(b, `,"app_id":`...)
		b = adaptor.AppendJSONString(b, appID)
		b = append(b, `,"user_id":`...)
		b = adaptor.AppendJSONString(b, userID)
		b = append(b, `,"token":`...)
		b = strconv.AppendInt(b, int64(r.Usage.TotalTokens), 10)
		b = append(b, `,"strategy":`...)
		b = adaptor.AppendJSONString(b, sess.Strategy)
		b = append(b, `,"role":"","messages":[{"role":"user","content":`...)
		b = adaptor.AppendJSONString(b, r.ProblemText)
		b = append(b, `},{"role":"assistant","content":`...)
		b = adaptor.AppendJSONString(b, r.AnswerText)
		b = append(b, `}],"sys_created_time":`...)
		b = adaptor.AppendJSONString(b, bpTime(r.CreatedAt))
		b = append(b, `,"sys_updated_time":`...)
		b = adaptor.AppendJSONString(b, bpTime(r.UpdatedAt))
		b = append(b, '}')
	}
	b = append(b, `],"total_chat":`...)
	b = strconv.AppendInt(b, total, 10)
	b = append(b, '}')
	c.Data(http.StatusOK, "application/json", b)
}

// bpInstruction answers POST .../ai/chat/instruction {name, parameters}: the instruction's messages
// rendered with parameters, one upstream call, {"instruction":{"content"},"usage"}. An instruction with
// a cost charges it like a chat (refunded when the upstream fails).
func (s *Server) bpInstruction(c *gin.Context) {
	body, aerr := s.readBody(c)
	if aerr != nil {
		writeBPError(c, fromAdaptor(aerr))
		return
	}
	root, e := parseBPObject(body)
	if e != nil {
		writeBPError(c, e)
		return
	}
	name := root.Get("name")
	if name.Type != gjson.String || name.Str == "" {
		writeBPError(c, bpErr(400, bpInvalidParameter, "name is required (a non-empty string)"))
		return
	}
	raw, e := parseParams(root)
	if e != nil {
		writeBPError(c, e)
		return
	}
	t := s.bpNow()
	in := t.instructions[name.Str]
	if in == nil {
		writeBPError(c, bpErr(404, bpItemNotFound, "instruction "+name.Str+" is not configured"))
		return
	}
	if !s.core.router.Load().Serves(in.model) {
		writeBPError(c, bpErr(400, bpConfigInvalid, "instruction "+in.name+" uses model "+in.model+", which no enabled channel serves"))
		return
	}
	params, err := decodeParams(raw)
	if err != nil {
		writeBPError(c, bpErr(400, bpInvalidParameter, "parameters: "+err.Error()))
		return
	}
	b := append(make([]byte, 0, 512), `{"model":`...)
	b = adaptor.AppendJSONString(b, in.model)
	b = append(b, `,"messages":[`...)
	if b, err = appendRenderedMessages(b, in.messages, params, true); err != nil {
		writeBPError(c, bpErr(400, bpInvalidParameter, "instruction "+in.name+": "+err.Error()))
		return
	}
	b = append(b, ']')
	b = appendOptions(b, in.temperature, in.maxTokens, in.responseFormat)
	b = append(b, '}')
	req, aerr := ParseChatRequest(b)
	if aerr != nil {
		writeBPError(c, bpErr(400, bpInvalidParameter, "instruction "+in.name+": "+aerr.Message))
		return
	}
	u := userFrom(c)
	if in.cost > 0 {
		if _, e := s.charge(c.Request.Context(), t, u.ID, in.group, in.cost); e != nil {
			writeBPError(c, e)
			return
		}
	}
	call := NewCall(c.GetString(ctxRequestID), keyID(c), bpSurface, req)
	defer s.core.Finish(call)
	comp, aerr := s.core.Complete(c.Request.Context(), call)
	if aerr != nil {
		s.refund(u.ID, in.group, in.cost)
		call.Err, call.Status = aerr, aerr.Status
		writeBPError(c, fromAdaptor(aerr))
		return
	}
	out := finishCompletion(comp, req)
	call.Usage, call.Status = comp.Usage, http.StatusOK
	content := gjson.GetBytes(out, "choices.0.message.content").Str
	resp := append(make([]byte, 0, 128+len(content)), `{"instruction":{"content":`...)
	resp = adaptor.AppendJSONString(resp, content)
	resp = append(resp, `},"usage":`...)
	resp = adaptor.AppendUsage(resp, comp.Usage)
	resp = append(resp, '}')
	c.Data(http.StatusOK, "application/json", resp)
}
