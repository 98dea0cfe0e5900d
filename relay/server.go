// Package relay is the HTTP side of the relay: the Gin server, middleware, the core (routing, failover,
// the stream pump, accounting) and one file per surface.
package relay

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"relay/adaptor"
	"relay/store"
)

// Server is the relay's HTTP server.
type Server struct {
	cfg     *Config
	log     *slog.Logger
	store   store.Store
	core    *Core
	keys    *keyCache
	limits  *limiter
	engine  *gin.Engine
	started time.Time

	// workflows are the configured work_ids; runner is the is_batch job pool (workflow*.go).
	workflows atomic.Pointer[map[string]*workflow]
	runner    *jobRunner

	// bp is the strategy surface's compiled strategies, instructions and credit groups (bp.go).
	bp atomic.Pointer[bpTables]

	http     *http.Server
	baseCtx  context.Context
	cancel   context.CancelFunc
	inflight sync.WaitGroup
	active   atomic.Int64 // requests in flight, for the memory release
	seen     atomic.Bool  // a request arrived since the memory release last looked

	jwtWarn sync.Once // two surfaces use JWTs; a missing secret is said once
}

func init() { gin.SetMode(gin.ReleaseMode) }

// NewServer wires the surfaces to the core.
func NewServer(cfg *Config, st store.Store, channels []*Channel, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		cfg: cfg, log: log, store: st, started: time.Now(),
		core:   &Core{store: st, log: log, maxAnswer: cfg.Server.MaxAnswerBytes, keepAlive: cfg.Server.StreamKeepAlive},
		keys:   &keyCache{store: st, ttl: cfg.Auth.KeyCacheTTL, m: map[string]cachedKey{}},
		limits: newLimiter(),
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.core.router.Store(NewRouter(channels))
	s.core.metrics = newMetrics(s.core.router.Load(), channels, st)
	wf := buildWorkflows(cfg, channels, log)
	s.workflows.Store(&wf)
	s.bp.Store(cfg.bpTablesOf())
	s.runner = newJobRunner(s)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.Use(s.recovery(), s.requestID())
	if cfg.Log.AccessLog {
		e.Use(s.accessLog())
	}
	e.NoRoute(func(c *gin.Context) {
		writeOpenAIError(c, adaptor.NewError(404, adaptor.TypeNotFound, "unknown_url", "Unknown request URL: "+c.Request.Method+" "+c.Request.URL.Path))
	})
	e.NoMethod(func(c *gin.Context) {
		writeOpenAIError(c, adaptor.NewError(405, adaptor.TypeInvalidRequest, "method_not_allowed", "Method "+c.Request.Method+" is not allowed here"))
	})
	e.GET("/healthz", func(c *gin.Context) { c.Data(200, "application/json", []byte(`{"status":"ok"}`)) })
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", gin.WrapH(s.core.metrics.handler())) // no relay key: names and statuses only, no secrets
	v1 := e.Group("/v1", s.track(), s.auth())
	v1.POST("/chat/completions", s.chatCompletions) // workflow fields divert to the workflow surface
	v1.GET("/chat/tasks/:id", s.getTask)
	e.GET("/v1/chat/getauth", s.track(), s.getAuth) // answers in the seed's {code,msg} shape, so no auth middleware
	v1.GET("/models", s.listModels)
	v1.GET("/models/:model", s.getModel)
	v1.GET("/relay/channels", s.listChannels)
	s.startSessions(e) // session surface under /v1/chat with JWT auth (session.go)
	s.bpRoutes(e)
	s.engine = e
	// Made here, not in Serve: Shutdown may run in another goroutine as soon as Serve is called (an early
	// SIGTERM); a Serve after Shutdown returns at once.
	s.http = &http.Server{
		Handler:           s.engine,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.runner.start()
	return s
}

// Handler is the server's http.Handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.engine }

// ForgetKeys drops cached keys, so a revoke in this process takes effect at once.
func (s *Server) ForgetKeys() { s.keys.forget() }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	go releaseMemoryWhenIdle(s.baseCtx, memoryCheckInterval, func() bool { return s.active.Load() == 0 }, func() bool { return s.seen.Swap(false) })
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting requests and lets in-flight ones (streams included) finish within the grace
// period; past it their contexts are cancelled, so they end and log themselves as failed. The store is
// not closed here: the caller closes it after Shutdown returns, which drains its queue.
func (s *Server) Shutdown(ctx context.Context) error {
	grace := s.cfg.Server.ShutdownGrace
	if grace <= 0 {
		grace = 30 * time.Second
	}
	gctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	err := s.http.Shutdown(gctx)
	// Batch jobs may finish within the same grace; past it they are cancelled and stay resumable.
	s.runner.stop(gctx)
	// Whatever is still running is cancelled now; wait for the handlers to return so their log rows
	// are enqueued before the store drains.
	s.cancel()
	if err != nil {
		s.http.Close()
	}
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.log.Warn("shutdown: handlers still running after cancel")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("shutdown: grace period over, in-flight requests were cancelled")
		return nil
	}
	return err
}
