package relay

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/tidwall/gjson"

	"relay/adaptor"
	"relay/store"
)

// The strategy surface (seed BytePower doc; contract ../shared/wire/bytepower.md):
//
//	POST /bp/ai/chat               one answer of a configured strategy
//	POST /bp/ai/chat/stream        the same, streamed as `event: ai_chat_msg` SSE frames
//	GET  /bp/ai/chat/history       the turns of one of the user's chats, paged
//	POST /bp/ai/chat/instruction   a configured one-shot instruction
//
// End users call /bp/ai/... with their JWT (jwt.go). A trusted backend calls the same routes under
// /bp/server/user/{user_id}/ai/... with a relay key that has admin rights (`relay keys create --admin`),
// acting for the user named in the path: a number is a user id (it must exist), anything else a user
// name (created on first use).
//
// A strategy chat is a session of module 3 (store.ModuleStrategy) whose ext_id is the chat_id; every
// successful answer is one record, charged once against the user's ai_credit asset. Failures before
// the upstream call take nothing; an upstream failure gives the credits back and records nothing.

// bpSurface is the Call.Surface of strategy-surface requests.
const bpSurface = "bp"

// Error types of the strategy surface's {"error":{"error_type","message"}} bodies.
const (
	bpInvalidParameter   = "invalid_parameter"
	bpItemNotFound       = "item_not_found"
	bpConfigInvalid      = "config_invalid"
	bpInsufficientCredit = "insufficient_credit" // UNCONFIRMED name; HTTP 402
	bpUnauthorized       = "unauthorized"
	bpForbidden          = "forbidden"
	bpUpstreamError      = "upstream_error"
	bpUnavailable        = "service_unavailable"
	bpInternal           = "internal_error"
)

// chatIDPrefix starts every chat id the relay mints.
const chatIDPrefix = "Ct"

// bpNow is the strategy configuration in force.
func (s *Server) bpNow() *bpTables { return s.bp.Load() }

// bpRoutes registers the strategy surface on e.
func (s *Server) bpRoutes(e *gin.Engine) {
	user := e.Group("/bp/ai", s.track(), s.bpRecovery(), s.jwtAuth(writeBPAuthError))
	server := e.Group("/bp/server/user/:user_id/ai", s.track(), s.bpRecovery(), s.bpServerAuth())
	for _, g := range [...]*gin.RouterGroup{user, server} {
		g.POST("/chat", s.bpChat(false))
		g.POST("/chat/stream", s.bpChat(true))
		g.GET("/chat/history", s.bpHistory)
		g.POST("/chat/instruction", s.bpInstruction)
	}
}

// bpRecovery answers a panic in the surface's own error shape (500 internal_error), logged with its
// stack like the server-wide recovery.
func (s *Server) bpRecovery() gin.HandlerFunc {
	return s.recoveryWith(func(c *gin.Context) { writeBPError(c, bpErr(500, bpInternal, "internal error")) })
}

// bpError is a strategy-surface error before any byte of the answer went out.
type bpError struct {
	status     int
	typ, msg   string
	retryAfter string
}

func bpErr(status int, typ, msg string) *bpError { return &bpError{status: status, typ: typ, msg: msg} }

func appendBPError(dst []byte, typ, msg string) []byte {
	dst = append(dst, `{"error":{"error_type":`...)
	dst = adaptor.AppendJSONString(dst, typ)
	dst = append(dst, `,"message":`...)
	dst = adaptor.AppendJSONString(dst, msg)
	return append(dst, "}}"...)
}

func writeBPError(c *gin.Context, e *bpError) {
	if e.status == 499 {
		c.Status(499)
		return
	}
	if e.retryAfter != "" {
		c.Header("Retry-After", e.retryAfter)
	}
	c.Data(e.status, "application/json", appendBPError(nil, e.typ, e.msg))
}

// writeBPAuthError renders the JWT middleware's failures in the surface's shape.
func writeBPAuthError(c *gin.Context, status int, _ string, msg string) {
	typ := bpUnauthorized
	switch status {
	case http.StatusForbidden:
		typ = bpForbidden
	case http.StatusServiceUnavailable:
		typ = bpUnavailable
	}
	writeBPError(c, bpErr(status, typ, msg))
}

