package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"relay/store"
)

// The session surface (seed session.api): users' chat sessions and their records under JWT auth, the
// model list, conversations (session_conversation.go), and admin data management. Answers are the
// seed's response objects; errors are {code, msg} with the HTTP status as code. A surface never reads
// SQL: the store filters every query by the caller's user id, so another user's ids answer 404.

// The seed's JSON shapes (names exactly as in session.api).
type (
	apiUser struct {
		ID     int64  `json:"id"`
		Name   string `json:"name"`
		Avatar string `json:"avatar"`
	}
	apiDocument struct {
		ID int64 `json:"id"`
	}
	apiSession struct {
		ID           int64         `json:"id,omitempty"`
		Title        string        `json:"title,omitempty"`
		Abstract     string        `json:"abstract,omitempty"`
		CreatedAt    int64         `json:"createdAt,omitempty"`
		Module       int           `json:"module,omitempty"`
		Type         string        `json:"type,omitempty"`
		DatasetID    int64         `json:"datasetId,omitempty"`
		DocumentIDs  []int64       `json:"documentIds,omitempty"`
		Documents    []apiDocument `json:"documents,omitempty"`
		Author       *apiUser      `json:"author,omitempty"`
		TotalRecords int64         `json:"totalRecords,omitempty"`
		Model        *SessionModel `json:"model,omitempty"`
	}
	apiRecord struct {
		ID          int64         `json:"id"`
		SessionID   int64         `json:"sessionId"`
		GroupID     int64         `json:"groupId"`
		ModelID     int64         `json:"modelId,omitempty"`
		AuthorID    int64         `json:"authorId,omitempty"`
		Author      *apiUser      `json:"author,omitempty"`
		Model       *SessionModel `json:"model,omitempty"`
		ContentType string        `json:"contentType"`
		ProblemText string        `json:"problemText"`
		AnswerText  string        `json:"answerText"`
		Status      string        `json:"status"`
		CreateAt    int64         `json:"createAt"`
	}
	sessionGetResponse struct {
		Session   apiSession    `json:"session"`
		Records   []apiRecord   `json:"records"`
		Documents []apiDocument `json:"documents"`
		Dataset   *struct {
			ID int64 `json:"id"`
		} `json:"dataset"`
	}
	sessionBody struct {
		Session *apiSession `json:"session"`
	}
	sessionListResponse struct {
		List  []apiSession `json:"list"`
		Total int64        `json:"total"`
	}
	recordListResponse struct {
		List  []apiRecord `json:"list"`
		Total int64       `json:"total"`
	}
	searchRequest struct {
		Page   int    `json:"page"`
		Size   int    `json:"size"`
		Title  string `json:"title"`
		Module int    `json:"module"`
	}
	dataSearchRequest struct {
		Page      int    `json:"page"`
		Size      int    `json:"size"`
		Title     string `json:"title"`
		UserName  string `json:"userName"`
		BeginTime int64  `json:"beginTime"`
		EndTime   int64  `json:"endTime"`
	}
	renameRequest struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	recordsRequest struct {
		Page      int   `json:"page"`
		Size      int   `json:"size"`
		SessionID int64 `json:"sessionId"`
	}
	filesRequest struct {
		ID          int64   `json:"id"`
		DocumentIDs []int64 `json:"documentIds"`
	}
)

// sessionRecordsInGet is how many records (newest first) GET /v1/chat/session/:id carries; the rest
// are paged through /v1/chat/session/records.
const sessionRecordsInGet = store.MaxPageSize

// sessionTypes are the seed's session types.
var sessionTypes = map[string]bool{"chat": true, "spark_dataset_chat": true, "spark_documents_chat": true}

