package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"relay/adaptor"
	"relay/store"
)

// The workflow surface (seed chat.api): POST /v1/chat/completions with workflow fields on top of the
// OpenAI body, GET /v1/chat/tasks/{id} for asynchronous jobs, GET /v1/chat/getauth.
//
// Request fields, all optional:
//   - work_id: the workflow to run (config workflows.apps). The workflow's channel serves the call with
//     the workflow's own app key; model may then be omitted (the answer reports work_id as the model).
//     Unknown → 404; a relay key not in the workflow's allowed_keys → 403.
//   - event_type (default fastgpt): the kind of workflow backend; must match the workflow's.
//   - is_batch: answer 202 with a task id at once and run the request in the job pool. Without work_id
//     the job is routed by model like any OpenAI request.
//   - callback: where the job's result is POSTed (needs is_batch).
//   - FastGPT fields (chat_id/chatId, response_chat_item_id, detail, variables) are read by
//     ParseChatRequest; variables must be a string map here.
//
// A request carrying none of work_id, event_type, is_batch (true) or callback is a plain OpenAI request
// and goes on to the OpenAI surface unchanged.

// DefaultEventType is the workflow backend a request names when it sends no event_type.
const DefaultEventType = "fastgpt"

// Keys of adaptor.Completion.Extra that the workflow surface returns beside the completion.
var workflowExtras = [...]string{"responseData", "newVariables"}

// workflow is a configured work_id, resolved against the enabled channels.
type workflow struct {
	id        string
	eventType string
	ch        *Channel // nil when unavailable
	appKey    string
	allowed   map[string]bool // relay key names; empty allows every key
}

// buildWorkflows resolves workflows.apps: app keys expanded from the environment, channels looked up
// among the enabled ones. A workflow whose channel is disabled or whose app key references an unset
// variable stays known but unavailable (503), so the relay starts without every secret set.
func buildWorkflows(cfg *Config, channels []*Channel, log *slog.Logger) map[string]*workflow {
	byName := map[string]*Channel{}
	for _, ch := range channels {
		byName[ch.Name] = ch
	}
	out := make(map[string]*workflow, len(cfg.Workflows.Apps))
	for _, wc := range cfg.Workflows.Apps {
		wf := &workflow{id: wc.WorkID, eventType: wc.EventType, allowed: map[string]bool{}}
		if wf.eventType == "" {
			wf.eventType = DefaultEventType
		}
		for _, k := range wc.AllowedKeys {
			wf.allowed[k] = true
		}
		out[wc.WorkID] = wf
		var missing []string
		key := expand(wc.AppKey, &missing)
		ch := byName[wc.Channel]
		switch {
		case ch == nil:
			log.Warn("workflow unavailable: its channel is not enabled", "work_id", wc.WorkID, "channel", wc.Channel)
		case ch.Kind != wf.eventType:
			log.Warn("workflow unavailable: event_type does not match the channel's kind", "work_id", wc.WorkID, "channel", wc.Channel)
		case len(missing) > 0:
			log.Warn("workflow unavailable: its app key references an unset environment variable", "work_id", wc.WorkID, "variable", missing[0])
		default:
			wf.ch, wf.appKey = ch, key
		}
	}
	return out
}

// allows reports whether a relay key may use the workflow.
func (wf *workflow) allows(k *store.Key) bool { return len(wf.allowed) == 0 || wf.allowed[k.Name] }

// core is the core scoped to the workflow's channel: the same dispatch, failover and accounting, with
// a router that sends the request's model to that channel only.
func (s *Server) workflowCore(wf *workflow, model string) *Core {
	co := &Core{store: s.core.store, log: s.core.log, maxAnswer: s.core.maxAnswer, keepAlive: s.core.keepAlive, metrics: s.core.metrics}
	co.router.Store(&Router{byModel: map[string][]*Channel{model: {wf.ch}}, models: []string{model}})
	return co
}

// wfFields are the workflow control fields of a request.
type wfFields struct {
	eventType, workID, callback string
	isBatch                     bool
}

// readWorkflowFields reads the control fields in one pass over the top level. present reports whether the
// request asks for the workflow surface at all.
func readWorkflowFields(body []byte) (f wfFields, present bool, e *adaptor.Error) {
	if !mentionsControlField(body) {
		return f, false, nil
	}
	var eventType, workID, isBatch, callback gjson.Result
	gjson.Parse(adaptor.BytesString(body)).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "event_type":
			eventType = v
		case "work_id":
			workID = v
		case "is_batch":
			isBatch = v
		case "callback":
			callback = v
		}
		return true
	})
	str := func(name string, r gjson.Result, dst *string) {
		if e != nil || !r.Exists() || r.Type == gjson.Null {
			return
		}
		if r.Type != gjson.String {
			e, present = typeError(name, "a string"), true
			return
		}
		*dst = r.Str
	}
	str("work_id", workID, &f.workID)
	str("event_type", eventType, &f.eventType)
	str("callback", callback, &f.callback)
	if e == nil && isBatch.Exists() && isBatch.Type != gjson.Null {
		if isBatch.Type != gjson.True && isBatch.Type != gjson.False {
			return f, true, typeError("is_batch", "a boolean")
		}
		f.isBatch = isBatch.Type == gjson.True
	}
	return f, present || f.workID != "" || f.eventType != "" || f.callback != "" || f.isBatch, e
}