// fromAdaptor maps a failure of the core (or of request parsing) to the surface's errors: the
// client's own mistakes stay 4xx, an upstream failure is 5xx.
func fromAdaptor(e *adaptor.Error) *bpError {
	switch {
	case e.Status == 499:
		return bpErr(499, bpInvalidParameter, e.Message)
	case e.Code == "model_not_found":
		return bpErr(http.StatusBadRequest, bpConfigInvalid, "the configured model is served by no channel: "+e.Message)
	case e.Code == "request_too_large":
		return bpErr(http.StatusRequestEntityTooLarge, bpInvalidParameter, e.Message)
	case e.Status == 400 || e.Status == 413 || e.Status == 422:
		// The upstream refused what the client sent (an unreachable image, say).
		return bpErr(http.StatusBadRequest, bpInvalidParameter, e.Message)
	case e.Status >= 500:
		return &bpError{status: e.Status, typ: bpUpstreamError, msg: e.Message, retryAfter: e.RetryAfter}
	}
	return &bpError{status: http.StatusBadGateway, typ: bpUpstreamError, msg: e.Message, retryAfter: e.RetryAfter}
}

// bpServerAuth authenticates /bp/server/user/{user_id}/...: a relay key with admin rights, acting for
// the user the path names.
func (s *Server) bpServerAuth() gin.HandlerFunc {
	return func(c *gin.Context) {
		secret, ok := bearer(c.GetHeader("Authorization"))
		if !ok {
			writeBPError(c, bpErr(401, bpUnauthorized, "server routes need a relay key with admin rights as Authorization: Bearer <key>"))
			c.Abort()
			return
		}
		key, err := s.keys.lookup(c.Request.Context(), secret)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && !key.Active()):
			writeBPError(c, bpErr(401, bpUnauthorized, "invalid or revoked relay key"))
			c.Abort()
			return
		case err != nil:
			s.logKeyLookup(c, err)
			writeBPError(c, bpErr(503, bpUnavailable, "cannot check the relay key right now"))
			c.Abort()
			return
		case !key.Admin:
			writeBPError(c, bpErr(403, bpForbidden, "server routes need a relay key with admin rights (relay keys create --admin)"))
			c.Abort()
			return
		}
		u, e := s.bpServerUser(c.Request.Context(), c.Param("user_id"))
		if e != nil {
			writeBPError(c, e)
			c.Abort()
			return
		}
		c.Set(ctxKey, key)
		c.Set(ctxUser, u)
		c.Next()
	}
}

// bpServerUser resolves the path's user: a number is an existing user's id; a name is looked up and
// created on first use (the backend is trusted to name its own users).
func (s *Server) bpServerUser(ctx context.Context, ref string) (store.User, *bpError) {
	ref = strings.TrimSpace(ref)
	if ref == "" || len(ref) > 128 || !utf8.ValidString(ref) {
		return store.User{}, bpErr(400, bpInvalidParameter, "user_id must be a user id or a user name of at most 128 bytes")
	}
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		u, err := s.store.UserByID(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return u, bpErr(404, bpItemNotFound, "user "+ref+" does not exist")
		}
		if err != nil {
			s.log.Error("user lookup failed", "err", err)
			return u, bpErr(503, bpUnavailable, "cannot read the user right now")
		}
		return u, nil
	}
	for attempt := 0; attempt < 2; attempt++ {
		u, err := s.store.UserByName(ctx, ref)
		if err == nil {
			return u, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("user lookup failed", "err", err)
			return u, bpErr(503, bpUnavailable, "cannot read the user right now")
		}
		u, err = s.store.CreateUser(ctx, store.User{Name: ref, Role: store.RoleUser})
		if err == nil {
			return u, nil
		}
		if !errors.Is(err, store.ErrExists) { // ErrExists: created meanwhile; read it again
			s.log.Error("user create failed", "err", err)
			return u, bpErr(503, bpUnavailable, "cannot create the user right now")
		}
	}
	return store.User{}, bpErr(503, bpUnavailable, "cannot resolve the user right now")
}