// registerSessionRoutes adds the session surface under /v1 with JWT auth.
func (s *Server) registerSessionRoutes(e *gin.Engine) {
	internal := func(c *gin.Context) { writeCodeMsg(c, http.StatusInternalServerError, "", "internal error") }
	g := e.Group("/v1/chat", s.track(), s.recoveryWith(internal), s.jwtAuth(writeCodeMsg))
	g.GET("/models", s.chatModels)
	g.POST("/session", s.sessionSave(0))
	g.POST("/spark_session", s.sessionSave(store.ModuleSpark))
	g.GET("/session/:id", s.sessionGet)
	g.PUT("/session/:id", s.sessionUpdate)
	g.DELETE("/session/:id", s.sessionDelete)
	g.POST("/session/rename", s.sessionRename)
	g.POST("/session/search", s.sessionSearch(0))
	g.POST("/session/my_spark_sessions", s.sessionSearch(store.ModuleSpark))
	g.POST("/session/records", s.sessionRecords)
	g.POST("/session/add_files", s.sessionFiles(false))
	g.POST("/session/remove_files", s.sessionFiles(true))
	g.POST("/session/conversation", s.sessionConversation)
	g.GET("/session/conversation", s.sessionConversationWS)
	admin := g.Group("/data", requireAdmin(writeCodeMsg))
	admin.POST("/session/search", s.dataSessionSearch)
	admin.GET("/session/:id", s.dataSessionGet)
}

// sessionError answers err: 404 for store.ErrNotFound (another user's id too), else 500 logged.
func (s *Server) sessionError(c *gin.Context, err error, what string) {
	if errors.Is(err, store.ErrNotFound) {
		writeCodeMsg(c, http.StatusNotFound, "", what+" not found")
		return
	}
	s.log.Error("session surface: store failed", "request_id", c.GetString(ctxRequestID), "what", what, "err", err)
	writeCodeMsg(c, http.StatusInternalServerError, "", "internal error")
}

// bindJSON reads the body (bounded) into v; on failure it answers 400 and returns false.
func (s *Server) bindJSON(c *gin.Context, v any) bool {
	body, aerr := s.readBody(c)
	if aerr != nil {
		writeCodeMsg(c, aerr.Status, "", aerr.Message)
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeCodeMsg(c, http.StatusBadRequest, "", "request body is not valid JSON for this route: "+jsonProblem(err))
		return false
	}
	return true
}

// jsonProblem describes a decode error without echoing the body.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "field " + te.Field + " must be " + te.Type.String()
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "syntax error at offset " + strconv.FormatInt(se.Offset, 10)
	}
	return "cannot decode"
}

// pathID reads the :id path parameter (400 unless a positive integer).
func pathID(c *gin.Context) (int64, bool) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		writeCodeMsg(c, http.StatusBadRequest, "", "id must be a positive integer")
		return 0, false
	}
	return id, true
}

func (s *Server) toAPIUser(id int64, name string) *apiUser {
	if id == 0 {
		return nil
	}
	return &apiUser{ID: id, Name: name}
}

func (s *Server) toAPISession(ss store.Session) apiSession {
	out := apiSession{ID: ss.ID, Title: ss.Title, Abstract: ss.Abstract, CreatedAt: ss.CreatedAt.Unix(), Module: ss.Module,
		Type: ss.Type, DatasetID: ss.DatasetID, DocumentIDs: ss.DocumentIDs, Author: s.toAPIUser(ss.UserID, ss.UserName),
		TotalRecords: ss.TotalRecords}
	for _, d := range ss.DocumentIDs {
		out.Documents = append(out.Documents, apiDocument{ID: d})
	}
	if m, ok := s.sessionModel(ss.ModelID); ok && ss.ModelID != 0 {
		out.Model = &m
	}
	return out
}

func (s *Server) toAPIRecord(r store.Record, author *apiUser) apiRecord {
	out := apiRecord{ID: r.ID, SessionID: r.SessionID, GroupID: r.GroupID, ModelID: r.ModelID, AuthorID: r.AuthorID,
		Author: author, ContentType: r.ContentType, ProblemText: r.ProblemText, AnswerText: r.AnswerText, Status: r.Status,
		CreateAt: r.CreatedAt.Unix()}
	if m, ok := s.sessionModel(r.ModelID); ok && r.ModelID != 0 {
		out.Model = &m
	}
	return out
}

