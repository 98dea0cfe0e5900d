package relay

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"relay/adaptor"
	"relay/store"
)

// The OpenAI surface: POST /v1/chat/completions and GET /v1/models, drop-in for the official SDKs.

// readBody reads the request body once, bounded by the configured limit (413 beyond it). The buffer is
// the request's own, not pooled: the HTTP transport may still be reading a request body it sends
// upstream after the round trip returned, and a reused buffer could leak into another request.
func (s *Server) readBody(c *gin.Context) ([]byte, *adaptor.Error) {
	limit := s.cfg.Server.MaxBodyBytes
	if c.Request.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	var buf bytes.Buffer
	if n := c.Request.ContentLength; n > 0 {
		buf.Grow(int(n) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(c.Writer, c.Request.Body, limit)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		return nil, adaptor.BadRequest("", "cannot read request body: "+err.Error())
	}
	return buf.Bytes(), nil
}

func tooLarge(limit int64) *adaptor.Error {
	return &adaptor.Error{Status: http.StatusRequestEntityTooLarge, Type: adaptor.TypeInvalidRequest, Code: "request_too_large",
		Message: "request body is larger than the limit of " + strconv.FormatInt(limit, 10) + " bytes"}
}

func (s *Server) chatCompletions(c *gin.Context) {
	key := c.MustGet(ctxKey).(*store.Key)
	body, aerr := s.readBody(c)
	if aerr != nil {
		writeOpenAIError(c, aerr)
		return
	}
	// The same endpoint serves the workflow surface (seed chat.api): its control fields divert it.
	if f, isWorkflow, aerr := readWorkflowFields(body); aerr != nil {
		writeOpenAIError(c, aerr)
		return
	} else if isWorkflow {
		s.workflowChat(c, key, body, f)
		return
	}
	req, aerr := ParseChatRequest(body)
	if aerr != nil {
		writeOpenAIError(c, aerr)
		return
	}
	if !key.Allows(req.Model) || !s.core.router.Load().Serves(req.Model) {
		writeOpenAIError(c, modelNotFound(req.Model))
		return
	}
	s.serveChat(c, s.core, NewCall(c.GetString(ctxRequestID), key.ID, "openai", req), finishCompletion, openAIFraming)
}

// serveChat runs one chat request through co and answers it, non-stream (body renders the completion)
// or stream (framing writes the chunks). The OpenAI and workflow surfaces share it.
func (s *Server) serveChat(c *gin.Context, co *Core, call *Call,
	body func(*adaptor.Completion, *adaptor.Request) []byte, framing func(io.Writer, *adaptor.Request) Framer) {
	key := c.MustGet(ctxKey).(*store.Key)
	adm, aerr := s.limits.admit(key, call.Req)
	if aerr != nil {
		call.Err, call.Status = aerr, aerr.Status
		co.Finish(call)
		writeOpenAIError(c, aerr)
		return
	}
	defer func() {
		adm.done(call.Usage)
		if key.QuotaTokens > 0 {
			s.store.AddKeyUsage(key.ID, int64(call.Usage.TotalTokens))
		}
	}()
	defer co.Finish(call)
	var answer []byte // for the key's user's sessions (session_log.go): queued, never written here
	if s.sessionLogging(key) {
		defer func() { s.logConversation(c.GetHeader(HeaderSession), key, call, answer, call.Req.Stream) }()
	}
	req, ctx := call.Req, c.Request.Context()
	if !req.Stream {
		comp, aerr := co.Complete(ctx, call)
		if aerr != nil {
			call.Err, call.Status = aerr, aerr.Status
			writeOpenAIError(c, aerr)
			return
		}
		out := body(comp, req)
		call.Usage, call.Status, answer = comp.Usage, http.StatusOK, out
		c.Data(http.StatusOK, "application/json", out)
		return
	}
	events, aerr := co.Stream(ctx, call)
	if aerr != nil {
		call.Err, call.Status = aerr, aerr.Status
		writeOpenAIError(c, aerr)
		return
	}
	defer events.Close()
	sseHeaders(c.Writer)
	c.Writer.WriteHeader(http.StatusOK)
	res := co.Pump(events, framing(c.Writer, req), c.Writer, req, call.Start)
	call.Status, call.TTFB, call.Usage, call.Err = http.StatusOK, res.TTFB, res.Usage, res.Err
	answer = res.Answer
}

func openAIFraming(w io.Writer, req *adaptor.Request) Framer { return newOpenAIFramer(w, req) }

// sseHeaders sets the headers of an SSE answer (X-Accel-Buffering stops nginx from buffering it).
func sseHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
}

// completionFields are the answer fields finishCompletion checks.
var completionFields = []string{"model", "id", "usage", "object", "created"}