// keyID is the relay key of a server call (0 for JWT users), for the request log.
func keyID(c *gin.Context) int64 {
	if k, ok := c.Get(ctxKey); ok {
		if key, ok := k.(*store.Key); ok {
			return key.ID
		}
	}
	return 0
}

// --- request parsing ---

// bpChatRequest is a parsed POST /bp/ai/chat body.
type bpChatRequest struct {
	strategy       string
	responseFormat string // "", "text", "json_object"; "" leaves the strategy's
	params         string // raw JSON object ("" none)
	chatID         string
	messages       gjson.Result
}

// parseResponseFormat reads response_format as the seed's string ("json_object" or "") or as OpenAI's
// object {"type": ...}.
func parseResponseFormat(f gjson.Result) (string, *bpError) {
	if !f.Exists() || f.Type == gjson.Null {
		return "", nil
	}
	v := f
	if f.IsObject() {
		v = f.Get("type")
	}
	if v.Type == gjson.String {
		switch v.Str {
		case "", "text", "json_object":
			return v.Str, nil
		}
	}
	return "", bpErr(400, bpInvalidParameter, `response_format must be "json_object", "text" or empty (or {"type": one of those})`)
}

func parseParams(root gjson.Result) (string, *bpError) {
	f := root.Get("parameters")
	if !f.Exists() || f.Type == gjson.Null {
		return "", nil
	}
	if !f.IsObject() {
		return "", bpErr(400, bpInvalidParameter, "parameters must be an object")
	}
	return f.Raw, nil
}