func (s *Server) toAPIRecords(recs []store.Record, ss store.Session) []apiRecord {
	out := make([]apiRecord, 0, len(recs))
	for _, r := range recs {
		var author *apiUser
		if r.AuthorID == ss.UserID {
			author = s.toAPIUser(ss.UserID, ss.UserName)
		}
		out = append(out, s.toAPIRecord(r, author))
	}
	return out
}

// chatModels answers GET /v1/chat/models.
func (s *Server) chatModels(c *gin.Context) {
	models := s.sessionModels()
	if models == nil {
		models = []SessionModel{}
	}
	c.JSON(http.StatusOK, gin.H{"list": models})
}

// checkSessionFields validates a session's module, type and model (400 through the returned message).
func (s *Server) checkSessionFields(it *apiSession) string {
	if it.Module == 0 {
		it.Module = store.ModuleChat
	}
	if it.Module < store.ModuleChat || it.Module > store.ModuleStrategy {
		return "session.module must be 1 (chat), 2 (Spark document QA) or 3 (strategy)"
	}
	if it.Type == "" {
		it.Type = "chat"
	}
	if !sessionTypes[it.Type] {
		return "session.type must be chat, spark_dataset_chat or spark_documents_chat"
	}
	if it.Model != nil && it.Model.ID != 0 {
		if _, ok := s.sessionModel(it.Model.ID); !ok {
			return "session.model.id names no configured model"
		}
	}
	if len([]rune(it.Title)) > 200 {
		return "session.title must be at most 200 characters"
	}
	return ""
}

// sessionSave answers POST /v1/chat/session (and /v1/chat/spark_session with module 2).
func (s *Server) sessionSave(module int) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req sessionBody
		if !s.bindJSON(c, &req) {
			return
		}
		if req.Session == nil {
			req.Session = &apiSession{}
		}
		it := req.Session
		if module != 0 {
			it.Module = module
			if it.Type == "" {
				switch {
				case len(it.DocumentIDs) > 0:
					it.Type = "spark_documents_chat"
				case it.DatasetID != 0:
					it.Type = "spark_dataset_chat"
				}
			}
		}
		if msg := s.checkSessionFields(it); msg != "" {
			writeCodeMsg(c, http.StatusBadRequest, "", msg)
			return
		}
		u := userFrom(c)
		ss := store.Session{UserID: u.ID, Module: it.Module, Type: it.Type, Title: strings.TrimSpace(it.Title),
			Abstract: it.Abstract, DatasetID: it.DatasetID, DocumentIDs: it.DocumentIDs}
		if it.Model != nil {
			ss.ModelID = it.Model.ID
		}
		created, err := s.store.CreateSession(c.Request.Context(), ss)
		if err != nil {
			s.sessionError(c, err, "user")
			return
		}
		created.UserName = u.Name
		c.JSON(http.StatusOK, gin.H{"session": s.toAPISession(created)})
	}
}

// sessionGet answers GET /v1/chat/session/:id.
func (s *Server) sessionGet(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	u := userFrom(c)
	ss, err := s.store.GetSession(c.Request.Context(), u.ID, id)
	if err != nil {
		s.sessionError(c, err, "session")
		return
	}
	recs, _, err := s.store.ListRecords(c.Request.Context(), u.ID, id, 1, sessionRecordsInGet)
	if err != nil {
		s.sessionError(c, err, "session")
		return
	}
	s.answerSession(c, ss, recs)
}

func (s *Server) answerSession(c *gin.Context, ss store.Session, recs []store.Record) {
	out := sessionGetResponse{Session: s.toAPISession(ss), Records: s.toAPIRecords(recs, ss), Documents: []apiDocument{}}
	out.Documents = append(out.Documents, out.Session.Documents...)
	if ss.DatasetID != 0 {
		out.Dataset = &struct {
			ID int64 `json:"id"`
		}{ss.DatasetID}
	}
	c.JSON(http.StatusOK, out)
}

