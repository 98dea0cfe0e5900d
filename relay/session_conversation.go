package relay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"relay/adaptor"
	"relay/store"
)

// Conversations of the session surface: POST /v1/chat/session/conversation (JSON, or SSE with Accept:
// text/event-stream) and GET /v1/chat/session/conversation upgraded to a WebSocket. A turn stores a
// processing record, runs through the core with the session's earlier finished turns as context, and
// stores the outcome: finished_success, finished_fail (upstream error, client gone, relay stopping: the
// partial answer is kept) or finished_timeout (sessions.turn_timeout).
//
// Frames are the seed's ChatSessionConversationResponse: while streaming {"parts":[new text],
// "finished":false}; at the end {"record":{...},"parts":[whole answer],"finished":true}.

type turnRequest struct {
	SessionID   int64  `json:"sessionId"`
	ModelID     int64  `json:"modelId"`
	ContentType string `json:"contentType"`
	Text        string `json:"text"`
	FileURL     string `json:"fileUrl"`
}

type turnResponse struct {
	Record   *apiRecord `json:"record,omitempty"`
	Parts    []string   `json:"parts"`
	Finished bool       `json:"finished"`
}

// turn is a validated conversation turn whose processing record is stored.
type turn struct {
	user    store.User
	session store.Session
	model   SessionModel
	rec     store.Record
	req     *adaptor.Request
}

// turnError is a failure before the turn started: an HTTP status and a message for the client.
type turnError struct {
	status int
	msg    string
}

// maxTurnText bounds a question.
const maxTurnText = 100_000

// prepareTurn validates in, builds the upstream request from the session's history and stores the
// processing record.
func (s *Server) prepareTurn(ctx context.Context, u store.User, in turnRequest) (*turn, *turnError) {
	in.Text = strings.TrimSpace(in.Text)
	if in.ContentType == "" {
		in.ContentType = "text"
	}
	switch {
	case in.SessionID <= 0:
		return nil, &turnError{400, "sessionId is required"}
	case in.ContentType != "text" && in.ContentType != "image":
		return nil, &turnError{400, "contentType must be text or image (documents are not supported yet)"}
	case in.Text == "":
		return nil, &turnError{400, "text is required"}
	case len(in.Text) > maxTurnText:
		return nil, &turnError{400, "text is longer than " + strconv.Itoa(maxTurnText) + " bytes"}
	case in.ContentType == "image" && !imageURLOK(in.FileURL):
		return nil, &turnError{400, "an image turn needs fileUrl (http, https or data URL)"}
	}
	ss, err := s.store.GetSession(ctx, u.ID, in.SessionID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, &turnError{404, "session not found"}
		}
		s.log.Error("session surface: read session", "err", err)
		return nil, &turnError{500, "internal error"}
	}
	modelID := in.ModelID
	if modelID == 0 {
		modelID = ss.ModelID
	}
	var m SessionModel
	var ok bool
	if modelID != 0 {
		m, ok = s.sessionModel(modelID)
	} else if models := s.sessionModels(); len(models) > 0 {
		m, ok = models[0], true
	}
	if !ok {
		return nil, &turnError{400, "modelId names no configured model"}
	}
	if !s.core.router.Load().Serves(m.Code) {
		return nil, &turnError{503, "model " + m.Name + " has no upstream channel right now"}
	}
	n := s.cfg.Sessions.contextTurns()
	var history []store.Record
	if n > 0 {
		if history, _, err = s.store.ListRecords(ctx, u.ID, ss.ID, 1, n); err != nil {
			s.log.Error("session surface: read records", "err", err)
			return nil, &turnError{500, "internal error"}
		}
	}
	body := buildTurnBody(m.Code, history, in)
	req, aerr := ParseChatRequest(body)
	if aerr != nil {
		return nil, &turnError{400, aerr.Message}
	}
	rec, err := s.store.AddRecord(ctx, u.ID, store.Record{SessionID: ss.ID, ModelID: m.ID, Model: m.Code, AuthorID: u.ID,
		ContentType: in.ContentType, ProblemText: in.Text, FileURL: in.FileURL, Status: store.StatusProcessing})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) { // deleted meanwhile
			return nil, &turnError{404, "session not found"}
		}
		s.log.Error("session surface: add record", "err", err)
		return nil, &turnError{500, "internal error"}
	}
	if ss.Title == "" {
		if err := s.store.FillSession(ctx, u.ID, ss.ID, store.TitleFrom(in.Text), ""); err != nil {
			s.log.Warn("session surface: set title", "err", err)
		}
	}
	return &turn{user: u, session: ss, model: m, rec: rec, req: req}, nil
}