func parseBPObject(body []byte) (gjson.Result, *bpError) {
	if !gjson.ValidBytes(body) {
		return gjson.Result{}, bpErr(400, bpInvalidParameter, "request body is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return root, bpErr(400, bpInvalidParameter, "request body must be a JSON object")
	}
	return root, nil
}

func parseBPChat(body []byte) (*bpChatRequest, *bpError) {
	root, e := parseBPObject(body)
	if e != nil {
		return nil, e
	}
	r := &bpChatRequest{}
	f := root.Get("strategy")
	if f.Type != gjson.String || strings.TrimSpace(f.Str) == "" {
		return nil, bpErr(400, bpInvalidParameter, "strategy is required (a non-empty string)")
	}
	r.strategy = f.Str
	if r.responseFormat, e = parseResponseFormat(root.Get("response_format")); e != nil {
		return nil, e
	}
	if r.params, e = parseParams(root); e != nil {
		return nil, e
	}
	if f = root.Get("chat_id"); f.Exists() && f.Type != gjson.Null {
		if f.Type != gjson.String {
			return nil, bpErr(400, bpInvalidParameter, "chat_id must be a string")
		}
		r.chatID = f.Str
	}
	r.messages = root.Get("messages")
	if ae := checkMessages(r.messages); ae != nil {
		return nil, bpErr(400, bpInvalidParameter, ae.Message)
	}
	var bad *bpError
	i := 0
	r.messages.ForEach(func(_, m gjson.Result) bool {
		if role := m.Get("role").Str; role != "user" && role != "assistant" {
			bad = bpErr(400, bpInvalidParameter, "messages["+strconv.Itoa(i)+"].role must be user or assistant: the strategy sets the system prompt")
			return false
		}
		i++
		return true
	})
	if bad != nil {
		return nil, bad
	}
	return r, nil
}

// --- upstream request ---

// appendOptions appends the sampling options and response format of a strategy or instruction.
func appendOptions(b []byte, temperature *float64, maxTokens int, responseFormat string) []byte {
	if temperature != nil {
		b = append(b, `,"temperature":`...)
		b = strconv.AppendFloat(b, *temperature, 'g', -1, 64)
	}
	if maxTokens > 0 {
		b = append(b, `,"max_tokens":`...)
		b = strconv.AppendInt(b, int64(maxTokens), 10)
	}
	if responseFormat == "json_object" {
		b = append(b, `,"response_format":{"type":"json_object"}`...)
	}
	return b
}

// buildStrategyBody renders the upstream OpenAI body: the strategy's system prompt and messages, the
// chat's past turns (oldest first), then the client's messages.
func buildStrategyBody(st *strategy, params map[string]any, past []store.Record, msgs gjson.Result, rf string, stream bool) ([]byte, error) {
	b := make([]byte, 0, 512+len(msgs.Raw))
	b = append(b, `{"model":`...)
	b = adaptor.AppendJSONString(b, st.model)
	b = append(b, `,"messages":[`...)
	first := true
	if st.system != nil {
		sys, err := render(st.system, params)
		if err != nil {
			return nil, err
		}
		b = append(b, `{"role":"system","content":`...)
		b = adaptor.AppendJSONString(b, sys)
		b = append(b, '}')
		first = false
	}
	b, err := appendRenderedMessages(b, st.messages, params, first)
	if err != nil {
		return nil, err
	}
	first = first && len(st.messages) == 0
	for _, r := range past {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"role":"user","content":`...)
		b = adaptor.AppendJSONString(b, r.ProblemText)
		b = append(b, `},{"role":"assistant","content":`...)
		b = adaptor.AppendJSONString(b, r.AnswerText)
		b = append(b, '}')
	}
	msgs.ForEach(func(_, m gjson.Result) bool {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, m.Raw...)
		return true
	})
	b = append(b, ']')
	if rf == "" {
		rf = st.responseFormat
	}
	b = appendOptions(b, st.temperature, st.maxTokens, rf)
	if stream {
		b = append(b, `,"stream":true,"stream_options":{"include_usage":true}`...)
	}
	return append(b, '}'), nil
}

// lastUserTurn is what a record keeps of the client's messages: the text of the last user message,
// its content type, and its first image URL (data: URLs are not kept).
func lastUserTurn(msgs gjson.Result) (text, contentType, fileURL string) {
	var last gjson.Result
	msgs.ForEach(func(_, m gjson.Result) bool {
		if m.Get("role").Str == "user" {
			last = m
		}
		return true
	})
	content := last.Get("content")
	text, contentType = adaptor.MessageText(content), "text"
	content.ForEach(func(_, p gjson.Result) bool {
		if p.Get("type").Str == "image_url" {
			contentType = "image"
			if u := p.Get("image_url.url").Str; fileURL == "" && !strings.HasPrefix(u, "data:") && len(u) <= 2048 {
				fileURL = u
			}
		}
		return true
	})
	return text, contentType, fileURL
}

// --- credits ---

// charge takes the cost from the user's asset before the upstream is called; with too few credits it
// answers 402 insufficient_credit and nothing goes upstream.
func (s *Server) charge(ctx context.Context, t *bpTables, userID int64, group string, cost int64) (store.Asset, *bpError) {
	a, err := s.store.Spend(ctx, userID, group, cost, t.groups[group], time.Now())
	if errors.Is(err, store.ErrInsufficientCredits) {
		msg := "not enough " + store.AssetName + ": " + strconv.FormatInt(a.Quantity, 10) + " left, this call costs " + strconv.FormatInt(cost, 10)
		if next := a.NextRecovery(); !next.IsZero() {
			msg += "; credits recover at " + next.UTC().Format(time.RFC3339)
		}
		return a, bpErr(http.StatusPaymentRequired, bpInsufficientCredit, msg)
	}
	if err != nil {
		s.log.Error("credit spend failed", "err", err)
		return a, bpErr(503, bpUnavailable, "cannot check credits right now")
	}
	return a, nil
}

// refund gives a failed call's credits back (on a context of its own: the request's may be gone).
func (s *Server) refund(userID int64, group string, cost int64) {
	if cost <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.store.Refund(ctx, userID, group, cost); err != nil {
		s.log.Error("credit refund failed", "user_id", userID, "group", group, "cost", cost, "err", err)
	}
}

// appendAsset appends the asset list of an answer (seed field order).
func appendAsset(b []byte, a store.Asset) []byte {
	b = append(b, `[{"last_recovery_time":`...)
	b = adaptor.AppendJSONString(b, a.LastRecovery.UTC().Format(time.RFC3339))
	b = append(b, `,"name":"`+store.AssetName+`","quantity":`...)
	b = strconv.AppendInt(b, a.Quantity, 10)
	b = append(b, `,"recoverable":`...)
	b = strconv.AppendBool(b, a.Recoverable)
	b = append(b, `,"recovery_period":`...)
	b = strconv.AppendInt(b, int64(a.RecoveryDays), 10)
	b = append(b, `,"recovery_quantity":`...)
	b = strconv.AppendInt(b, a.RecoveryQuantity, 10)
	b = append(b, `,"type":"consumable","valid_seconds":`...)
	b = strconv.AppendInt(b, a.ValidSeconds, 10)
	return append(b, "}]"...)
}

// surplus is how many more answers the credits pay for.
func surplus(a store.Asset, cost int64) int64 {
	if cost <= 0 {
		cost = 1
	}
	return max(a.Quantity, 0) / cost
}

// --- chat ---

// bpTurn is one chat request on its way: what the handler resolved before calling the upstream.
type bpTurn struct {
	user    store.User
	st      *strategy
	sess    *store.Session // the chat continued; nil for a new chat
	chatID  string         // "" when the strategy keeps no history
	problem string
	ctype   string
	fileURL string
	asset   store.Asset // after the charge
}

func (s *Server) bpChat(stream bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		turn, call, e := s.prepareChat(c, stream)
		if e != nil {
			writeBPError(c, e)
			return
		}
		defer s.core.Finish(call)
		if stream {
			s.streamChat(c, turn, call)
			return
		}
		s.completeChat(c, turn, call)
	}
}

// prepareChat validates the request, renders the prompt, loads the chat and charges the credits. On
// success the caller owns the charge: it must record the answer or refund.
func (s *Server) prepareChat(c *gin.Context, stream bool) (*bpTurn, *Call, *bpError) {
	ctx := c.Request.Context()
	body, aerr := s.readBody(c)
	if aerr != nil {
		return nil, nil, fromAdaptor(aerr)
	}
	r, e := parseBPChat(body)
	if e != nil {
		return nil, nil, e
	}
	t := s.bpNow()
	st := t.strategies[r.strategy]
	if st == nil {
		return nil, nil, bpErr(404, bpItemNotFound, "strategy "+r.strategy+" is not configured")
	}
	if !s.core.router.Load().Serves(st.model) {
		return nil, nil, bpErr(400, bpConfigInvalid, "strategy "+st.name+" uses model "+st.model+", which no enabled channel serves")
	}
	params, err := decodeParams(r.params)
	if err != nil {
		return nil, nil, bpErr(400, bpInvalidParameter, "parameters: "+err.Error())
	}
	turn := &bpTurn{user: userFrom(c), st: st}
	var past []store.Record
	if r.chatID != "" {
		if !st.history {
			return nil, nil, bpErr(400, bpInvalidParameter, "strategy "+st.name+" keeps no chat history: send no chat_id")
		}
		sess, err := s.store.SessionByExtID(ctx, turn.user.ID, store.ModuleStrategy, r.chatID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !strings.HasPrefix(r.chatID, chatIDPrefix)) {
			return nil, nil, bpErr(404, bpItemNotFound, "chat "+r.chatID+" not found")
		}
		if err != nil {
			s.log.Error("chat lookup failed", "err", err)
			return nil, nil, bpErr(503, bpUnavailable, "cannot read the chat right now")
		}
		if sess.Strategy != st.name {
			return nil, nil, bpErr(400, bpInvalidParameter, "chat "+r.chatID+" belongs to strategy "+sess.Strategy+", not "+st.name)
		}
		turn.sess, turn.chatID = &sess, r.chatID
		if st.turns > 0 {
			recs, _, err := s.store.ListRecords(ctx, turn.user.ID, sess.ID, 1, st.turns)
			if err != nil {
				s.log.Error("chat history read failed", "err", err)
				return nil, nil, bpErr(503, bpUnavailable, "cannot read the chat right now")
			}
			for i := len(recs) - 1; i >= 0; i-- { // newest first → oldest first
				if recs[i].Status == store.StatusSuccess {
					past = append(past, recs[i])
				}
			}
		}
	} else if st.history {
		turn.chatID = adaptor.NewID(chatIDPrefix)
	}
	upBody, err := buildStrategyBody(st, params, past, r.messages, r.responseFormat, stream)
	if err != nil {
		return nil, nil, bpErr(400, bpInvalidParameter, "strategy "+st.name+": "+err.Error())
	}
	req, aerr := ParseChatRequest(upBody)
	if aerr != nil { // the client's messages were checked; a rendered message cannot fail here
		return nil, nil, bpErr(400, bpInvalidParameter, aerr.Message)
	}
	turn.problem, turn.ctype, turn.fileURL = lastUserTurn(r.messages)
	if turn.asset, e = s.charge(ctx, t, turn.user.ID, st.group, st.cost); e != nil {
		return nil, nil, e
	}
	return turn, NewCall(c.GetString(ctxRequestID), keyID(c), bpSurface, req), nil
}

// record stores a successful answer as a record of the chat (creating the chat's session on its first
// answer) and returns current_count and current_total_count. A strategy without history files its
// answers in one session per user and strategy that is never a chat_id (current_count is then 1).
func (s *Server) record(turn *bpTurn, answer string, u adaptor.Usage) (count, total int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	uid := turn.user.ID
	sess := turn.sess
	if sess == nil {
		ext := turn.chatID
		if ext == "" {
			ext = "strategy:" + turn.st.name
		}
		got, err := s.store.SessionByExtID(ctx, uid, store.ModuleStrategy, ext)
		if errors.Is(err, store.ErrNotFound) {
			got, err = s.store.CreateSession(ctx, store.Session{UserID: uid, Module: store.ModuleStrategy, Type: "strategy_chat",
				Title: clip(turn.problem, 64), Strategy: turn.st.name, ExtID: ext})
			if err != nil { // created meanwhile by a concurrent first answer
				got, err = s.store.SessionByExtID(ctx, uid, store.ModuleStrategy, ext)
			}
		}
		if err != nil {
			s.log.Error("strategy chat: session not stored", "user_id", uid, "strategy", turn.st.name, "err", err)
			return 0, 0
		}
		sess = &got
	}
	rec := store.Record{SessionID: sess.ID, Model: turn.st.model, AuthorID: uid, ContentType: turn.ctype, ProblemText: turn.problem,
		AnswerText: answer, FileURL: turn.fileURL, Status: store.StatusSuccess,
		Usage: store.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens, Estimated: u.Estimated}}
	if _, err := s.store.AddRecord(ctx, uid, rec); err != nil {
		s.log.Error("strategy chat: record not stored", "user_id", uid, "strategy", turn.st.name, "err", err)
	}
	count = 1
	if turn.chatID != "" {
		if got, err := s.store.GetSession(ctx, uid, sess.ID); err == nil {
			count = got.TotalRecords
		}
	}
	total, err := s.store.UserTurns(ctx, uid, store.ModuleStrategy)
	if err != nil {
		s.log.Error("strategy chat: turn count failed", "err", err)
	}
	return count, total
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}

// turnFailed answers a turn whose upstream call failed before any byte went out: the credits go back
// and the client gets the surface's error.
func (s *Server) turnFailed(c *gin.Context, turn *bpTurn, call *Call, aerr *adaptor.Error) {
	s.refund(turn.user.ID, turn.st.group, turn.st.cost)
	call.Err, call.Status = aerr, aerr.Status
	writeBPError(c, fromAdaptor(aerr))
}

func (s *Server) completeChat(c *gin.Context, turn *bpTurn, call *Call) {
	comp, aerr := s.core.Complete(c.Request.Context(), call)
	if aerr != nil {
		s.turnFailed(c, turn, call, aerr)
		return
	}
	out := finishCompletion(comp, call.Req)
	call.Usage, call.Status = comp.Usage, http.StatusOK
	content := gjson.GetBytes(out, "choices.0.message.content").Str
	count, total := s.record(turn, content, comp.Usage)

	b := make([]byte, 0, 384+len(content))
	b = append(b, `{"asset":`...)
	b = appendAsset(b, turn.asset)
	b = append(b, `,"chat_id":`...)
	b = adaptor.AppendJSONString(b, turn.chatID)
	b = append(b, `,"current_count":`...)
	b = strconv.AppendInt(b, count, 10)
	b = append(b, `,"current_total_count":`...)
	b = strconv.AppendInt(b, total, 10)
	b = append(b, `,"reply":{"role":"assistant","content":`...)
	b = adaptor.AppendJSONString(b, content)
	b = append(b, `},"tokens":`...)
	b = adaptor.AppendUsage(b, comp.Usage)
	b = append(b, `,"user_surplus_count":`...)
	b = strconv.AppendInt(b, surplus(turn.asset, turn.st.cost), 10)
	b = append(b, '}')
	c.Data(http.StatusOK, "application/json", b)
}

func (s *Server) streamChat(c *gin.Context, turn *bpTurn, call *Call) {
	events, aerr := s.core.Stream(c.Request.Context(), call)
	if aerr != nil {
		s.turnFailed(c, turn, call, aerr)
		return
	}
	defer events.Close()
	sseHeaders(c.Writer)
	c.Writer.WriteHeader(http.StatusOK)
	f := newBPFramer(c.Writer, turn.chatID, s.cfg.Server.MaxAnswerBytes)
	// The answer is recorded when the upstream has finished, before the last frame goes out, so a
	// client that continues the chat at once finds it.
	f.onEnd = func(u adaptor.Usage) { s.record(turn, string(f.answer), u) }
	res := s.core.Pump(events, f, c.Writer, call.Req, call.Start)
	call.Status, call.TTFB, call.Usage, call.Err = http.StatusOK, res.TTFB, res.Usage, res.Err
	if !f.ended {
		// The upstream failed, or the client left, before the answer was complete: nothing was
		// recorded, so the charge goes back.
		s.refund(turn.user.ID, turn.st.group, turn.st.cost)
	}
}

// bpFramer writes the strategy stream: every frame `event: ai_chat_msg` with data
// {"chat_id","content","is_finish"}; content is the delta; the last frame has is_finish true and empty
// content. An error after the stream started is `event: error` with the surface's error body
// (UNCONFIRMED), and no is_finish frame follows.
type bpFramer struct {
	w      io.Writer
	prefix []byte // `event: ai_chat_msg\ndata: {"chat_id":"...","content":`
	buf    []byte
	answer []byte
	max    int
	onEnd  func(adaptor.Usage)
	ended  bool
}

func newBPFramer(w io.Writer, chatID string, maxAnswer int) *bpFramer {
	p := append(make([]byte, 0, 64+len(chatID)), "event: ai_chat_msg\ndata: {\"chat_id\":"...)
	p = adaptor.AppendJSONString(p, chatID)
	p = append(p, `,"content":`...)
	return &bpFramer{w: w, prefix: p, buf: make([]byte, 0, 256), max: maxAnswer}
}

func (f *bpFramer) frame(content string, finish bool) error {
	b := append(f.buf[:0], f.prefix...)
	b = adaptor.AppendJSONString(b, content)
	if finish {
		b = append(b, `,"is_finish":true}`+"\n\n"...)
	} else {
		b = append(b, `,"is_finish":false}`+"\n\n"...)
	}
	f.buf = b
	_, err := f.w.Write(b)
	return err
}

// Chunk writes one content delta; chunks without content (the role, the finish reason) write nothing.
func (f *bpFramer) Chunk(_ []byte, content string) error {
	if content == "" {
		return nil
	}
	if len(f.answer)+len(content) <= f.max {
		f.answer = append(f.answer, content...)
	}
	return f.frame(content, false)
}

// Named events have no place in this surface.
func (f *bpFramer) Named(string, []byte) error { return nil }

func (f *bpFramer) End(u adaptor.Usage, _ string) error {
	f.ended = true
	if f.onEnd != nil {
		f.onEnd(u)
	}
	return f.frame("", true)
}

func (f *bpFramer) Fail(e *adaptor.Error) error {
	be := fromAdaptor(e)
	b := append(f.buf[:0], "event: error\ndata: "...)
	b = appendBPError(b, be.typ, be.msg)
	b = append(b, "\n\n"...)
	f.buf = b
	_, err := f.w.Write(b)
	return err
}