// sessionUpdate answers PUT /v1/chat/session/:id: fields present in the body replace the stored ones.
func (s *Server) sessionUpdate(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	var req sessionBody
	if !s.bindJSON(c, &req) {
		return
	}
	if req.Session == nil {
		writeCodeMsg(c, http.StatusBadRequest, "", "session is required")
		return
	}
	u, ctx := userFrom(c), c.Request.Context()
	cur, err := s.store.GetSession(ctx, u.ID, id)
	if err != nil {
		s.sessionError(c, err, "session")
		return
	}
	it := req.Session
	if it.Title != "" {
		cur.Title = strings.TrimSpace(it.Title)
	}
	if it.Abstract != "" {
		cur.Abstract = it.Abstract
	}
	if it.Module != 0 {
		cur.Module = it.Module
	}
	if it.Type != "" {
		cur.Type = it.Type
	}
	if it.DatasetID != 0 {
		cur.DatasetID = it.DatasetID
	}
	if it.DocumentIDs != nil {
		cur.DocumentIDs = it.DocumentIDs
	}
	if it.Model != nil {
		cur.ModelID = it.Model.ID
	}
	check := apiSession{Module: cur.Module, Type: cur.Type, Title: cur.Title, Model: it.Model} // a model only when set now
	if msg := s.checkSessionFields(&check); msg != "" {
		writeCodeMsg(c, http.StatusBadRequest, "", msg)
		return
	}
	if err := s.store.UpdateSession(ctx, u.ID, cur); err != nil {
		s.sessionError(c, err, "session")
		return
	}
	c.JSON(http.StatusOK, gin.H{})
}

// sessionDelete answers DELETE /v1/chat/session/:id.
func (s *Server) sessionDelete(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	if err := s.store.DeleteSession(c.Request.Context(), userFrom(c).ID, id); err != nil {
		s.sessionError(c, err, "session")
		return
	}
	c.JSON(http.StatusOK, gin.H{})
}

// sessionRename answers POST /v1/chat/session/rename {id, name}.
func (s *Server) sessionRename(c *gin.Context) {
	var req renameRequest
	if !s.bindJSON(c, &req) {
		return
	}
	name := strings.TrimSpace(req.Name)
	switch {
	case req.ID <= 0:
		writeCodeMsg(c, http.StatusBadRequest, "", "id is required")
		return
	case name == "":
		writeCodeMsg(c, http.StatusBadRequest, "", "name is required")
		return
	case len([]rune(name)) > 200:
		writeCodeMsg(c, http.StatusBadRequest, "", "name must be at most 200 characters")
		return
	}
	if err := s.store.RenameSession(c.Request.Context(), userFrom(c).ID, req.ID, name); err != nil {
		s.sessionError(c, err, "session")
		return
	}
	c.JSON(http.StatusOK, gin.H{})
}

func checkPage(c *gin.Context, page, size int) bool {
	if page < 0 || size < 0 {
		writeCodeMsg(c, http.StatusBadRequest, "", "page and size must not be negative")
		return false
	}
	return true
}

// sessionSearch answers POST /v1/chat/session/search (and my_spark_sessions with module 2).
func (s *Server) sessionSearch(module int) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req searchRequest
		if !s.bindJSON(c, &req) || !checkPage(c, req.Page, req.Size) {
			return
		}
		if module != 0 {
			req.Module = module
		}
		list, total, err := s.store.SearchSessions(c.Request.Context(), store.SessionFilter{UserID: userFrom(c).ID,
			Module: req.Module, Title: req.Title, Page: req.Page, Size: req.Size})
		if err != nil {
			s.sessionError(c, err, "sessions")
			return
		}
		s.answerSessions(c, list, total)
	}
}

func (s *Server) answerSessions(c *gin.Context, list []store.Session, total int64) {
	out := sessionListResponse{List: make([]apiSession, 0, len(list)), Total: total}
	for _, ss := range list {
		out.List = append(out.List, s.toAPISession(ss))
	}
	c.JSON(http.StatusOK, out)
}