func imageURLOK(s string) bool {
	if strings.HasPrefix(s, "data:image/") {
		return true
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// buildTurnBody writes the OpenAI request of a turn: earlier finished turns (oldest first) as
// user/assistant pairs, then the question.
func buildTurnBody(model string, history []store.Record, in turnRequest) []byte {
	b := make([]byte, 0, 256+len(in.Text))
	b = append(b, `{"model":`...)
	b = adaptor.AppendJSONString(b, model)
	b = append(b, `,"stream":true,"stream_options":{"include_usage":true},"messages":[`...)
	for i := len(history) - 1; i >= 0; i-- {
		r := history[i]
		if r.Status != store.StatusSuccess || r.AnswerText == "" {
			continue
		}
		b = append(b, `{"role":"user","content":`...)
		b = adaptor.AppendJSONString(b, r.ProblemText)
		b = append(b, `},{"role":"assistant","content":`...)
		b = adaptor.AppendJSONString(b, r.AnswerText)
		b = append(b, `},`...)
	}
	b = append(b, `{"role":"user","content":`...)
	if in.ContentType == "image" {
		b = append(b, `[{"type":"text","text":`...)
		b = adaptor.AppendJSONString(b, in.Text)
		b = append(b, `},{"type":"image_url","image_url":{"url":`...)
		b = adaptor.AppendJSONString(b, in.FileURL)
		b = append(b, `}}]`...)
	} else {
		b = adaptor.AppendJSONString(b, in.Text)
	}
	return append(b, `}]}`...)
}

// startingWriter sends the SSE headers before the pump's own first write (a keep-alive comment).
type startingWriter struct {
	gin.ResponseWriter
	start func()
}

func (w startingWriter) Write(b []byte) (int, error) { w.start(); return w.ResponseWriter.Write(b) }
func (w startingWriter) Flush()                      { w.start(); w.ResponseWriter.Flush() }

// partsFramer hands each piece of answer text to emit; the surface frames it.
type partsFramer struct{ emit func(string) error }

func (f partsFramer) Chunk(_ []byte, content string) error {
	if content == "" {
		return nil
	}
	return f.emit(content)
}
func (partsFramer) Named(string, []byte) error      { return nil }
func (partsFramer) End(adaptor.Usage, string) error { return nil }
func (partsFramer) Fail(*adaptor.Error) error       { return nil }

// runTurn streams the turn through the core (emit gets each piece of text; an emit error means the
// client is gone; w is the response the pump may flush and write keep-alives to, io.Discard when the
// surface frames the turn itself: JSON at the end, WebSocket frames) and stores the
// outcome. It returns the final record and, when the turn failed, the
// error (nil on success). The record is stored even when ctx is cancelled.
func (s *Server) runTurn(ctx context.Context, reqID string, t *turn, w io.Writer, emit func(string) error) (store.Record, *adaptor.Error) {
	tctx, cancel := context.WithTimeout(ctx, s.cfg.Sessions.turnTimeout())
	defer cancel()
	co := s.core
	call := NewCall(reqID, 0, "session", t.req)
	var answer string
	func() {
		defer co.Finish(call)
		events, aerr := co.Stream(tctx, call)
		if aerr != nil {
			call.Err, call.Status = aerr, aerr.Status
			return
		}
		defer events.Close()
		res := co.Pump(events, partsFramer{emit: emit}, w, t.req, call.Start)
		answer = string(res.Answer)
		call.Status, call.TTFB, call.Usage, call.Err = http.StatusOK, res.TTFB, res.Usage, res.Err
	}()
	rec := t.rec
	rec.AnswerText = answer
	rec.Usage = store.Usage{PromptTokens: call.Usage.PromptTokens, CompletionTokens: call.Usage.CompletionTokens,
		TotalTokens: call.Usage.TotalTokens, Estimated: call.Usage.Estimated}
	e := call.Err
	switch {
	case e == nil:
		rec.Status = store.StatusSuccess
	case errors.Is(tctx.Err(), context.DeadlineExceeded) || e.Type == adaptor.TypeTimeout || e.Status == http.StatusGatewayTimeout:
		rec.Status = store.StatusTimeout
		rec.Error = errStatusText(e)
	default:
		rec.Status = store.StatusFail
		rec.Error = errStatusText(e)
		if ctx.Err() != nil && e.Status != 499 {
			rec.Error = "client closed or relay stopping: " + rec.Error
		}
	}
	// The outcome is stored whatever happened to the client: a context of its own, bounded.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	if err := s.store.UpdateRecord(sctx, t.user.ID, rec); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("session surface: store turn outcome", "request_id", reqID, "err", err)
	}
	if rec.Status == store.StatusSuccess && t.session.Abstract == "" {
		if err := s.store.FillSession(sctx, t.user.ID, t.session.ID, "", store.AbstractFrom(answer)); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("session surface: set abstract", "err", err)
		}
	}
	rec.UpdatedAt = time.Now()
	return rec, e
}

