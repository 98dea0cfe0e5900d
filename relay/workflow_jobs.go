package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"relay/adaptor"
	"relay/store"
)

// Asynchronous jobs (is_batch). A job is a row in the store before the client hears 202; a dispatcher
// claims pending jobs and due deliveries from the store into two bounded pools (upstream runs and
// callback deliveries), and every state change is written before the next step. A relay that stops
// mid-run puts the job back to pending (or, killed, leaves it running, which the next start resets),
// so it runs again after restart; a delivery in flight at the stop is retried after restart.
//
// 202 body:   {"task_id","object":"chat.completion.task","status":"pending","work_id","chat_id","created"}
// Task body:  GET /v1/chat/tasks/{id}, see taskView.
// Callback:   POST <callback> with the result body (what a synchronous call would have answered, or
//             its OpenAI error object) and the headers below.

// Callback request headers.
const (
	HeaderTaskID       = "X-Relay-Task-Id"
	HeaderResultStatus = "X-Relay-Result-Status" // the HTTP status a synchronous call would have had
	HeaderAttempt      = "X-Relay-Attempt"       // 1 for the first delivery
	HeaderSignature    = "X-Relay-Signature"     // "sha256=" + hex HMAC-SHA256(callbacks.secret, body)
)

// submitJob stores the request as a job and answers 202 with its task id.
func (s *Server) submitJob(c *gin.Context, key *store.Key, req *adaptor.Request, f wfFields) {
	if f.callback != "" {
		if s.runner.secret == "" {
			writeOpenAIError(c, &adaptor.Error{Status: 400, Type: adaptor.TypeInvalidRequest, Code: "callbacks_disabled", Param: "callback",
				Message: "This relay does not deliver callbacks (no callbacks.secret is configured): leave out callback and poll GET /v1/chat/tasks/{task_id}."})
			return
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
		aerr := checkCallbackURL(ctx, f.callback, s.cfg.Callbacks.AllowPrivate)
		cancel()
		if aerr != nil {
			writeOpenAIError(c, aerr)
			return
		}
	}
	surface := "batch"
	if f.workID != "" {
		surface = "workflow-batch"
	}
	// A job counts against its key's limits when it is submitted (requests and tokens per minute, quota),
	// with its tokens estimated; the real usage replaces the estimate when it has run (runJob).
	body := bytes.Clone(stripControl(req.Body))
	adm, aerr := s.limits.admit(key, &adaptor.Request{Model: req.Model, Body: body})
	if aerr != nil {
		writeOpenAIError(c, aerr)
		return
	}
	now := time.Now()
	j := store.Job{ID: adaptor.NewID("task_"), Owner: key.ID, RequestID: c.GetString(ctxRequestID), Surface: surface,
		WorkID: f.workID, ChatID: req.ChatID, Request: body, Callback: f.callback,
		Status: store.JobPending, CreatedAt: now}
	if err := s.store.CreateJob(c.Request.Context(), j); err != nil {
		adm.done(adaptor.Usage{}) // not submitted: nothing spent
		s.log.Error("job not stored", "request_id", j.RequestID, "err", err)
		writeOpenAIError(c, adaptor.NewError(503, adaptor.TypeServer, "store_unavailable", "cannot store the job right now"))
		return
	}
	adm.hold()
	s.runner.poke()
	b, _ := json.Marshal(struct {
		TaskID  string `json:"task_id"`
		Object  string `json:"object"`
		Status  string `json:"status"`
		WorkID  string `json:"work_id"`
		ChatID  string `json:"chat_id"`
		Created int64  `json:"created"`
	}{j.ID, "chat.completion.task", string(store.JobPending), j.WorkID, j.ChatID, now.Unix()})
	c.Header("Location", "/v1/chat/tasks/"+j.ID)
	c.Data(http.StatusAccepted, "application/json", b)
}

// runJob makes a job's upstream call through the core and returns what a synchronous call would have
// answered. interrupted is true when the relay is stopping: the job has no result yet.
func (s *Server) runJob(ctx context.Context, j store.Job) (status int, body []byte, interrupted bool) {
	var usage adaptor.Usage // what the job spent; zero when it failed
	defer func() {
		if !interrupted { // an interrupted job runs again after the restart
			s.chargeJob(context.WithoutCancel(ctx), j, usage)
		}
	}()
	fail := func(e *adaptor.Error) (int, []byte, bool) {
		st := e.Status
		if st < 400 || st > 599 {
			st = 502
		}
		return st, appendOpenAIError(nil, e), false
	}
	// The key that submitted the job must still be active when it runs (a job may wait, or survive a
	// restart): a revoked key's jobs end with the same 401 its requests get.
	owner, err := s.store.KeyByID(ctx, j.Owner)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && !owner.Active()):
		return fail(&adaptor.Error{Status: 401, Type: adaptor.TypeInvalidRequest, Code: "invalid_api_key",
			Message: "The relay key that submitted this job has been revoked."})
	case err != nil:
		if ctx.Err() != nil {
			return 0, nil, true
		}
		return fail(adaptor.NewError(503, adaptor.TypeServer, "store_unavailable", "cannot check the job's relay key right now"))
	}
	req, aerr := ParseChatRequest(j.Request)
	if aerr != nil {
		return fail(aerr)
	}
	co := s.core
	if j.WorkID != "" {
		// allowed_keys was checked at submission.
		wf := s.workflowsNow()[j.WorkID]
		switch {
		case wf == nil:
			return fail(workflowNotFound(j.WorkID))
		case wf.ch == nil:
			return fail(workflowUnavailable(j.WorkID))
		}
		co = s.workflowCore(wf, req.Model)
		req.APIKey = wf.appKey
	} else if !s.core.router.Load().Serves(req.Model) {
		return fail(modelNotFound(req.Model))
	}
	call := NewCall(j.ID, j.Owner, j.Surface, req)
	defer co.Finish(call)
	if s.sessionLogging(&owner) {
		// The turn goes into the key's user's sessions like a synchronous call's (chat_id picks the
		// session); a job cut by a stop runs again, and is logged then.
		defer func() {
			if !interrupted {
				s.logConversation("", &owner, call, body, false)
			}
		}()
	}
	cctx, cancel := s.jobTimeoutCtx(ctx)
	defer cancel()
	comp, aerr := co.Complete(cctx, call)
	if aerr != nil {
		call.Err, call.Status = aerr, aerr.Status
		if ctx.Err() != nil {
			return 0, nil, true
		}
		return fail(aerr)
	}
	call.Usage, call.Status = comp.Usage, http.StatusOK
	usage = comp.Usage
	return http.StatusOK, workflowBody(comp, req), false
}