var controlKeys = [...][]byte{[]byte(`"work_id"`), []byte(`"is_batch"`), []byte(`"callback"`), []byte(`"event_type"`)}

// mentionsControlField is the plain path's fast check: a body without any control field name in it
// cannot be a workflow request, and most are plain. (A key spelled with JSON escapes is not recognized.)
func mentionsControlField(body []byte) bool {
	for _, k := range controlKeys {
		if bytes.Contains(body, k) {
			return true
		}
	}
	return false
}

// controlFields are the relay's own fields; they are not sent upstream (OpenAI rejects unknown ones).
var controlFields = [...]string{"event_type", "work_id", "is_batch", "callback"}

// workflowChat serves a request with workflow fields: checks, then a synchronous answer or a job.
func (s *Server) workflowChat(c *gin.Context, key *store.Key, body []byte, f wfFields) {
	var wf *workflow
	if f.workID == "" {
		switch {
		case f.eventType != "":
			writeOpenAIError(c, adaptor.BadRequest("work_id", "work_id is required when event_type is set"))
			return
		case !f.isBatch:
			writeOpenAIError(c, adaptor.BadRequest("callback", "callback needs is_batch: true"))
			return
		}
	} else {
		var aerr *adaptor.Error
		if wf, aerr = s.resolveWorkflow(key, f); aerr != nil {
			writeOpenAIError(c, aerr)
			return
		}
		if m := gjson.GetBytes(body, "model"); !m.Exists() || m.Type == gjson.Null || (m.Type == gjson.String && m.Str == "") {
			body, _ = sjson.SetBytes(body, "model", f.workID) // the seed makes model optional
		}
	}
	req, aerr := ParseChatRequest(body)
	if aerr != nil {
		writeOpenAIError(c, aerr)
		return
	}
	if aerr := checkVariables(req.Variables); aerr != nil {
		writeOpenAIError(c, aerr)
		return
	}
	if wf == nil && (!key.Allows(req.Model) || !s.core.router.Load().Serves(req.Model)) {
		writeOpenAIError(c, modelNotFound(req.Model))
		return
	}
	if f.callback != "" && !f.isBatch {
		writeOpenAIError(c, adaptor.BadRequest("callback", "callback needs is_batch: true"))
		return
	}
	if f.isBatch {
		if req.Stream {
			writeOpenAIError(c, adaptor.BadRequest("is_batch", "is_batch cannot be combined with stream: a batch result is delivered whole"))
			return
		}
		s.submitJob(c, key, req, f)
		return
	}
	// Synchronous: only workflow requests get here (without work_id, the fields above need is_batch).
	req.APIKey = wf.appKey
	req.Body = stripControl(req.Body)
	s.serveChat(c, s.workflowCore(wf, req.Model), NewCall(c.GetString(ctxRequestID), key.ID, "workflow", req), workflowBody,
		func(w io.Writer, req *adaptor.Request) Framer {
			return &workflowFramer{openAIFramer: newOpenAIFramer(w, req), detail: req.Detail}
		})
}

// resolveWorkflow finds the request's workflow and checks the key may use it.
func (s *Server) resolveWorkflow(key *store.Key, f wfFields) (*workflow, *adaptor.Error) {
	wf := s.workflowsNow()[f.workID]
	if wf == nil {
		return nil, workflowNotFound(f.workID)
	}
	if !wf.allows(key) {
		return nil, &adaptor.Error{Status: 403, Type: adaptor.TypePermission, Code: "workflow_not_allowed", Param: "work_id",
			Message: "This API key may not use the workflow work_id `" + f.workID + "`."}
	}
	et := f.eventType
	if et == "" {
		et = DefaultEventType
	}
	if et != wf.eventType {
		return nil, adaptor.BadRequest("event_type", "event_type `"+et+"` does not match the workflow `"+f.workID+"`, which is of type `"+wf.eventType+"`")
	}
	if wf.ch == nil {
		return nil, workflowUnavailable(f.workID)
	}
	return wf, nil
}

func workflowNotFound(id string) *adaptor.Error {
	return &adaptor.Error{Status: 404, Type: adaptor.TypeNotFound, Code: "workflow_not_found", Param: "work_id",
		Message: "Unknown work_id `" + id + "`: no workflow of that id is configured on this relay."}
}