func (s *Server) finalFrame(t *turn, rec store.Record) turnResponse {
	author := s.toAPIUser(t.user.ID, t.user.Name)
	r := s.toAPIRecord(rec, author)
	return turnResponse{Record: &r, Parts: []string{rec.AnswerText}, Finished: true}
}

// turnErrorStatus is the HTTP status of a turn that failed before any text reached the client.
func turnErrorStatus(e *adaptor.Error, rec store.Record) int {
	if rec.Status == store.StatusTimeout {
		return http.StatusGatewayTimeout
	}
	if e.Status >= 400 && e.Status <= 599 {
		return e.Status
	}
	return http.StatusBadGateway
}

// sessionConversation answers POST /v1/chat/session/conversation: JSON {record, parts, finished}, or
// with Accept: text/event-stream an SSE stream of the same frames.
func (s *Server) sessionConversation(c *gin.Context) {
	var in turnRequest
	if !s.bindJSON(c, &in) {
		return
	}
	ctx := c.Request.Context()
	t, terr := s.prepareTurn(ctx, userFrom(c), in)
	if terr != nil {
		writeCodeMsg(c, terr.status, "", terr.msg)
		return
	}
	reqID := c.GetString(ctxRequestID)
	if !strings.Contains(c.GetHeader("Accept"), "text/event-stream") {
		rec, e := s.runTurn(ctx, reqID, t, io.Discard, func(string) error { return nil })
		if e != nil {
			writeCodeMsg(c, turnErrorStatus(e, rec), "", e.Message)
			return
		}
		c.JSON(http.StatusOK, s.finalFrame(t, rec))
		return
	}
	w := c.Writer
	started := false
	start := func() {
		if !started {
			started = true
			sseHeaders(w)
			w.WriteHeader(http.StatusOK)
		}
	}
	buf := make([]byte, 0, 256)
	frame := func(v any) error {
		start()
		b, _ := json.Marshal(v)
		buf = append(append(append(buf[:0], "data: "...), b...), "\n\n"...)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		w.Flush() // each part goes out as it comes
		return nil
	}
	rec, e := s.runTurn(ctx, reqID, t, startingWriter{w, start}, func(p string) error {
		return frame(turnResponse{Parts: []string{p}})
	})
	if e != nil && !started {
		writeCodeMsg(c, turnErrorStatus(e, rec), "", e.Message)
		return
	}
	_ = frame(s.finalFrame(t, rec))
	w.Flush()
}