// chargeJob puts a finished job's real usage in place of the estimate held at submission, and adds it to
// the owner key's stored quota spending when the key has a quota (as serveChat does for a synchronous
// call). A failed job spends nothing beyond the estimate's request slot, which ages out of the minute.
func (s *Server) chargeJob(ctx context.Context, j store.Job, u adaptor.Usage) {
	known, quota := s.limits.correctJob(j.Owner, j.Request, u)
	if u.TotalTokens <= 0 {
		return
	}
	if !known {
		// No limit state here for the key (no limits, or a restart since submission): read its quota.
		k, err := s.store.KeyByID(ctx, j.Owner)
		if err != nil {
			s.log.Warn("jobs: cannot read the owner key's quota", "task_id", j.ID, "err", err)
			return
		}
		quota = k.QuotaTokens > 0
	}
	if quota {
		s.store.AddKeyUsage(j.Owner, int64(u.TotalTokens))
	}
}

// taskView is the body of GET /v1/chat/tasks/{id}. Times are Unix seconds; null when not yet.
type taskView struct {
	TaskID       string          `json:"task_id"`
	Object       string          `json:"object"` // chat.completion.task
	Status       string          `json:"status"` // pending, running, completed, delivering, delivered, callback_failed
	WorkID       string          `json:"work_id"`
	ChatID       string          `json:"chat_id"`
	Created      int64           `json:"created"`
	Updated      int64           `json:"updated"`
	CompletedAt  *int64          `json:"completed_at"`
	Runs         int             `json:"runs"`
	ResultStatus int             `json:"result_status"` // 0 until there is a result
	Result       json.RawMessage `json:"result"`        // the body a synchronous call would have answered
	Callback     *callbackView   `json:"callback"`      // null without a callback
}

type callbackView struct {
	URL           string        `json:"url"`
	Attempts      []attemptView `json:"attempts"`
	NextAttemptAt *int64        `json:"next_attempt_at"`
	DeliveredAt   *int64        `json:"delivered_at"`
}