// sessionRecords answers POST /v1/chat/session/records {page, size, sessionId}.
func (s *Server) sessionRecords(c *gin.Context) {
	var req recordsRequest
	if !s.bindJSON(c, &req) || !checkPage(c, req.Page, req.Size) {
		return
	}
	if req.SessionID <= 0 {
		writeCodeMsg(c, http.StatusBadRequest, "", "sessionId is required")
		return
	}
	u, ctx := userFrom(c), c.Request.Context()
	recs, total, err := s.store.ListRecords(ctx, u.ID, req.SessionID, req.Page, req.Size)
	if err != nil {
		s.sessionError(c, err, "session")
		return
	}
	ss := store.Session{UserID: u.ID, UserName: u.Name}
	c.JSON(http.StatusOK, recordListResponse{List: s.toAPIRecords(recs, ss), Total: total})
}

// sessionFiles answers POST /v1/chat/session/add_files and remove_files {id, documentIds}. The
// document store is not part of the relay yet, so the ids are kept as given.
func (s *Server) sessionFiles(remove bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req filesRequest
		if !s.bindJSON(c, &req) {
			return
		}
		if req.ID <= 0 || len(req.DocumentIDs) == 0 {
			writeCodeMsg(c, http.StatusBadRequest, "", "id and documentIds are required")
			return
		}
		for _, d := range req.DocumentIDs {
			if d <= 0 {
				writeCodeMsg(c, http.StatusBadRequest, "", "documentIds must be positive")
				return
			}
		}
		if err := s.store.SetSessionDocuments(c.Request.Context(), userFrom(c).ID, req.ID, req.DocumentIDs, remove); err != nil {
			s.sessionError(c, err, "session")
			return
		}
		c.JSON(http.StatusOK, gin.H{})
	}
}

// dataSessionSearch answers POST /v1/chat/data/session/search (admin): every user's sessions.
func (s *Server) dataSessionSearch(c *gin.Context) {
	var req dataSearchRequest
	if !s.bindJSON(c, &req) || !checkPage(c, req.Page, req.Size) {
		return
	}
	if req.BeginTime < 0 || req.EndTime < 0 || (req.EndTime != 0 && req.EndTime < req.BeginTime) {
		writeCodeMsg(c, http.StatusBadRequest, "", "beginTime and endTime must be Unix seconds with beginTime <= endTime")
		return
	}
	f := store.SessionFilter{AllUsers: true, Title: req.Title, UserName: req.UserName, Page: req.Page, Size: req.Size}
	if req.BeginTime > 0 {
		f.Since = time.Unix(req.BeginTime, 0)
	}
	if req.EndTime > 0 {
		f.Until = time.Unix(req.EndTime, 999_999_999) // the whole last second
	}
	list, total, err := s.store.SearchSessions(c.Request.Context(), f)
	if err != nil {
		s.sessionError(c, err, "sessions")
		return
	}
	s.answerSessions(c, list, total)
}

// dataSessionGet answers GET /v1/chat/data/session/:id (admin): any user's session.
func (s *Server) dataSessionGet(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	ss, err := s.store.GetSessionAny(ctx, id)
	if err != nil {
		s.sessionError(c, err, "session")
		return
	}
	recs, _, err := s.store.ListRecordsAny(ctx, id, 1, sessionRecordsInGet)
	if err != nil {
		s.sessionError(c, err, "session")
		return
	}
	s.answerSession(c, ss, recs)
}

// startSessions marks records a previous run left processing as failed, then registers the routes.
func (s *Server) startSessions(e *gin.Engine) {
	if s.store == nil { // some tests build a server without a store
		s.registerSessionRoutes(e)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := s.store.FailProcessingRecords(ctx); err != nil {
		s.log.Error("session surface: cannot close records left processing", "err", err)
	} else if n > 0 {
		s.log.Warn("session surface: records left processing by the last run marked finished_fail", "records", n)
	}
	s.registerSessionRoutes(e)
}