// finishCompletion makes an upstream's completion the client's: the model name it asked for, a
// non-empty id, and usage (estimated when the upstream gave none).
func finishCompletion(comp *adaptor.Completion, req *adaptor.Request) []byte {
	body := comp.Body
	var f [5][]byte // one pass over the answer (adaptors hand over valid JSON)
	adaptor.ObjectFields(body, completionFields, f[:])
	if adaptor.StringValue(f[0]) != req.Model {
		body, _ = sjson.SetBytes(body, "model", req.Model)
	}
	if adaptor.StringValue(f[1]) == "" {
		body, _ = sjson.SetBytes(body, "id", adaptor.NewID("chatcmpl-"))
	}
	if adaptor.StringValue(f[3]) != "chat.completion" {
		body, _ = sjson.SetBytes(body, "object", "chat.completion")
	}
	if gjson.ParseBytes(f[4]).Int() == 0 {
		body, _ = sjson.SetBytes(body, "created", time.Now().Unix())
	}
	if !comp.Usage.Valid() {
		comp.Usage = adaptor.EstimateUsage(req.Body, adaptor.MessageText(gjson.GetBytes(body, "choices.0.message.content")))
		body, _ = sjson.SetRawBytes(body, "usage", adaptor.AppendUsage(nil, comp.Usage))
	} else if len(f[2]) == 0 || f[2][0] != '{' {
		body, _ = sjson.SetRawBytes(body, "usage", adaptor.AppendUsage(nil, comp.Usage))
	}
	return body
}

// openAIFramer writes OpenAI chunks: every chunk of one stream carries the same id, created and model
// (the name the client asked for); the first carries the role; the last choice chunk carries
// finish_reason; a usage chunk goes out only when the client asked for it; then [DONE].
type openAIFramer struct {
	w            io.Writer
	prefix       []byte // `data: {"id":...,"model":...,"choices":`
	buf          []byte
	includeUsage bool
	started      bool
}

func newOpenAIFramer(w io.Writer, req *adaptor.Request) *openAIFramer {
	p := make([]byte, 0, 128)
	p = append(p, `data: {"id":`...)
	p = adaptor.AppendJSONString(p, adaptor.NewID("chatcmpl-"))
	p = append(p, `,"object":"chat.completion.chunk","created":`...)
	p = strconv.AppendInt(p, time.Now().Unix(), 10)
	p = append(p, `,"model":`...)
	p = adaptor.AppendJSONString(p, req.Model)
	p = append(p, `,"choices":`...)
	return &openAIFramer{w: w, prefix: p, buf: make([]byte, 0, 512), includeUsage: req.IncludeUsage}
}

const roleChoices = `[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]`

func (f *openAIFramer) write(choices []byte) error {
	b := append(f.buf[:0], f.prefix...)
	b = append(b, choices...)
	if f.includeUsage {
		b = append(b, `,"usage":null`...)
	}
	b = append(b, "}\n\n"...)
	f.buf = b
	_, err := f.w.Write(b)
	return err
}

func (f *openAIFramer) Chunk(choices []byte, _ string) error {
	if !f.started {
		f.started = true
		if !gjson.Get(adaptor.BytesString(choices), "0.delta.role").Exists() {
			if err := f.write([]byte(roleChoices)); err != nil {
				return err
			}
		}
	}
	return f.write(choices)
}

// Named events are FastGPT-style extras; plain OpenAI clients must not see them.
func (f *openAIFramer) Named(string, []byte) error { return nil }

func (f *openAIFramer) End(u adaptor.Usage, finish string) error {
	if !f.started {
		f.started = true
		if err := f.write([]byte(roleChoices)); err != nil {
			return err
		}
	}
	if finish == "" {
		if err := f.write([]byte(`[{"index":0,"delta":{},"finish_reason":"stop"}]`)); err != nil {
			return err
		}
	}
	b := f.buf[:0]
	if f.includeUsage {
		b = append(b, f.prefix...)
		b = append(b, `[],"usage":`...)
		b = adaptor.AppendUsage(b, u)
		b = append(b, "}\n\n"...)
	}
	b = append(b, "data: [DONE]\n\n"...)
	f.buf = b
	_, err := f.w.Write(b)
	return err
}

func (f *openAIFramer) Fail(e *adaptor.Error) error {
	b := append(f.buf[:0], "data: "...)
	b = appendOpenAIError(b, e)
	b = append(b, "\n\n"...)
	f.buf = b
	_, err := f.w.Write(b)
	return err
}

// models answers GET /v1/models with the models the key may use.
func (s *Server) listModels(c *gin.Context) {
	key := c.MustGet(ctxKey).(*store.Key)
	b := append(make([]byte, 0, 256), `{"object":"list","data":[`...)
	n := 0
	for _, m := range s.core.router.Load().Models() {
		if !key.Allows(m) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = s.appendModel(b, m)
		n++
	}
	b = append(b, "]}"...)
	c.Data(http.StatusOK, "application/json", b)
}

// getModel answers GET /v1/models/{id}.
func (s *Server) getModel(c *gin.Context) {
	key := c.MustGet(ctxKey).(*store.Key)
	m := c.Param("model")
	if !key.Allows(m) || !s.core.router.Load().Serves(m) {
		writeOpenAIError(c, modelNotFound(m))
		return
	}
	c.Data(http.StatusOK, "application/json", s.appendModel(nil, m))
}

func (s *Server) appendModel(b []byte, m string) []byte {
	b = append(b, `{"id":`...)
	b = adaptor.AppendJSONString(b, m)
	b = append(b, `,"object":"model","created":`...)
	b = strconv.AppendInt(b, s.started.Unix(), 10)
	b = append(b, `,"owned_by":`...)
	owner := "relay"
	if cands := s.core.router.Load().byModel[m]; len(cands) > 0 {
		owner = cands[0].Kind
	}
	b = adaptor.AppendJSONString(b, owner)
	return append(b, '}')
}