type attemptView struct {
	Attempt    int    `json:"attempt"`
	At         int64  `json:"at"`
	Status     int    `json:"status"` // the receiver's HTTP status, 0 when it gave none
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

func unixOrNull(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.Unix()
	return &v
}

// getTask answers GET /v1/chat/tasks/{id} for the key that submitted the job (404 for any other).
func (s *Server) getTask(c *gin.Context) {
	key := c.MustGet(ctxKey).(*store.Key)
	id := c.Param("id")
	j, attempts, err := s.store.GetJob(c.Request.Context(), id, key.ID)
	if errors.Is(err, store.ErrNotFound) {
		writeOpenAIError(c, &adaptor.Error{Status: 404, Type: adaptor.TypeNotFound, Code: "task_not_found",
			Message: "No task `" + id + "` was submitted with this API key."})
		return
	}
	if err != nil {
		s.log.Error("task lookup failed", "task_id", id, "err", err)
		writeOpenAIError(c, adaptor.NewError(503, adaptor.TypeServer, "store_unavailable", "cannot read the task right now"))
		return
	}
	status := j.Status
	if status == store.JobSending {
		status = store.JobDelivering
	}
	v := taskView{TaskID: j.ID, Object: "chat.completion.task", Status: string(status), WorkID: j.WorkID, ChatID: j.ChatID,
		Created: j.CreatedAt.Unix(), Updated: j.UpdatedAt.Unix(), CompletedAt: unixOrNull(j.CompletedAt), Runs: j.Runs,
		ResultStatus: j.ResultStatus, Result: json.RawMessage("null")}
	if len(j.Result) > 0 {
		v.Result = j.Result
	}
	if j.Callback != "" {
		cv := &callbackView{URL: j.Callback, Attempts: []attemptView{}, DeliveredAt: unixOrNull(j.DeliveredAt)}
		if status == store.JobDelivering {
			cv.NextAttemptAt = unixOrNull(j.NextAttempt)
		}
		for _, a := range attempts {
			cv.Attempts = append(cv.Attempts, attemptView{Attempt: a.Attempt, At: a.At.Unix(), Status: a.Status, Error: a.Error,
				DurationMS: a.Duration.Milliseconds()})
		}
		v.Callback = cv
	}
	b, err := json.Marshal(v)
	if err != nil {
		writeOpenAIError(c, adaptor.NewError(500, adaptor.TypeServer, "internal_error", "cannot render the task"))
		return
	}
	c.Data(http.StatusOK, "application/json", b)
}

// jobRunner is the job pool: one dispatcher goroutine and at most workflows.concurrency upstream runs
// plus callbacks.concurrency deliveries at once.
type jobRunner struct {
	s      *Server
	st     store.Jobs
	log    *slog.Logger
	cb     CallbacksConfig
	secret string
	client *http.Client

	maxRuns, maxSends int64
	runs, sends       atomic.Int64

	wake     chan struct{}
	ctx      context.Context // jobs' context: cancelled when the stop's grace is over
	cancel   context.CancelFunc
	stopping chan struct{}
	stopOnce sync.Once
	done     chan struct{} // the dispatcher returned
	wg       sync.WaitGroup
	started  atomic.Bool
}

// pollEvery is the longest the dispatcher sleeps without a wake-up.
const pollEvery = time.Second

func newJobRunner(s *Server) *jobRunner {
	var missing []string
	secret := expand(s.cfg.Callbacks.Secret, &missing)
	if len(missing) > 0 {
		secret = ""
		s.log.Warn("callbacks disabled: callbacks.secret references an unset environment variable", "variable", missing[0])
	}
	r := &jobRunner{s: s, st: s.store, log: s.log, cb: s.cfg.Callbacks, secret: secret, client: newCallbackClient(s.cfg.Callbacks),
		maxRuns: int64(max(1, s.cfg.Workflows.Concurrency)), maxSends: int64(max(1, s.cfg.Callbacks.Concurrency)),
		wake: make(chan struct{}, 1), stopping: make(chan struct{}), done: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// start resets jobs a previous process left in flight and starts the dispatcher.
func (r *jobRunner) start() {
	if r.st == nil || !r.started.CompareAndSwap(false, true) {
		return // no store (handler-only tests), or already started
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	n, err := r.st.ResetJobs(ctx)
	cancel()
	if err != nil {
		r.log.Error("jobs: cannot reset interrupted jobs", "err", err)
	} else if n > 0 {
		r.log.Info("jobs: resuming interrupted jobs", "count", n)
	}
	go r.loop()
}

// poke wakes the dispatcher (new job, finished run or delivery).
func (r *jobRunner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *jobRunner) loop() {
	defer close(r.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-r.stopping:
			return
		default:
		}
		wait := r.fill()
		timer.Reset(wait)
		select {
		case <-r.stopping:
			return
		case <-r.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

// fill claims as much due work as the pools have room for and says how long to sleep.
func (r *jobRunner) fill() time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if free := r.maxRuns - r.runs.Load(); free > 0 {
		jobs, err := r.st.ClaimPendingJobs(ctx, int(free))
		if err != nil {
			r.log.Error("jobs: claim failed", "err", err)
		}
		for _, j := range jobs {
			r.runs.Add(1)
			r.wg.Add(1)
			go r.run(j)
		}
	}
	wait := pollEvery
	if free := r.maxSends - r.sends.Load(); free > 0 {
		now := time.Now()
		jobs, err := r.st.ClaimDueDeliveries(ctx, now, int(free))
		if err != nil {
			r.log.Error("jobs: claim deliveries failed", "err", err)
		}
		for _, j := range jobs {
			r.sends.Add(1)
			r.wg.Add(1)
			go r.deliver(j)
		}
		if int64(len(jobs)) < free {
			if at, ok, err := r.st.NextDelivery(ctx); err == nil && ok {
				wait = min(wait, max(time.Until(at), time.Millisecond))
			}
		}
	}
	return wait
}

func (r *jobRunner) run(j store.Job) {
	defer r.wg.Done()
	defer func() { r.runs.Add(-1); r.poke() }()
	status, body, interrupted := r.runSafely(j)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if interrupted {
		if err := r.st.ReleaseJob(ctx, j.ID); err != nil {
			r.log.Error("jobs: cannot release an interrupted job", "task_id", j.ID, "err", err)
		}
		return
	}
	if _, err := r.st.FinishJob(ctx, j.ID, status, body, time.Now()); err != nil {
		// The row stays running; the next start resets it and the job runs again.
		r.log.Error("jobs: cannot store a result", "task_id", j.ID, "err", err)
	}
}

func (r *jobRunner) deliver(j store.Job) {
	defer r.wg.Done()
	defer func() { r.sends.Add(-1); r.poke() }()
	attempt := j.Attempts + 1
	start := time.Now()
	status, errText := r.postSafely(j, attempt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r.ctx.Err() != nil && (status < 200 || status > 299) {
		// Cut by the stop: not the receiver's failure; the delivery is retried after restart.
		if err := r.st.ReleaseDelivery(ctx, j.ID); err != nil {
			r.log.Error("jobs: cannot release an interrupted delivery", "task_id", j.ID, "err", err)
		}
		return
	}
	now := time.Now()
	a := store.JobAttempt{Attempt: attempt, At: start, Status: status, Error: errText, Duration: now.Sub(start)}
	next, nextAt := store.JobDelivered, time.Time{}
	if status < 200 || status > 299 {
		deadline := j.CompletedAt.Add(r.cb.MaxAge)
		if attempt >= r.cb.MaxAttempts || !now.Before(deadline) {
			next = store.JobCallbackFailed
			r.log.Warn("jobs: callback given up", "task_id", j.ID, "attempts", attempt, "last_status", status)
		} else {
			next, nextAt = store.JobDelivering, now.Add(r.backoff(attempt))
			if nextAt.After(deadline) {
				nextAt = deadline
			}
		}
	}
	if err := r.st.RecordAttempt(ctx, j.ID, a, next, nextAt); err != nil {
		r.log.Error("jobs: cannot record a delivery", "task_id", j.ID, "err", err)
	}
}

// backoff is the wait after failed attempt n: InitialBackoff doubling up to MaxBackoff, with "equal
// jitter" (a random point in the upper half), so a receiver that failed many jobs at once is not hit
// by all their retries at the same moment.
func (r *jobRunner) backoff(n int) time.Duration {
	d := r.cb.InitialBackoff
	for i := 1; i < n && d < r.cb.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.cb.MaxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// stop ends the pool: no new claims; running jobs and deliveries may finish until ctx is done, then
// they are cancelled (jobs go back to pending, deliveries to delivering) and stop waits for them.
func (r *jobRunner) stop(ctx context.Context) {
	r.stopOnce.Do(func() { close(r.stopping) })
	if r.started.Load() {
		<-r.done
	}
	idle := make(chan struct{})
	go func() { r.wg.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-ctx.Done():
		r.cancel()
		select {
		case <-idle:
		case <-time.After(10 * time.Second):
			r.log.Warn("jobs: workers still running after cancel")
		}
	}
	r.cancel()
}

// runSafely runs a job; a panic (the handlers' recovery does not cover these goroutines) finishes the job
// as a 500 instead of killing the process, which would then crash again on the resumed job.
func (r *jobRunner) runSafely(j store.Job) (status int, body []byte, interrupted bool) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("jobs: panic running a job", "task_id", j.ID, "panic", p, "stack", string(debug.Stack()))
			status, body, interrupted = 500, appendOpenAIError(nil, adaptor.NewError(500, adaptor.TypeServer, "internal_error", "internal error")), false
		}
	}()
	return r.s.runJob(r.ctx, j)
}

// postSafely delivers a callback; a panic counts as a failed attempt.
func (r *jobRunner) postSafely(j store.Job, attempt int) (status int, errText string) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("jobs: panic delivering a callback", "task_id", j.ID, "panic", p, "stack", string(debug.Stack()))
			status, errText = 0, "internal error"
		}
	}()
	return r.post(r.ctx, j, attempt)
}