func workflowUnavailable(id string) *adaptor.Error {
	return &adaptor.Error{Status: 503, Type: adaptor.TypeServer, Code: "workflow_unavailable",
		Message: "The workflow `" + id + "` is not available on this relay right now (its upstream is not configured)."}
}

// checkVariables enforces the seed's variables type, a string map.
func checkVariables(raw []byte) *adaptor.Error {
	if len(raw) == 0 {
		return nil
	}
	var e *adaptor.Error
	gjson.ParseBytes(raw).ForEach(func(k, v gjson.Result) bool {
		if v.Type != gjson.String {
			e = adaptor.BadRequest("variables", "variables."+k.Str+" must be a string: variables is a map of strings")
			return false
		}
		return true
	})
	return e
}

// stripControl removes the relay's control fields from a body before it goes upstream.
func stripControl(body []byte) []byte {
	for _, k := range controlFields {
		if gjson.GetBytes(body, k).Exists() {
			if b, err := sjson.DeleteBytes(body, k); err == nil {
				body = b
			}
		}
	}
	return body
}

// workflowBody is a non-stream answer: the OpenAI chat.completion plus the upstream's responseData and
// newVariables when it returned them (FastGPT with detail=true). Synchronous calls and job results
// share it.
func workflowBody(comp *adaptor.Completion, req *adaptor.Request) []byte {
	body := finishCompletion(comp, req)
	for _, k := range workflowExtras {
		if v := comp.Extra[k]; len(v) > 0 && gjson.ValidBytes(v) {
			if b, err := sjson.SetRawBytes(body, k, v); err == nil {
				body = b
			}
		}
	}
	return body
}

// workflowFramer is the OpenAI framer plus, with detail=true, the upstream's named events (FastGPT's
// flowNodeStatus, flowResponses, ...) as named SSE events in their place among the chunks:
//
//	event: <name>
//	data: <payload>
//
// The payload is the upstream's own JSON object. A payload that would stop OpenAI SDKs (they parse every
// data line as a chunk and end the stream on a top-level "error" member; the Go SDK fails on arrays) is
// wrapped as {"data":<payload>}: flowResponses, whose payload is an array, always arrives as
// {"data":[...]}. Without detail, named events are dropped as on the OpenAI surface.
type workflowFramer struct {
	*openAIFramer
	detail bool
	nbuf   []byte
}

func (f *workflowFramer) Named(name string, data []byte) error {
	if !f.detail || name == "" || strings.ContainsAny(name, "\r\n") {
		return nil
	}
	data = bytes.TrimSpace(data)
	if bytes.ContainsAny(data, "\r\n") { // a payload must stay on one data line
		var cb bytes.Buffer
		if json.Compact(&cb, data) != nil {
			return nil
		}
		data = cb.Bytes()
	}
	b := append(f.nbuf[:0], "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	if len(data) > 0 && data[0] == '{' && !gjson.GetBytes(data, "error").Exists() {
		b = append(b, data...)
	} else {
		b = append(b, `{"data":`...)
		b = append(b, data...)
		b = append(b, '}')
	}
	b = append(b, "\n\n"...)
	f.nbuf = b
	_, err := f.w.Write(b)
	return err
}

var _ Framer = (*workflowFramer)(nil)

// getAuth answers GET /v1/chat/getauth: whether the caller's relay key is valid, in the seed's
// BaseMsgResp shape {"code":0,"msg":"..."}: 200 with code 0 when valid, 401 with code 401 when the key
// is missing, unknown or revoked, 503 with code 503 when the store cannot say.
func (s *Server) getAuth(c *gin.Context) {
	msg := func(status int, text string) {
		code := status
		if status == http.StatusOK {
			code = 0
		}
		b := append(make([]byte, 0, 64), `{"code":`...)
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, `,"msg":`...)
		b = adaptor.AppendJSONString(b, text)
		c.Data(status, "application/json", append(b, '}'))
	}
	secret, ok := bearer(c.GetHeader("Authorization"))
	if !ok {
		msg(401, "missing API key: send it as Authorization: Bearer <key>")
		return
	}
	key, err := s.keys.lookup(c.Request.Context(), secret)
	switch {
	case err == nil && key.Active():
		msg(200, "API key is valid")
	case err == nil:
		msg(401, "API key has been revoked")
	case errors.Is(err, store.ErrNotFound):
		msg(401, "invalid API key")
	default:
		s.logKeyLookup(c, err)
		msg(503, "cannot check the API key right now")
	}
}

// jobTimeoutCtx bounds one job's upstream call.
func (s *Server) jobTimeoutCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	d := s.cfg.Workflows.JobTimeout
	if d <= 0 {
		d = 10 * time.Minute
	}
	return context.WithTimeout(ctx, d)
}