// sessionConversationWS serves GET /v1/chat/session/conversation as a WebSocket. The query (sessionId,
// modelId, contentType, text) names the session and, with text, the first turn; each text frame from
// the client then starts the next turn: either a JSON object with the POST fields (sessionId is the
// socket's) or the question as plain text. Turns run one at a time. When the client closes, the turn in
// flight is cancelled upstream and its record is marked finished_fail.
func (s *Server) sessionConversationWS(c *gin.Context) {
	if !isWebSocketUpgrade(c.Request) {
		writeCodeMsg(c, http.StatusUpgradeRequired, "", "this route is a WebSocket: send Upgrade: websocket (or POST for one turn)")
		return
	}
	q := c.Request.URL.Query()
	var first turnRequest
	var err error
	if first.SessionID, err = strconv.ParseInt(q.Get("sessionId"), 10, 64); err != nil || first.SessionID <= 0 {
		writeCodeMsg(c, http.StatusBadRequest, "", "sessionId is required")
		return
	}
	if v := q.Get("modelId"); v != "" {
		if first.ModelID, err = strconv.ParseInt(v, 10, 64); err != nil {
			writeCodeMsg(c, http.StatusBadRequest, "", "modelId must be an integer")
			return
		}
	}
	first.ContentType, first.Text = q.Get("contentType"), q.Get("text")
	u := userFrom(c)
	// The session is checked before the upgrade, so a wrong id is a plain 404.
	if _, err := s.store.GetSession(c.Request.Context(), u.ID, first.SessionID); err != nil {
		s.sessionError(c, err, "session")
		return
	}
	// Same-origin browsers and non-browser clients are accepted; other origins only when listed in
	// sessions.ws_origins.
	conn, err := websocket.Accept(c.Writer, c.Request, &websocket.AcceptOptions{OriginPatterns: s.cfg.Sessions.WSOrigins})
	if err != nil {
		return // Accept answered the client
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	// One reader for the socket's life: it queues the client's text frames, and its end (the client
	// closed or went away) cancels whatever turn is running.
	msgs := make(chan string, 8)
	go func() {
		defer cancel()
		defer close(msgs)
		for {
			typ, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			if typ != websocket.MessageText {
				continue
			}
			select {
			case msgs <- string(data):
			case <-ctx.Done():
				return
			}
		}
	}()
	write := func(v any) error {
		b, _ := json.Marshal(v)
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		return conn.Write(wctx, websocket.MessageText, b)
	}
	reqID := c.GetString(ctxRequestID)
	next, run := first, strings.TrimSpace(first.Text) != "" // a socket opened without text waits for a frame
	for {
		if run {
			next.SessionID = first.SessionID
			t, terr := s.prepareTurn(ctx, u, next)
			if terr != nil {
				if ctx.Err() != nil {
					return
				}
				if write(map[string]any{"code": terr.status, "msg": terr.msg}) != nil {
					return
				}
			} else {
				rec, _ := s.runTurn(ctx, reqID+"-"+strconv.FormatInt(t.rec.ID, 10), t, io.Discard, func(p string) error {
					return write(turnResponse{Parts: []string{p}})
				})
				if ctx.Err() != nil || write(s.finalFrame(t, rec)) != nil {
					return
				}
			}
		}
		select {
		case m, ok := <-msgs:
			if !ok {
				conn.Close(websocket.StatusNormalClosure, "")
				return
			}
			next, run = wsTurn(m, first), true
		case <-ctx.Done():
			conn.Close(websocket.StatusGoingAway, "relay stopping")
			return
		}
	}
}

// wsTurn reads a client frame: a JSON object with turn fields, or plain question text. Model and
// content type default to the socket's.
func wsTurn(m string, first turnRequest) turnRequest {
	next := turnRequest{ModelID: first.ModelID, ContentType: first.ContentType}
	trimmed := strings.TrimSpace(m)
	if strings.HasPrefix(trimmed, "{") {
		var in turnRequest
		if json.Unmarshal([]byte(trimmed), &in) == nil {
			if in.ModelID != 0 {
				next.ModelID = in.ModelID
			}
			if in.ContentType != "" {
				next.ContentType = in.ContentType
			}
			next.Text, next.FileURL = in.Text, in.FileURL
			return next
		}
	}
	next.Text = m
	return next
}
